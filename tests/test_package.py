"""
Tests for the C{streamd} package itself: its public names (what importing
it costs is measured in a fresh process, in C{tests.integration.test_packaging}).
"""

from __future__ import annotations

from twisted.trial.unittest import SynchronousTestCase

import streamd


class PackageTests(SynchronousTestCase):
    """
    Every public name of C{streamd} is there.
    """

    def test_everyPublicName(self) -> None:
        """
        Every name in C{__all__} resolves, to the object of the module that
        defines it.
        """
        from streamd.fanout.hub import Hub

        self.assertEqual([name for name in streamd.__all__ if getattr(streamd, name, None) is None], [])
        self.assertIs(streamd.Hub, Hub)
        self.assertRaises(AttributeError, getattr, streamd, "NoSuchName")
