"""The one exception type for mistakes a user can make; the CLI prints it as one line."""


class TuneLabError(Exception):
    """A user-facing error: bad input, unknown name, refused operation. Never a traceback."""
