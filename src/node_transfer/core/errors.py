"""Exceptions that carry enough context to act on: which parameter, which value, what is valid."""

from __future__ import annotations


class ConfigError(ValueError):
    """A parameter has a wrong type or value; raised before any work starts."""

    def __init__(self, name: str, value: object, valid: str) -> None:
        self.name, self.value, self.valid = name, value, valid
        super().__init__(f"invalid parameter {name}={value!r}: expected {valid}")


class DataError(RuntimeError):
    """A data set is missing, corrupt or unusable; the message says how to get it right."""


class BackboneError(RuntimeError):
    """A backbone or its weights cannot be created or loaded."""


class ODESolveError(RuntimeError):
    """An ODE solve failed (step bound exceeded, step size underflow, non-finite state)."""

    def __init__(self, reason: str, solver: str, rtol: float, atol: float, nfe: int) -> None:
        self.reason, self.solver, self.rtol, self.atol, self.nfe = reason, solver, rtol, atol, nfe
        super().__init__(
            f"ODE solve failed ({reason}) with solver={solver}, rtol={rtol:g}, atol={atol:g} "
            f"after {nfe} function evaluations"
        )


class TrainingError(RuntimeError):
    """Training stopped on a numerical fault; the last good checkpoint and history are kept."""


class DivergedError(TrainingError):
    """Training diverged (a non-finite loss, or a solve the fallback could not rescue): a result, not a fault.

    The run keeps `diverged.txt` beside `error.txt`, and `suite --resume` keeps the run as it is instead of
    training it again (a divergence retried until it passes would hide it)."""

    marker = "diverged.txt"


class RunDirError(RuntimeError):
    """The run directory cannot be written (full disk, permissions); what was complete before is kept."""


class FileWriteError(RunDirError):
    """A file (checkpoint, metadata, history, feature cache, report, suite file) cannot be written: the message
    names it and the cause ("no space left on device"); the file it would have replaced is kept."""


class Interrupted(BaseException):
    """The run was stopped by a signal (SIGTERM, SIGINT); the last complete epoch is kept for `resume`.

    A BaseException, like KeyboardInterrupt, so that no `except Exception` on the way swallows it."""

    def __init__(self, signum: int, message: str = "") -> None:
        import signal

        self.signum = signum
        super().__init__(message or f"interrupted by {signal.Signals(signum).name}")


class SuiteRunError(RuntimeError):
    """One run of a suite failed (in papermill); the suite can be resumed once the cause is fixed."""
