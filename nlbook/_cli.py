"""What every ``python -m nlbook.*`` command line shares: one-line errors, never a traceback.

- :class:`Parser`: an ``argparse.ArgumentParser`` whose usage errors print one line
  ``error: argument --steps: ...`` and exit with status 2.
- Argument types (``positive_int``, ``finite_float``, ...) that refuse a bad value with a
  message naming the flag, before anything runs.
- :func:`run_command`: runs a command's body and turns any exception into one line
  ``error: ...`` on stderr and a non-zero exit status. ``NLBOOK_TRACEBACK=1`` shows the
  traceback of an unexpected error instead (for debugging nlbook itself).
"""

from __future__ import annotations

import argparse
import math
import os
import sys
from collections.abc import Callable

__all__ = [
    "Parser",
    "error_line",
    "finite_float",
    "non_negative_float",
    "non_negative_int",
    "positive_float",
    "positive_int",
    "probability",
    "run_command",
    "unit_interval",
]


class Parser(argparse.ArgumentParser):
    """``argparse.ArgumentParser`` whose errors are one line: ``error: <message>``."""

    def error(self, message: str):  # type: ignore[override]
        print(f"error: {message} (see {self.prog} --help)", file=sys.stderr)
        raise SystemExit(2)


def _integer(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an int, got {text!r}") from None


def _real(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"expected a finite number, got {text!r}")
    return value


def positive_int(text: str) -> int:
    """An int >= 1."""
    value = _integer(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive int, got {text!r}")
    return value


def non_negative_int(text: str) -> int:
    """An int >= 0."""
    value = _integer(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected an int >= 0, got {text!r}")
    return value


def finite_float(text: str) -> float:
    """Any finite number."""
    return _real(text)


def non_negative_float(text: str) -> float:
    """A finite number >= 0 (a temperature)."""
    value = _real(text)
    if not value >= 0:
        raise argparse.ArgumentTypeError(f"expected a finite number >= 0, got {text!r}")
    return value


def positive_float(text: str) -> float:
    """A finite number > 0."""
    value = _real(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"expected a finite number > 0, got {text!r}")
    return value


def unit_interval(text: str) -> float:
    """A number in [0, 1) (a dropout rate)."""
    value = _real(text)
    if not 0 <= value < 1:
        raise argparse.ArgumentTypeError(f"expected a number in [0, 1), got {text!r}")
    return value


def probability(text: str) -> float:
    """A number in (0, 1] (a top-p threshold)."""
    value = _real(text)
    if not 0 < value <= 1:
        raise argparse.ArgumentTypeError(f"expected a number in (0, 1], got {text!r}")
    return value


def error_line(error: BaseException) -> str:
    """The first line of an exception's message (its type name when it has none)."""
    text = str(error).strip()
    if isinstance(error, KeyError) and error.args:
        text = f"missing key {error.args[0]!r}"
    if isinstance(error, OSError) and error.strerror:
        text = f"{error.strerror}: {error.filename}" if error.filename else error.strerror
    return text.splitlines()[0] if text else type(error).__name__


def run_command(body: Callable[[], int]) -> int:
    """``body()``'s exit status; any exception becomes one ``error: ...`` line on stderr and a
    non-zero status (2 for bad input, 1 for anything else, 130 for Ctrl-C)."""
    try:
        return body()
    except SystemExit:
        raise
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        return 130
    except (ValueError, TypeError, OSError, LookupError) as error:
        print(f"error: {error_line(error)}", file=sys.stderr)
        return 2
    except Exception as error:  # an nlbook bug or a library failure: still one line
        if os.environ.get("NLBOOK_TRACEBACK", "").strip() in ("1", "true", "yes"):
            raise
        print(f"error: {type(error).__name__}: {error_line(error)} (set NLBOOK_TRACEBACK=1 "
              f"to see the traceback)", file=sys.stderr)
        return 1
