"""
Tests for L{streamd.auth.originAllowed}: which web pages may open the
daemon's streams.
"""

from __future__ import annotations

from twisted.trial.unittest import SynchronousTestCase

from streamd.auth import originAllowed


class OriginTests(SynchronousTestCase):
    """
    Same origin, no origin, or a listed one.
    """

    def test_notAPage(self) -> None:
        """
        A client that sends no C{Origin} is not a web page: allowed.
        """
        self.assertTrue(originAllowed(None, "stream.example"))

    def test_sameOrigin(self) -> None:
        """
        A page served by the daemon's own host and port may, default ports
        included.
        """
        self.assertTrue(originAllowed("http://127.0.0.1:8080", "127.0.0.1:8080"))
        self.assertTrue(originAllowed("https://stream.example", "stream.example"))
        self.assertTrue(originAllowed("https://stream.example", "stream.example:443"))
        self.assertTrue(originAllowed("http://[::1]:8080", "[::1]:8080"))

    def test_otherOrigins(self) -> None:
        """
        Another host, another port, a null origin or a malformed one may not.
        """
        self.assertFalse(originAllowed("https://evil.example", "stream.example"))
        self.assertFalse(originAllowed("http://127.0.0.1:9999", "127.0.0.1:8080"))
        self.assertFalse(originAllowed("http://stream.example:8443", "stream.example"))
        self.assertFalse(originAllowed("null", "stream.example"))
        self.assertFalse(originAllowed("http://[::1", "stream.example"))
        self.assertFalse(originAllowed("https://evil.example", None))

    def test_listed(self) -> None:
        """
        A listed origin may (case and a trailing slash aside); C{*} lets
        any page.
        """
        self.assertTrue(originAllowed("https://App.example/", "stream.example", ("https://app.example",)))
        self.assertFalse(originAllowed("https://app.example:8443", "stream.example", ("https://app.example",)))
        self.assertTrue(originAllowed("null", "stream.example", ("*",)))
