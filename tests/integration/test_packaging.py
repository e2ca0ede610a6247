"""
What the source distribution carries.
"""

from __future__ import annotations

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
