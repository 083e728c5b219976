"""The one exception type users see.

Every problem caused by the user's input (files, flags, data) is raised as a
:class:`SparcError` whose message is a single line saying what is wrong and how to
fix it. The CLI prints it as ``error: <message>`` and exits with its ``exit_code``
(2 for bad input, 1 for a training that diverged, 130 for an interruption); any other
exception is a bug in sparc and keeps its traceback.
"""


class SparcError(Exception):
    """A problem with the user's input, described in one line with its fix."""

    exit_code = 2
    """The ``sparc`` command's exit status for this error."""

    def __init__(self, message: str):
        if "\n" in message:
            raise ValueError("SparcError messages must fit on one line")
        super().__init__(message)


def require_at_least(settings: object, minimum: int, *names: str) -> None:
    """The settings' range check: a :class:`SparcError` naming the first field of ``names``
    below ``minimum``."""
    for name in names:
        if (value := getattr(settings, name)) < minimum:
            raise SparcError(f"{name} must be at least {minimum}, got {value}")


class TrainingDiverged(SparcError):
    """The loss or the weights stopped being finite; nothing after the last finite
    checkpoint was saved."""

    exit_code = 1

    def __init__(self, message: str, *, step: int, checkpoint_step: int | None):
        super().__init__(message)
        self.step = step
        """The step whose loss or weights were not finite."""
        self.checkpoint_step = checkpoint_step
        """The step of the last checkpoint on disk (None: none was written)."""


class Interrupted(SparcError):
    """The user stopped the command (Ctrl-C); what it says tells how to continue."""

    exit_code = 130
