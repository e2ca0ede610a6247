"""
The error a wrong setting raises.  It lives apart from L{streamd.config},
its public home, because the modules whose settings that module gathers
(tokens, sources, TLS) raise it too.
"""


class ConfigError(ValueError):
    """
    A setting is wrong, or two settings disagree.  Config objects check
    themselves when made and raise this; its str is one line that names
    the settings by their command-line options and says why, fit to show
    as it is (C{twistd streamd} shows it as a usage error).
    """
