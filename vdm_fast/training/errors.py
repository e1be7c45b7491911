"""The errors a training job raises at the boundary: each message is one line naming the flag or
file and what to do (DESIGN.md: errors a user can cause)."""


class TrainError(ValueError):
    """A training job cannot start or continue; the message names the value and what was expected."""


class NonFiniteLossError(TrainError):
    """The loss became NaN or infinite at step `step`; the last good state was checkpointed."""

    def __init__(self, message: str, step: int):
        super().__init__(message)
        self.step = step
