"""Errors that mean "your input is wrong", and the command-line handler that shows them.

Every error pixelfold raises for bad input (a setting, a file, a folder, the machine's limits)
is a [`PixelfoldError`][pixelfold.utils.errors.PixelfoldError] or one of Python's own input
errors (``ValueError``, ``OSError`` and its ``FileNotFoundError`` / ``PermissionError``, ...).
Their messages name the bad value. [`run_main`][pixelfold.utils.errors.run_main] turns them
into one line ``PROG: error: MESSAGE`` and exit status 2, as argparse does for a bad flag; any
other exception is a bug in pixelfold and keeps its traceback. ``--debug`` (or
``PIXELFOLD_DEBUG=1``) shows the traceback of every error.

The specific classes subclass the builtin a caller would catch (``ValueError`` for bad values,
``OSError`` for the disk, ``MemoryError`` for sizes), so ``except ValueError`` keeps working.
"""

from __future__ import annotations

import os
import sys
import traceback
from collections.abc import Callable

__all__ = [
    "CheckpointError",
    "ConfigError",
    "DataError",
    "DiskFullError",
    "MemoryLimitError",
    "NonFiniteError",
    "PixelfoldError",
    "RunFolderError",
    "TrainingInterrupted",
    "USER_ERRORS",
    "debug_enabled",
    "one_line",
    "run_main",
]


class PixelfoldError(Exception):
    """Base of the errors caused by input rather than by a bug; shown as one line."""


class ConfigError(PixelfoldError, ValueError):
    """A setting (command-line flag, config field, spec field) has a value that cannot work."""


class DataError(PixelfoldError, ValueError):
    """A dataset cannot be used: empty, unreadable, smaller than a batch."""


class NonFiniteError(PixelfoldError, ValueError):
    """A tensor, statistic or output holds NaN or infinity; nothing was written from it."""


class CheckpointError(PixelfoldError, ValueError):
    """A checkpoint cannot be used: incomplete, corrupt, or written with other fixed settings."""


class RunFolderError(PixelfoldError, RuntimeError):
    """An output folder holds another run, or another process is writing into it."""


class DiskFullError(PixelfoldError, OSError):
    """The disk (or quota) filled up while writing; the partial output was removed."""


class MemoryLimitError(PixelfoldError, MemoryError):
    """What was asked for needs more memory than the machine has (the estimate is given)."""


class TrainingInterrupted(PixelfoldError, KeyboardInterrupt):
    """Training stopped on Ctrl-C or SIGTERM after writing a checkpoint (exit status 130)."""


USER_ERRORS: tuple[type[BaseException], ...] = (PixelfoldError, ValueError, OSError,
                                                 MemoryError)
"""Exception types reported as one line (exit status 2) by
[`run_main`][pixelfold.utils.errors.run_main]."""


def one_line(exc: BaseException) -> str:
    """The message of ``exc`` on one line (runs of whitespace, newlines included, become one
    space); an ``OSError`` without a message says its ``strerror`` and file name."""
    text = str(exc)
    if isinstance(exc, OSError) and (not text or text.startswith("[Errno")) and exc.strerror:
        text = exc.strerror + (f": {exc.filename}" if exc.filename else "")
    if isinstance(exc, KeyError) and len(exc.args) == 1 and isinstance(exc.args[0], str):
        text = exc.args[0]  # KeyError's str() adds quotes
    return " ".join(text.split()) or type(exc).__name__


def debug_enabled(argv: list[str] | None = None) -> bool:
    """Whether tracebacks are wanted: ``--debug`` in ``argv`` or ``PIXELFOLD_DEBUG`` set to a
    true value."""
    if argv is not None and "--debug" in argv:
        return True
    return os.environ.get("PIXELFOLD_DEBUG", "").strip().lower() in ("1", "true", "yes", "on")


def run_main(main: Callable[[], int | None], *, prog: str, debug: bool = False) -> int:
    """Run ``main`` and turn what it raises into an exit status, for command-line entry points.

    * a [`TrainingInterrupted`][pixelfold.utils.errors.TrainingInterrupted] or Ctrl-C: one
      line, status 130;
    * one of [`USER_ERRORS`][pixelfold.utils.errors.USER_ERRORS] or a CUDA/CPU out-of-memory
      error: ``PROG: error: MESSAGE`` on stderr, status 2;
    * a closed output pipe (``| head``): status 0, quietly;
    * anything else: the traceback (a bug), status 1.

    With ``debug`` every error is re-raised with its traceback.
    """
    import torch

    try:
        status = main()
        return 0 if status is None else int(status)
    except SystemExit:
        raise
    except BrokenPipeError:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 0
    except TrainingInterrupted as exc:
        if debug:
            raise
        print(f"{prog}: {one_line(exc)}", file=sys.stderr)
        return 130
    except KeyboardInterrupt:
        if debug:
            raise
        print(f"{prog}: interrupted", file=sys.stderr)
        return 130
    except torch.OutOfMemoryError as exc:
        if debug:
            raise
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else "out of memory"
        print(f"{prog}: error: out of memory ({first}); try a smaller --batch-size",
              file=sys.stderr)
        return 2
    except USER_ERRORS as exc:
        if debug:
            raise
        print(f"{prog}: error: {one_line(exc)}", file=sys.stderr)
        return 2
    except Exception:
        traceback.print_exc()
        print(f"{prog}: internal error (a bug in pixelfold, please report it with the "
              f"traceback above)", file=sys.stderr)
        return 1
