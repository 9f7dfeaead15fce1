"""User-facing errors: one clear line that names the fix, never a traceback."""


class CVAEError(Exception):
    """A bad input or environment problem the user can fix.

    The message is one line and says what to do. Stages and the CLI print it as
    ``error: <message>`` and exit with status 2.
    """
