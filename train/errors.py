"""The error a user's bad input raises: one line on stderr and exit code 2, never a traceback."""


class UsageError(ValueError):
    """A problem with what the user asked for: reported as one line, exit code 2."""
