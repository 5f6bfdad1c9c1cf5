"""Bad input: reported as one line on stderr with exit code 2, never as a traceback."""


class BenchError(Exception):
    """A user-facing error: the message is the whole report."""
