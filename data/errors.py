"""The data packages' one error type for bad user input."""


class DataError(ValueError):
    """A data source or a data setting is missing, malformed or unusable.

    The message is one line meant for the user and names the offending path, source or setting,
    so the command line prints it as is (exit code 2) instead of a traceback.
    """
