"""The machinery of tests/test_fuzz.py: argument specs, their mutations, and the runner.

A registry entry gives one valid call of a public callable (a function returning fresh
keyword arguments) and a spec per argument. Each spec yields mutations of its argument, one at a
time, each with what must happen:

- ``refuse``: the input is invalid; only a ValueError/TypeError whose message names the
  argument is right (a result is "invalid input accepted", a silent wrong result);
- ``either``: a valid result (finite, right shape, passing the entry's check) or a named
  refusal;
- ``same``: the same values as the unmutated call (non-contiguous or requires_grad copies).

Every other outcome is counted and fails the test: an unclear error (another exception type, or
a message that does not name the argument), a silent wrong result, a hang (a call that uses more
than its CPU-time budget, see :func:`alarm`).
"""

from __future__ import annotations

import contextlib
import dataclasses
import io
import math
import re
import resource
import signal
import time
import warnings
from collections import Counter
from collections.abc import Callable
from dataclasses import KW_ONLY, dataclass, field
from typing import Any

import numpy as np
import torch

REFUSE, EITHER, SAME, OVERFLOW = "refuse", "either", "same", "overflow"
HUGE_INT = 10 ** 12


class Lazy:
    """A mutation value built only when the mutation runs (files, trained models)."""

    def __init__(self, build: Callable[[], Any]) -> None:
        self.build = build


class Hang(BaseException):
    """Raised by the alarm when a call runs too long."""


# --------------------------------------------------------------------------------------------
# Specs: what an argument is, and how to break it


@dataclass
class Spec:
    _: KW_ONLY
    none: bool = False           # None is a valid value

    def common(self, value) -> list[tuple[str, Any, str]]:
        out = []
        if value is not None:
            out.append(("None", None, EITHER if self.none else REFUSE))
        out.append(("a str", "bogus", REFUSE))
        return out

    def mutations(self, value) -> list[tuple[str, Any, str]]:
        return self.common(value)


@dataclass
class Free(Spec):
    """An argument the fuzz leaves alone (documented at the entry)."""

    def mutations(self, value):
        return []


@dataclass
class Obj(Spec):
    """An object of a given kind (a model, a config, a corpus): wrong types must be refused."""

    def mutations(self, value):
        return [*self.common(value), ("an int", 3, REFUSE)]


@dataclass
class Func(Spec):
    def mutations(self, value):
        return [*self.common(value), ("an int", 3, REFUSE)]


@dataclass
class Bool(Spec):
    def mutations(self, value):
        return [*self.common(value), ("the int 2", 2, REFUSE)]


@dataclass
class Str(Spec):
    empty: bool = False

    def mutations(self, value):
        out = [("an int", 3, REFUSE)]
        if value is not None:
            out.append(("None", None, EITHER if self.none else REFUSE))
        if not self.empty:
            out.append(("''", "", REFUSE))
        return out


@dataclass
class Choice(Spec):
    options: tuple = ()

    def mutations(self, value):
        return [*self.common(value), ("an int", 3, REFUSE)]


@dataclass
class Int(Spec):
    low: int | None = None
    high: int | None = None
    role: str = "size"           # size | cost | chunk | seed | index
    length: int | None = None    # for chunks: the sequence length T

    def mutations(self, value):
        out = [*self.common(value), ("True", True, REFUSE), ("1.5", 1.5, REFUSE),
               ("NaN", math.nan, REFUSE)]
        if self.low is not None:
            out.append((f"{self.low - 1}", self.low - 1, REFUSE))
            if self.low > 0 or self.role == "chunk":
                out.append(("-1", -1, REFUSE))
        if self.high is not None:
            out.append((f"{self.high + 1}", self.high + 1, REFUSE))
        if self.role == "size":
            out.append(("10**12", HUGE_INT, EITHER))
        if isinstance(value, int) and not isinstance(value, bool):
            # numpy integers: a valid result, or a refusal naming the argument (a seed)
            out.append(("a numpy int64", np.int64(value), EITHER))
        if self.role == "chunk":
            if self.low != 1:
                out += [("0", 0, REFUSE)]
            if self.length is not None:
                out.append(("T+3", self.length + 3, EITHER))
            out.append(("100000", 100000, EITHER))
        return out


@dataclass
class Float(Spec):
    low: float = -math.inf
    high: float = math.inf
    low_inclusive: bool = True
    high_inclusive: bool = True
    huge: bool = True            # 1e30 is a fair test (not a time budget or a cost)
    infinite: bool = False       # +inf is a valid value (documented at the entry)

    def mutations(self, value):
        out = [*self.common(value), ("True", True, REFUSE), ("NaN", math.nan, REFUSE),
               ("inf", math.inf, OVERFLOW if self.infinite else REFUSE),
               ("-inf", -math.inf, REFUSE)]
        if math.isfinite(self.low):
            below = self.low if not self.low_inclusive else self.low - 0.5
            out.append((f"{below}", below, REFUSE))
        if math.isfinite(self.high):
            above = self.high if not self.high_inclusive else self.high + 0.5
            out.append((f"{above}", above, REFUSE))
        elif self.huge:
            out.append(("1e30", 1e30, OVERFLOW))
        return out


@dataclass
class IntList(Spec):
    item: Int = field(default_factory=Int)
    empty: bool = False
    scalar: bool = False         # a single int is valid too

    def mutations(self, value):
        out = [*self.common(value), ("an int", 3, EITHER if self.scalar else REFUSE)]
        if not self.empty:
            out.append(("[]", [], REFUSE))
        if value:
            for label, bad, expect in self.item.mutations(value[0]):
                if expect == REFUSE and label not in ("a str",):
                    out.append((f"[{label}, ...]", [bad, *list(value)[1:]], REFUSE))
        return out


@dataclass
class FloatList(Spec):
    item: Float = field(default_factory=Float)
    empty: bool = False
    scalar: bool = False         # a single number is valid too
    gaps: bool = False           # NaN and inf entries are valid (plotted as gaps)

    def mutations(self, value):
        out = [*self.common(value), ("a float", 0.5, EITHER if self.scalar else REFUSE)]
        if not self.empty:
            out.append(("[]", [], REFUSE))
        if value:
            for label, bad, expect in self.item.mutations(value[0]):
                if expect == REFUSE and label not in ("a str",):
                    gap = self.gaps and label in ("NaN", "inf", "-inf")
                    out.append((f"[{label}, ...]", [bad, *list(value)[1:]],
                                EITHER if gap else REFUSE))
        return out


@dataclass
class Gen(Spec):
    kind: str = "torch"          # torch | numpy

    def mutations(self, value):
        other = np.random.default_rng(0) if self.kind == "torch" else torch.Generator()
        return [*self.common(value), ("an int", 3, REFUSE), ("the other generator", other,
                                                             REFUSE)]


@dataclass
class Device(Spec):
    """A device; ``named``: only described, never used, so a device this machine lacks is
    fine (e.g. a log line)."""

    named: bool = False

    def mutations(self, value):
        out = [*self.common(value), ("an int", 3, REFUSE), ("'bogus'", "bogus", REFUSE)]
        if not torch.cuda.is_available():
            out.append(("'cuda' (none here)", "cuda", EITHER if self.named else REFUSE))
        return out


@dataclass
class File(Spec):
    """A path read from: a missing file and a folder must be refused."""

    missing: str = "/nonexistent/nlbook-fuzz.txt"

    def mutations(self, value):
        return [*self.common(value)[:1], ("an int", 3, REFUSE),
                ("a missing file", self.missing, REFUSE), ("a folder", "/", REFUSE)]


@dataclass
class OutFile(Spec):
    """A path written to: an unwritable place must be refused."""

    def mutations(self, value):
        return [*self.common(value)[:1], ("an int", 3, REFUSE),
                ("an unwritable path", "/proc/nlbook-fuzz/out.pt", REFUSE)]


@dataclass
class Tensor(Spec):
    kind: str = "float"          # float | int | bool
    rank: bool = True            # the rank is fixed (rank ±1 must be refused)
    finite: bool = True          # NaN/inf must be refused
    empty: bool = True           # try empty axes (either a result or a named refusal)
    gate: tuple | None = None    # (low, high): values outside must be refused
    vocab: int | None = None     # token ids in [0, vocab)
    ignore: bool = False         # -1 allowed (targets)
    batch: str | None = None     # tensors of one group share axis 0
    contiguity: bool = True
    grad: bool = True
    float64: str = EITHER        # what a float64 copy must give
    integers: bool = False       # an int64 copy of float data is valid (plotted numbers)
    light: bool = False          # only the mutations that must be refused (saves time when
    # every valid call draws a figure: the same argument kinds are fuzzed fully elsewhere)

    def mutations(self, value):
        out = self.common(value)
        if not isinstance(value, torch.Tensor):
            return out
        out.append(("rank+1", value.unsqueeze(0), REFUSE if self.rank else EITHER))
        if value.ndim >= 1:
            out.append(("rank-1", value[0], REFUSE if self.rank else EITHER))
        if self.kind == "float":
            out += [("int64", value.round().long(), EITHER if self.integers else REFUSE),
                    ("bool", value > 0, REFUSE)]
            if value.dtype == torch.float32:
                out.append(("float64", value.double(), self.float64))
            if value.numel():
                value = value if value.is_floating_point() else value.double()
                for label, bad in (("NaN", math.nan), ("inf", math.inf)):
                    broken = value.detach().clone()
                    broken.view(-1)[0] = bad
                    out.append((label, broken, REFUSE if self.finite else EITHER))
                broken = value.detach().clone()
                broken.view(-1)[0] = 1e30
                out.append(("a huge value", broken, OVERFLOW))
        elif self.kind == "int":
            out += [("float32", value.float(), REFUSE), ("int32", value.int(), EITHER)]
        else:
            out.append(("float32", value.float(), REFUSE))
        for axis in range(min(value.ndim, 2)):
            if self.empty and value.shape[axis] > 0:
                out.append((f"empty axis {axis}", value.narrow(axis, 0, 0), EITHER))
        if self.gate is not None and value.numel():
            low, high = self.gate
            for label, bad in ((f"a gate above {high}", high + 0.5),
                               (f"a gate below {low}", low - 0.5)):
                if not math.isfinite(bad):
                    continue
                broken = value.detach().clone()
                broken.view(-1)[0] = bad
                out.append((label, broken, REFUSE))
        if self.vocab is not None and value.numel():
            bad_values = [self.vocab, -2 if self.ignore else -1]
            for bad in bad_values:
                broken = value.clone()
                broken.view(-1)[0] = bad
                out.append((f"token id {bad}", broken, REFUSE))
        if self.batch is not None and value.ndim >= 1 and value.shape[0] > 1:
            out.append(("batch - 1", value[1:], REFUSE))
        if self.contiguity and value.ndim >= 2 and value.shape[-1] > 1 and value.shape[-2] > 1:
            strided = value.transpose(-1, -2).contiguous().transpose(-1, -2)
            out.append(("non-contiguous", strided, SAME))
        elif self.contiguity and value.ndim == 1 and value.numel() > 1:
            out.append(("non-contiguous", torch.stack([value, value], -1)[:, 0], SAME))
        if self.grad and value.is_floating_point():
            out.append(("requires_grad", value.detach().clone().requires_grad_(True), SAME))
        if self.light:
            out = [mutation for mutation in out if mutation[2] == REFUSE]
        return out


# --------------------------------------------------------------------------------------------
# Entries and results


@dataclass
class Entry:
    """One valid call: ``call(**make())``; ``specs`` says how to mutate each argument."""

    call: Callable[..., Any]
    make: Callable[[], dict]
    specs: dict[str, Spec]
    check: Callable[[Any, dict], str | None] | None = None
    finite: bool = True          # every float in the result must be finite
    finite_part: Callable[[Any, dict], Any] | None = None  # or only this part of it
    same: bool = True            # SAME mutations are compared with the baseline
    positional: tuple[str, ...] = ()
    exempt: str | None = None    # a reason to make no call (exception classes, records)
    alarm: float = 3.0           # CPU seconds per call (see :func:`alarm`)
    aliases: dict[str, tuple[str, ...]] = field(default_factory=dict)  # other names an
    # error may use for an argument (a check helper's ``name``, the flag of a wrapped call)
    extra: list[tuple[str, str, Any, str]] = field(default_factory=list)  # more mutations:
    # (argument, label, value, expect)


def _floats(value, path="result"):
    """Yield (path, array) for every floating array-like inside ``value``."""
    if isinstance(value, torch.Tensor):
        if value.is_floating_point() or value.is_complex():
            # an expanded view (stride 0) holds one value along that axis: look at it once
            index = tuple(0 if stride == 0 and size > 1 else slice(None)
                          for size, stride in zip(value.shape, value.stride(), strict=True))
            yield path, value.detach()[index].cpu().double().numpy()
    elif isinstance(value, np.ndarray):
        if np.issubdtype(value.dtype, np.floating):
            yield path, value
    elif isinstance(value, float):
        yield path, np.array([value])
    elif isinstance(value, dict):
        for key, item in value.items():
            yield from _floats(item, f"{path}[{key!r}]")
    elif isinstance(value, (list, tuple)):
        for index, item in enumerate(value):
            yield from _floats(item, f"{path}[{index}]")
    elif dataclasses.is_dataclass(value) and not isinstance(value, type):
        for item in dataclasses.fields(value):
            yield from _floats(getattr(value, item.name), f"{path}.{item.name}")


def _non_finite(value) -> str | None:
    for path, array in _floats(value):
        if array.size and not np.isfinite(array).all():
            return f"{path} holds non-finite values"
    return None


def _leaves(value, path="result"):
    if isinstance(value, (torch.Tensor, np.ndarray, float, int, str, bool)) or value is None:
        yield path, value
    elif isinstance(value, dict):
        for key in value:
            yield from _leaves(value[key], f"{path}[{key!r}]")
    elif isinstance(value, (list, tuple)):
        for index, item in enumerate(value):
            yield from _leaves(item, f"{path}[{index}]")
    elif dataclasses.is_dataclass(value) and not isinstance(value, type):
        for item in dataclasses.fields(value):
            yield from _leaves(getattr(value, item.name), f"{path}.{item.name}")
    else:
        yield path, type(value)


def _difference(a, b) -> str | None:
    """Where two results differ (None when they hold the same values)."""
    left, right = list(_leaves(a)), list(_leaves(b))
    if len(left) != len(right):
        return "results of a different structure"
    for (path, x), (_, y) in zip(left, right, strict=True):
        if isinstance(x, torch.Tensor) or isinstance(y, torch.Tensor):
            if not (isinstance(x, torch.Tensor) and isinstance(y, torch.Tensor)):
                return f"{path}: a tensor and a {type(y).__name__}"
            if x.shape != y.shape:
                return f"{path}: shapes {tuple(x.shape)} and {tuple(y.shape)}"
            if x.is_floating_point():
                if not torch.allclose(x.detach().double(), y.detach().double(), rtol=1e-4,
                                      atol=1e-5, equal_nan=True):
                    return f"{path}: values differ"
            elif not torch.equal(x, y):
                return f"{path}: values differ"
        elif isinstance(x, np.ndarray):
            if not isinstance(y, np.ndarray) or x.shape != y.shape:
                return f"{path}: arrays of different shapes"
            if np.issubdtype(x.dtype, np.floating):
                if not np.allclose(x, y, rtol=1e-4, atol=1e-5, equal_nan=True):
                    return f"{path}: values differ"
            elif not np.array_equal(x, y):
                return f"{path}: values differ"
        elif isinstance(x, float) and isinstance(y, float):
            if not (math.isclose(x, y, rel_tol=1e-4, abs_tol=1e-5)
                    or (math.isnan(x) and math.isnan(y))):
                return f"{path}: {x} and {y}"
        elif x != y:
            return f"{path}: {x!r} and {y!r}"
    return None


@dataclass
class Outcome:
    entry: str
    mutation: str
    kind: str        # valid | refusal | unclear | silent | hang
    detail: str = ""


#: A call's wall-clock backstop, as a multiple of its CPU budget (a call that waits without
#: computing, e.g. on a subprocess): generous, so that a machine busy with other work, where
#: this process gets a fraction of a core, is never taken for a hang.
WALL_FACTOR = 20.0
WALL_MINIMUM = 120.0


@contextlib.contextmanager
def alarm(seconds: float):
    """Raise :class:`Hang` when the call uses more than ``seconds`` of this process's CPU
    time (``ITIMER_PROF``: user + system time of the process, which does not advance while
    other processes hold the cores, so load is not a hang), or, as a backstop for a call that
    blocks, more than ``max(WALL_MINIMUM, WALL_FACTOR * seconds)`` of wall-clock time."""
    wall = max(WALL_MINIMUM, WALL_FACTOR * seconds)

    def ring_cpu(signum, frame):
        raise Hang(f"over {seconds} s of CPU time")

    def ring_wall(signum, frame):
        raise Hang(f"over {wall} s of wall-clock time")

    previous_cpu = signal.signal(signal.SIGPROF, ring_cpu)
    previous_wall = signal.signal(signal.SIGALRM, ring_wall)
    signal.setitimer(signal.ITIMER_PROF, seconds)
    signal.setitimer(signal.ITIMER_REAL, wall)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_PROF, 0)
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGPROF, previous_cpu)
        signal.signal(signal.SIGALRM, previous_wall)


@contextlib.contextmanager
def memory_limit(extra_bytes: int = 6 * 1024 ** 3):
    """Cap the address space at the current size + ``extra_bytes`` (a fuzz call that tries a
    huge allocation then fails quickly instead of taking the machine's memory)."""
    with open("/proc/self/status") as status:
        size = next(int(line.split()[1]) * 1024 for line in status if line.startswith("VmSize"))
    soft, hard = resource.getrlimit(resource.RLIMIT_AS)
    resource.setrlimit(resource.RLIMIT_AS, (size + extra_bytes, hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_AS, (soft, hard))


def _invoke(entry: Entry, arguments: dict):
    positional = [arguments.pop(name) for name in entry.positional]
    return entry.call(*positional, **arguments)


def _judge_result(entry: Entry, result, arguments: dict, expect: str, baseline) -> str | None:
    if expect == REFUSE:
        return "invalid input accepted"
    if entry.finite and expect != OVERFLOW:
        part = result if entry.finite_part is None else entry.finite_part(result, arguments)
        problem = _non_finite(part)
        if problem:
            return problem
    if entry.check is not None:
        problem = entry.check(result, arguments)
        if problem:
            return problem
    if expect == SAME and entry.same and baseline is not None:
        problem = _difference(result, baseline)
        if problem:
            return f"differs from the unmutated call: {problem}"
    return None


def names_argument(message: str, names: tuple[str, ...]) -> bool:
    """Whether ``message`` names one of ``names`` as a word (``q`` in "q must", not "equal")."""
    return any(re.search(rf"(?<![A-Za-z0-9_]){re.escape(name)}(?![A-Za-z0-9_])", message)
               for name in names)


def run_one(entry: Entry, name: str, label: str, arguments: dict, argument: str | None,
            expect: str, baseline, value=None) -> tuple[Outcome, Any]:
    kept = dict(arguments)
    try:
        with alarm(entry.alarm), contextlib.redirect_stdout(io.StringIO()), \
                contextlib.redirect_stderr(io.StringIO()), warnings.catch_warnings():
            warnings.simplefilter("ignore")  # NaN gaps in plots, overflow in huge inputs
            result = _invoke(entry, dict(arguments))
    except Hang as error:
        return Outcome(name, label, "hang", str(error)), None
    except BaseException as error:
        if isinstance(expect, type) and isinstance(error, expect):
            return Outcome(name, label, "refusal"), None  # the error this input must raise
        if not isinstance(error, Exception):
            raise
        return _judge_error(entry, name, label, argument, value, error), None
    if isinstance(expect, type):
        return Outcome(name, label, "silent", f"no {expect.__name__} raised"), result
    problem = _judge_result(entry, result, kept, expect, baseline)
    if problem:
        return Outcome(name, label, "silent", problem), result
    return Outcome(name, label, "valid"), result


def _judge_error(entry: Entry, name: str, label: str, argument: str | None, value,
                 error: Exception) -> Outcome:
    try:
        raise error
    except (ValueError, TypeError) as error:
        message = str(error)
        if argument is None:
            return Outcome(name, label, "unclear", f"the valid call failed: "
                           f"{type(error).__name__}: {message[:200]}")
        names = (argument, *entry.aliases.get(argument, ()))
        if isinstance(value, str) and ("/" in value or "." in value):
            names = (*names, value)  # a path is named by itself
        if names_argument(message, names):
            return Outcome(name, label, "refusal")
        return Outcome(name, label, "unclear", f"{type(error).__name__} without "
                       f"{argument!r}: {message[:200]}")
    except MemoryError as error:
        return Outcome(name, label, "unclear", f"MemoryError {error}")
    except Exception as error:
        return Outcome(name, label, "unclear", f"{type(error).__name__}: "
                       f"{str(error)[:200]}")


def fuzz_entry(name: str, entry: Entry) -> list[Outcome]:
    """The valid call, then every mutation of every argument, one at a time."""
    torch.manual_seed(0)
    outcome, baseline = run_one(entry, name, "valid call", entry.make(), None, EITHER, None)
    outcomes = [outcome]
    if outcome.kind != "valid":
        return outcomes
    for argument, spec in entry.specs.items():
        base = entry.make()
        if argument not in base:
            raise AssertionError(f"{name}: spec for {argument!r}, which the call lacks")
        mutations = spec.mutations(base[argument])
        mutations += [(label, value, expect) for extra_argument, label, value, expect
                      in entry.extra if extra_argument == argument]
        for label, value, expect in mutations:
            if isinstance(value, Lazy):
                value = value.build()
            arguments = entry.make()
            arguments[argument] = value
            torch.manual_seed(0)
            outcome, _ = run_one(entry, name, f"{argument}: {label}", arguments, argument,
                                 expect, baseline, value)
            outcomes.append(outcome)
    return outcomes


def summarise(outcomes: list[Outcome], seconds: float) -> str:
    counts = Counter(outcome.kind for outcome in outcomes)
    entries = len({outcome.entry for outcome in outcomes})
    return (f"fuzz: {len(outcomes)} calls of {entries} callables in {seconds:.1f} s: "
            f"{counts['valid']} valid results, {counts['refusal']} named refusals, "
            f"{counts['unclear']} unclear errors, {counts['silent']} silent wrong results, "
            f"{counts['hang']} hangs")


def run_registry(registry: dict[str, Entry]) -> tuple[list[Outcome], float]:
    start = time.perf_counter()
    outcomes: list[Outcome] = []
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny tensors: more threads only contend
    with memory_limit():
        for name, entry in registry.items():
            if entry.exempt is None:
                outcomes += fuzz_entry(name, entry)
    torch.set_num_threads(threads)
    return outcomes, time.perf_counter() - start
