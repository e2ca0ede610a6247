"""
What a config object raises when a setting is wrong.
"""


class ConfigError(ValueError):
    """
    A setting is wrong, or two settings disagree.  Config objects check
    themselves when made and raise this; its str is one line that names
    the settings by their command-line options and says why, fit to show
    as it is (C{twistd streamd} shows it as a usage error).
    """
