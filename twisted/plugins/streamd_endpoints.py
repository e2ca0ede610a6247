"""
The C{streamd:} server endpoint type (see L{streamd.endpoints}).
"""

from streamd.endpoints import StreamdEndpointParser

streamdEndpoints = StreamdEndpointParser()
