"""The one exception type users see.

Raise :class:`RnnbenchError` with one sentence that names the problem and the fix.
The CLI prints it as ``rnnbench: error: <message>`` and exits with status 2, without a
traceback. Anything else that escapes is a bug and keeps its traceback.
"""


class RnnbenchError(Exception):
    """A bad input or environment problem, explained in one sentence for the user."""
