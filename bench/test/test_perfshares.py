"""
Tests for L{bench.perfshares}: samples of C{perf script} put in buckets.
"""

from __future__ import annotations

from twisted.trial.unittest import SynchronousTestCase

from bench.perfshares import shares

SCRIPT = """\
100/100     500000
\tffffffff8206652b tcp_sendmsg ([kernel.kallsyms])
\tffffffff81e79300 __sys_sendmsg ([kernel.kallsyms])
\t          10ac10 __libc_sendmsg (/usr/lib/x86_64-linux-gnu/libc.so.6)

100/100     500000
\t           ff281 _PyEval_EvalFrameDefault (/usr/lib/libpython3.11.so.1.0)
\t    7fafb1b76f00 [unknown] ([unknown])

100/100     500000
\t           a1b2c _int_malloc (/usr/lib/x86_64-linux-gnu/libc.so.6)

100/100     500000
\t          3c1d00 ossl_aes_gcm_encrypt_avx512 (/v/lib/python3.11/site-packages/cryptography/_rust.abi3.so)

100/100     500000
\t           1f2e3 s_unpack_internal (/usr/lib/python3.11/lib-dynload/_struct.cpython-311-x86_64-linux-gnu.so)

200/200     500000
\tffffffff81ba48a0 _copy_to_iter ([kernel.kallsyms])
\tffffffff81e78b60 __x64_sys_recvfrom ([kernel.kallsyms])

200/200     500000
\tffffffff81369bf2 handle_softirqs ([kernel.kallsyms])

300/300     500000
\tffffffff8175a78c __x64_sys_epoll_wait ([kernel.kallsyms])
"""


class SharesTests(SynchronousTestCase):
    """
    L{shares} counts each sample once, in the bucket its call chain says.
    """

    def test_buckets(self) -> None:
        """
        A sample in a system call goes to that call whatever the function
        on top; user-space samples go by their function, or by their shared
        object: Python's own C modules are Python's, an installed package's
        (the OpenSSL of cryptography's wheel) are not; pids not named are
        "other".
        """
        counts = shares(SCRIPT, {"100": "server", "200": "subscriber"})
        self.assertEqual(
            dict(counts["server"]),
            {
                "kernel: send": 1,
                "python: bytecode loop": 1,
                "libc: malloc, free, memcpy": 1,
                "other: _rust.abi3.so": 1,
                "python: other C code": 1,
            },
        )
        self.assertEqual(dict(counts["subscriber"]), {"kernel: recv": 1, "kernel: interrupts and other": 1})
        self.assertEqual(dict(counts["other"]), {"kernel: epoll_wait": 1})
