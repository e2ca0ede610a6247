"""
The C{streamd:} server endpoint type (see L{streamd.listen.endpoints}).
"""

from streamd.listen.endpoints import StreamdEndpointParser

streamdEndpoints = StreamdEndpointParser()
