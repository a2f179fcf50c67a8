"""What every chapter's exercises share: checkers, predict-then-run questions, solutions.

- A checker (``check_*``) calls the learner's function on small inputs and compares it with
  nlbook's answer. Wrong answers raise ``AssertionError`` with a hint (a missing ``return``, a
  transposed result, NaN entries, a flipped sign...). A stub that still raises
  ``NotImplementedError`` is reported as "not done yet" and does not raise, so "Run all" on an
  untouched notebook runs to the end. A checker returns a :class:`CheckResult`: truthy when the
  answer is right, and it shows nothing in Jupyter (the checker already printed its message, so
  a cell ending with the checker has no ``Out[...]`` echo).
- A predict-then-run question is asked in the notebook. Its experiment runs inside
  ``with experiment(name):``, which holds back what the experiment prints and draws (the cell
  shows nothing of it, so the question cannot be passed by reading); ``answer(name,
  prediction)`` then shows the held result next to the learner's prediction and explains it.
  Without a prediction ``answer`` says how to reveal and shows nothing; ``reveal(name)`` shows
  the result and explains it without a prediction. "Run all" still runs every experiment.
- ``solution(name)`` prints one solution. Solutions live in :mod:`nlbook.exercises.solutions`,
  out of the notebooks' reading path.
"""

from __future__ import annotations

import contextlib
import functools
import inspect
import io
import math
import re
import textwrap
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field

import torch

__all__ = ["Chapter", "CheckFailed", "CheckResult", "Question", "checker", "compare",
           "expect_number", "expect_tensor"]


@dataclass(frozen=True)
class CheckResult:
    """What a checker returns: ``bool(result)`` is True when the answer is right.

    It displays nothing in Jupyter (``_ipython_display_`` is empty): the checker has already
    printed what it found, and a bare ``True`` under every checker cell is noise.
    """

    exercise: str
    passed: bool
    message: str

    def __bool__(self) -> bool:
        return self.passed

    def _ipython_display_(self) -> None:
        """Show nothing (IPython then sends no ``execute_result``)."""


def _not_done_message(checker_name: str, exercise: str, module: str) -> str:
    return _wrap(f"{checker_name}: not done yet. Write the body of `{exercise}` in this cell "
                 f"(replace the `raise NotImplementedError` line) and run the cell again. "
                 f"Stuck? `ex.solution(\"{exercise}\")` prints a solution (ex = {module}).")


Checker = Callable[[Callable], CheckResult]


class CheckFailed(AssertionError):
    """A wrong answer: in Jupyter only the hint is shown, not a traceback through the checker
    (whose code would also give the answer away)."""

    def _render_traceback_(self) -> list[str]:
        return _wrap(str(self)).splitlines()


_SHAPE_ERROR = re.compile(r"size of tensor|shape|must match|dimension|mat1 and mat2|"
                          r"expected .* to have", re.IGNORECASE)


def _learner_error_hint(error: Exception) -> str:
    """A sentence for an exception raised inside the learner's own function."""
    said = f"{type(error).__name__}: {error}".strip()
    if isinstance(error, RuntimeError) and _SHAPE_ERROR.search(str(error)):
        return (f"your function raised {said}. The shapes do not fit: a result or an outer "
                "product is probably transposed (check which index is the row, and the shapes "
                "this exercise's text gives for each argument).")
    return f"your function raised {said}. Run it on a small input by hand to find the line."


def checker(exercise: str) -> Callable[[Callable[[Callable], str]], Checker]:
    """Turn ``body(learner_fn) -> confirmation`` into a checker of the learner's ``exercise``.

    The body raises ``AssertionError`` with a hint when the answer is wrong and returns the
    confirmation to print when it is right. The wrapper adds: a clear TypeError when the
    argument is not a function, "not done yet" (printed, no exception) when the learner's
    function still raises ``NotImplementedError``, and the :class:`CheckResult`.
    """

    def decorate(body: Callable[[Callable], str]) -> Checker:
        @functools.wraps(body)
        def check(learner_fn: Callable) -> CheckResult:
            if not callable(learner_fn):
                raise TypeError(f"{body.__name__} expects your function `{exercise}` (pass the "
                                f"function itself, without calling it), got "
                                f"{type(learner_fn).__name__}")
            try:
                confirmation = body(learner_fn)
            except NotImplementedError:
                message = _not_done_message(body.__name__, exercise, body.__module__)
                print(message)
                return CheckResult(exercise, False, message)
            except CheckFailed:
                raise
            except AssertionError as wrong:  # the hint, without the checker's traceback
                raise CheckFailed(str(wrong)) from None
            except Exception as error:  # raised inside the learner's function
                raise CheckFailed(f"{exercise}: {_learner_error_hint(error)}") from None
            message = f"{body.__name__}: correct. {confirmation}"
            print(message)
            return CheckResult(exercise, True, message)

        check.exercise = exercise  # type: ignore[attr-defined]
        return check

    return decorate


# ----------------------------------------------------------------------------- validation

_NAN_HINT = ("Typical causes: 0/0 or x/‖x‖ with x = 0, the log of 0, a torch.empty that was "
             "never filled, or a NaN that came in through one of your operations.")


def _missing_return(what: str) -> AssertionError:
    return AssertionError(f"{what} returned None: the function has no `return` statement (or "
                          "one path of it returns nothing). End it with `return <the result>`.")


def expect_tensor(what: str, got: object, shape: tuple[int, ...], *,
                  allow_infinite: bool = False) -> torch.Tensor:
    """``got`` as a float64 tensor of ``shape``, or an AssertionError with a hint.

    ``what`` names the call in the messages, e.g. ``"delta_step(S, k, v, 0.3, 1.0)"``.
    ``allow_infinite``: ±inf entries are legal (a filter that masks logits); NaN never is.
    """
    if got is None:
        raise _missing_return(what)
    if isinstance(got, (tuple, list)):
        raise AssertionError(f"{what} returned a {type(got).__name__} of {len(got)} items; "
                             f"expected one tensor of shape {tuple(shape)}")
    if not isinstance(got, torch.Tensor):
        raise AssertionError(f"{what} must return a torch.Tensor of shape {tuple(shape)}, got "
                             f"{type(got).__name__}")
    given = tuple(got.shape)
    if given != tuple(shape):
        if len(shape) >= 2 and given == (*shape[:-2], shape[-1], shape[-2]):
            raise AssertionError(f"{what} returned shape {given}, expected {tuple(shape)}: the "
                                 "result looks transposed (rows and columns swapped)")
        raise AssertionError(f"{what} returned shape {given}, expected {tuple(shape)}")
    if got.is_floating_point() or got.is_complex():
        bad = torch.isnan(got) if allow_infinite else ~torch.isfinite(got)
        if bad.any():
            kind = "NaN" if allow_infinite else "NaN or infinite"
            raise AssertionError(f"{what} has {int(bad.sum())} {kind} entries out of "
                                 f"{got.numel()}. {_NAN_HINT}")
        return got.detach().double()
    return got.detach()


def expect_number(what: str, got: object) -> float:
    """``got`` as a finite number (a Python number or a one-element tensor), or an
    AssertionError with a hint. An integer answer stays an int, so that a message reports it
    as the learner wrote it ("got 6", not "got 6.0")."""
    if got is None:
        raise _missing_return(what)
    if isinstance(got, torch.Tensor) and got.numel() != 1:
        raise AssertionError(f"{what} must return one number, got a tensor of shape "
                             f"{tuple(got.shape)}")
    if isinstance(got, torch.Tensor) and not (got.is_floating_point() or got.is_complex()):
        got = got.item()
    if isinstance(got, int) and not isinstance(got, bool):
        return got  # type: ignore[return-value]
    try:
        value = float(got)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise AssertionError(f"{what} must return a number, got {got!r}") from None
    if not math.isfinite(value):
        raise AssertionError(f"{what} returned {value}: NaN or infinite, not a finite number. "
                             f"{_NAN_HINT}")
    return value


def compare(what: str, got: torch.Tensor, expected: torch.Tensor, hint: str,
            tolerance: float = 1e-9) -> None:
    """Raise an AssertionError (with ``hint``) unless ``got`` matches ``expected``.

    Both are tensors of the same shape (``expect_tensor`` checked it). A square result equal to
    the transpose of the answer gets its own hint.
    """
    expected = expected.double()
    difference = (got - expected).abs().max().item() if got.numel() else 0.0
    if difference <= tolerance:  # NaN compares False: expect_tensor rejected NaN before
        return
    if got.ndim >= 2 and got.shape[-1] == got.shape[-2]:
        if (got - expected.mT).abs().max().item() <= tolerance:
            raise AssertionError(f"{what} is the transpose of the answer: rows and columns are "
                                 "swapped (check which index is the row)")
    raise AssertionError(f"{what} is off by {difference:.3g}. {hint}")


# ----------------------------------------------------------------------------- questions

@dataclass(frozen=True)
class Question:
    """A predict-then-run question. ``choices`` maps a letter to a possible outcome (empty for
    an open question); ``correct`` is the right letter; ``explanation`` says why."""

    choices: Mapping[str, str]
    correct: str | None
    explanation: str

    def __post_init__(self) -> None:
        if self.choices and self.correct not in self.choices:
            raise ValueError(f"correct must be one of {sorted(self.choices)}, got "
                             f"{self.correct!r}")


@dataclass
class HeldResult:
    """What one experiment printed and drew, held back until a prediction is made."""

    text: str = ""
    outputs: list = field(default_factory=list)  # IPython rich outputs (display(...) calls)
    figures: list = field(default_factory=list)  # matplotlib figures the experiment opened

    def show(self) -> None:
        """Print the text and display the held outputs and figures (in Jupyter)."""
        if self.text:
            print(self.text.rstrip("\n"))
        if not (self.outputs or self.figures):
            return
        try:
            from IPython.display import display
        except ImportError:  # plain Python: the text is all there is to show
            return
        for output in self.outputs:
            output.display()
        for figure in self.figures:
            display(figure)


@contextlib.contextmanager
def _capture() -> Iterator[HeldResult]:
    """Hold back stdout, IPython displays and new pyplot figures of the ``with`` body."""
    held = HeldResult()
    buffer = io.StringIO()
    pyplot = None
    try:
        import matplotlib.pyplot as pyplot
        before = set(pyplot.get_fignums())
    except ImportError:
        before = set()
    rich = None
    try:
        from IPython import get_ipython
        from IPython.utils.capture import capture_output
        if get_ipython() is not None:
            rich = capture_output(stdout=False, stderr=False, display=True)
    except ImportError:
        pass
    with contextlib.redirect_stdout(buffer), (rich or contextlib.nullcontext()) as captured:
        try:
            yield held
        finally:
            held.text = buffer.getvalue()
            if captured is not None:
                held.outputs = list(captured.outputs)
            if pyplot is not None:  # closed, so that the inline backend does not show them
                for number in sorted(set(pyplot.get_fignums()) - before):
                    held.figures.append(pyplot.figure(number))
                    pyplot.close(number)


def _normalise_choice(prediction: object) -> str:
    return str(prediction).strip().strip("()").strip().lower()


def _wrap(*texts: str) -> str:
    """Each text (paragraphs separated by blank lines) reflowed to 96 columns."""
    paragraphs = [part for text in texts for part in re.split(r"\n\s*\n", text.strip())]
    return "\n".join(textwrap.fill(" ".join(part.split()), width=96) for part in paragraphs)


@dataclass(frozen=True)
class Chapter:
    """One chapter's questions and solutions, with the ``answer``/``reveal``/``solution``
    functions that its module exports."""

    module: str
    questions: Mapping[str, Question]
    solutions: Mapping[str, Callable]
    held: dict = field(default_factory=dict, compare=False, repr=False)

    @contextlib.contextmanager
    def experiment(self, name: str) -> Iterator[HeldResult]:
        """Run question ``name``'s experiment in this ``with`` block: what it prints and draws
        is held back (the cell shows none of it) until ``answer(name, prediction)`` shows it
        next to the prediction, or ``reveal(name)`` shows it."""
        self._question(name)
        with _capture() as held:
            yield held
        self.held[name] = held

    def _show_result(self, name: str) -> None:
        held = self.held.get(name)
        if held is not None and (held.text or held.outputs or held.figures):
            print("What the experiment gave:")
            held.show()
            print()

    def _question(self, name: str) -> Question:
        if name not in self.questions:
            raise ValueError(f"name must be one of this chapter's questions "
                             f"{sorted(self.questions)}, got {name!r}")
        return self.questions[name]

    def answer(self, name: str, prediction: object = None) -> None:
        """Compare your ``prediction`` (a letter) for question ``name`` with the result, and
        explain it. With no prediction yet, say so and reveal nothing."""
        question = self._question(name)
        if not question.choices:
            print(_wrap(f"Question {name!r} is open (no choices): think it through, then "
                        f"`ex.reveal({name!r})` explains it."))
            return
        letters = ", ".join(repr(letter) for letter in question.choices)
        if prediction is None or _normalise_choice(prediction) in ("", "...", "none"):
            ran = (" The experiment has run; its result is hidden until you predict."
                   if name in self.held else "")
            print(_wrap(f"{name}: not done yet.{ran} Set `prediction` at the top of this cell "
                        f"to your guess (one of {letters}) and run the cell again: you then see "
                        f"the result next to your guess, with the explanation (or call "
                        f"ex.reveal({name!r}) to see it without a guess)."))
            return
        choice = _normalise_choice(prediction)
        if choice not in question.choices:
            raise ValueError(f"prediction must be one of {letters}, got {prediction!r}")
        right = question.choices[question.correct]  # type: ignore[index]
        if choice == question.correct:
            verdict = f"Your prediction ({choice}) is right: {right}"
        else:
            verdict = (f"Your prediction ({choice}, {question.choices[choice]}) is not what "
                       f"happened. The answer is ({question.correct}): {right}")
        print(_wrap(f"You predicted ({choice}): {question.choices[choice]}"))
        print()
        self._show_result(name)
        print(_wrap(verdict, question.explanation))

    def reveal(self, name: str) -> None:
        """Print the answer to question ``name`` and why, without asking for a prediction."""
        question = self._question(name)
        head = (f"Answer ({question.correct}): {question.choices[question.correct]}"
                if question.choices else "")
        self._show_result(name)
        print(_wrap(head, question.explanation) if head else _wrap(question.explanation))

    def solution(self, name: str) -> None:
        """Print one solution of exercise ``name`` (e.g. "delta_step"; a "my_" prefix or the
        checker's name also work). Try your own first: the checker's hints are written for
        the mistakes people make."""
        key = name.removeprefix("check_").removeprefix("my_") if isinstance(name, str) else name
        if key not in self.solutions:
            raise ValueError(f"name must be one of this chapter's exercises "
                             f"{sorted(self.solutions)}, got {name!r}")
        source = textwrap.dedent(inspect.getsource(self.solutions[key]))
        print(f"# One solution of `{key}` (nlbook.exercises.solutions); yours may differ "
              f"and still pass.\n{source}", end="")
