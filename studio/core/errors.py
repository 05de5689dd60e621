"""One base for every failure a user can cause or act on.

`str()` of a `UserError` is the one sentence shown to the user (in the window's banner, on
the command line's stderr); anything that is not a `UserError` is a bug, logged with its
traceback and shown as "unexpected". The command line, the worker and the window tell the
two apart by this class alone.
"""

from __future__ import annotations


class UserError(Exception):
    """A failure the user can act on; str() is one printable sentence."""

    def __str__(self) -> str:
        from studio.core.text import printable

        return printable(super().__str__())


class BadInput(UserError):
    """Input that cannot be used as given (a value, a file, a model): exit status 2 on the
    command line. Other user errors (out of memory, a failed save) exit with 1."""


def one_sentence(error: BaseException) -> str:
    """What a failed job says: a user error is its own sentence; anything else is a bug,
    logged with its traceback (a backend's worker, a cluster's engine) and named."""
    if isinstance(error, UserError):
        return str(error)
    import logging

    logging.getLogger("studio.jobs").error("the job failed unexpectedly", exc_info=error)
    if isinstance(error, MemoryError):
        return "There was not enough memory to finish the job: try a smaller size or batch."
    return f"The job failed unexpectedly ({error.__class__.__name__}); see the log."
