"""The one exception type readers and writers raise for bad input.

Its message is the whole user-facing line ("path:line: what is wrong"); the CLI prints it to
stderr and exits non-zero, never a traceback.
"""


class TraceError(Exception):
    """Bad input or an impossible conversion; `str(e)` is a complete one-line message."""
