"""
Tests for the C{streamd} package itself: its public names, and what
importing it costs.
"""

from __future__ import annotations

import subprocess
import sys

from twisted.trial.unittest import SynchronousTestCase

import streamd


class PackageTests(SynchronousTestCase):
    """
    C{import streamd} is light, and every public name is there.
    """

    def test_everyPublicName(self) -> None:
        """
        Every name in C{__all__} resolves, to the object of the module that
        defines it.
        """
        from streamd.hub import Hub

        self.assertEqual([name for name in streamd.__all__ if getattr(streamd, name, None) is None], [])
        self.assertIs(streamd.Hub, Hub)
        self.assertRaises(AttributeError, getattr, streamd, "NoSuchName")

    def test_importIsLight(self) -> None:
        """
        C{import streamd} loads neither Twisted's reactor machinery nor the
        TLS stack: a program that only wants a name pays for that name.
        """
        code = "import sys, streamd; print(sorted(m for m in ('OpenSSL', 'twisted.internet.reactor', 'streamd.server') if m in sys.modules))"
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
        self.assertEqual(out.strip(), "[]")
