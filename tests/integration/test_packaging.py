"""
What the source distribution carries, and what importing the package costs.
"""

from __future__ import annotations

import ast
import os
import subprocess
import sys
import tarfile
import tempfile

from twisted.trial.unittest import SynchronousTestCase

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


class SdistTests(SynchronousTestCase):
    """
    C{setup.cfg} says MIT; the sdist must carry the licence and what
    C{make test} needs.
    """

    def test_sdistContents(self) -> None:
        """
        The sdist built from this checkout holds LICENSE, CHANGES.rst, the
        Makefile, and next to the package the tests and what they read: the
        docs and the systemd units.
        """
        out = tempfile.mkdtemp()
        subprocess.run(
            [sys.executable, "-c", f"from setuptools import build_meta; build_meta.build_sdist({out!r})"],
            cwd=ROOT,
            check=True,
            capture_output=True,
        )
        (name,) = os.listdir(out)
        with tarfile.open(os.path.join(out, name)) as sdist:
            members = {member.split("/", 1)[1] for member in sdist.getnames() if "/" in member}
        for wanted in (
            "LICENSE", "CHANGES.rst", "Makefile", "README.rst",
            "tests/support.py", "tests/integration/__init__.py", "streamd/tap.py",
            "docs/client.rst", "docs/seq_client.py",
            "contrib/streamd.service", "contrib/streamd.service.d/socket-activation.conf",
        ):  # fmt: skip
            self.assertIn(wanted, members)


def _loaded(code: str, wanted: str) -> list[str]:
    """
    Run C{code} in a fresh interpreter, then say which of the modules it
    loaded C{wanted(name)} (a Python expression in C{m}) picks.
    """
    code += f"\nimport sys; print(sorted(m for m in sys.modules if {wanted}))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    return ast.literal_eval(out)  # type: ignore[no-any-return]


class ImportCostTests(SynchronousTestCase):
    """
    What a program pays for what it imports, measured in a fresh process
    (this one has imported everything already).
    """

    def test_importIsLight(self) -> None:
        """
        C{import streamd} loads neither Twisted's reactor machinery nor the
        TLS stack: a program that only wants a name pays for that name.
        """
        wanted = "m in ('OpenSSL', 'twisted.internet.reactor', 'streamd.server')"
        self.assertEqual(_loaded("import streamd", wanted), [])

    def test_singleNodeImportsNoNats(self) -> None:
        """
        A daemon started without C{--cluster} imports neither nats-py nor the
        cluster link.
        """
        code = "from streamd.tap import Options, makeService\no = Options(); o.parseOptions(['--source', 'none']); makeService(o)"
        wanted = "m.split('.')[0] == 'nats' or m.startswith('streamd.cluster.l')"
        self.assertEqual(_loaded(code, wanted), [])
