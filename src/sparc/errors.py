"""The one exception type users see.

Every problem caused by the user's input (files, flags, data) is raised as a
:class:`SparcError` whose message is a single line saying what is wrong and how to
fix it. The CLI prints it as ``error: <message>`` and exits with status 2; any other
exception is a bug in sparc and keeps its traceback.
"""


class SparcError(Exception):
    """A problem with the user's input, described in one line with its fix."""

    def __init__(self, message: str):
        if "\n" in message:
            raise ValueError("SparcError messages must fit on one line")
        super().__init__(message)
