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
    "HelpFormatter",
    "Parser",
    "Stopwatch",
    "error_line",
    "finite_float",
    "help_string",
    "non_negative_float",
    "non_negative_int",
    "positive_float",
    "positive_int",
    "probability",
    "run_command",
    "seed_int",
    "thread_count",
    "unit_interval",
]

#: The largest int a flag accepts: torch reads seeds and sizes as 64-bit ints.
INT_LIMIT = 2**63 - 1
#: The most torch CPU threads a command accepts.
THREAD_LIMIT = 1024


class HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """``--help`` with every flag's default: appended as ``(default: X)`` unless the help text
    already says it (``default: the preset's``); switches say ``(default: off)``."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        if not action.option_strings or action.default is argparse.SUPPRESS \
                or "default" in text.lower():
            return text
        if action.nargs == 0 or isinstance(action, argparse.BooleanOptionalAction):
            return f"{text} (default: {'on' if action.default else 'off'})"
        if action.default is None or action.default == []:
            return text
        shown = action.default if not isinstance(action.default, str) else repr(action.default)
        return f"{text} (default: {str(shown).replace('%', '%%')})"


def help_string(parser: argparse.ArgumentParser, action: argparse.Action) -> str:
    """What ``--help`` says about ``action`` (for the test that every flag says its default)."""
    return parser._get_formatter()._get_help_string(action)


class Stopwatch:
    """The elapsed time a command ends with: ``done in 12.3 s``."""

    def __init__(self) -> None:
        import time

        self._clock = time.perf_counter
        self.start = self._clock()

    def line(self, what: str = "done") -> str:
        return f"{what} in {self._clock() - self.start:.1f} s"


class Parser(argparse.ArgumentParser):
    """``argparse.ArgumentParser`` whose errors are one line: ``error: <message>``, and whose
    ``--help`` gives every flag's default (:class:`HelpFormatter`)."""

    def __init__(self, *args, **kwargs) -> None:
        kwargs.setdefault("formatter_class", HelpFormatter)
        super().__init__(*args, **kwargs)

    def error(self, message: str):  # type: ignore[override]
        print(f"error: {message} (see {self.prog} --help)", file=sys.stderr)
        raise SystemExit(2)


def _integer(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an int, got {text!r}") from None
    if abs(value) > INT_LIMIT:
        raise argparse.ArgumentTypeError(f"expected an int of at most 2**63 - 1, got {text!r}")
    return value


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


def seed_int(text: str) -> int:
    """A seed: an int in [0, 2**63 - 1]."""
    return non_negative_int(text)


def thread_count(text: str) -> int:
    """A number of torch CPU threads: an int in [1, THREAD_LIMIT]."""
    value = positive_int(text)
    if value > THREAD_LIMIT:
        raise argparse.ArgumentTypeError(f"expected at most {THREAD_LIMIT} threads, got "
                                         f"{text!r}")
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
