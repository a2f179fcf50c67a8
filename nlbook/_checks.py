"""Argument validation shared by every nlbook module and command line.

Every helper raises an error whose message names the argument, what was given and what was
expected, e.g. ``k must have shape (B, H, T, d_k) = (2, 4, 16, 8), got (2, 4, 15, 8)``, before
any work is done. A value out of range is a ``ValueError``; a value of the wrong type is an
:class:`ArgumentTypeError`, which is both a ``TypeError`` and a ``ValueError`` (the course's rule
is "a ValueError naming the argument"; code that catches ``TypeError`` works too).

Checks that read tensor *values* (finiteness, ranges) cost a pass over the data and a device
synchronisation, and a compiled region cannot branch on data. They run only in the outermost
course entry point of a call (see :func:`entry_point`) and never while ``torch.compile``
traces: a HOPE layer called by ``HopeLM`` trusts the embedding it is given, so a model whose
weights turned NaN reaches its loss, where training stops with ``TrainingDivergedError``.
"""

from __future__ import annotations

import functools
import math
import numbers
import os
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

import torch

__all__ = [
    "ArgumentTypeError",
    "check_bool",
    "check_callable",
    "check_choice",
    "check_device",
    "check_dtype_float",
    "check_finite",
    "check_in_range",
    "check_instance",
    "check_int",
    "check_int_sequence",
    "check_memory",
    "check_ndim",
    "check_non_negative_int",
    "check_numpy_generator",
    "check_positive_int",
    "check_same_dtype_device",
    "check_scalar_in_range",
    "check_shape",
    "check_str",
    "check_tensor",
    "check_torch_generator",
    "check_writable_path",
    "data_checks_enabled",
    "describe",
    "entry_point",
]

_F = TypeVar("_F", bound=Callable[..., Any])


class ArgumentTypeError(TypeError, ValueError):
    """An argument of the wrong type (a ``TypeError`` that is also a ``ValueError``)."""


def describe(value: Any) -> str:
    """A short description of ``value`` for an error message (tensors by shape and dtype)."""
    if isinstance(value, torch.Tensor):
        return f"a tensor of shape {tuple(value.shape)} and dtype {value.dtype}"
    if value is None or isinstance(value, (bool, numbers.Number)):
        return repr(value)
    if isinstance(value, (str, bytes)):
        text = repr(value)
        return text if len(text) <= 60 else text[:57] + "..."
    return f"a {type(value).__name__}"


def _format_shape(shape: Sequence[int | None]) -> str:
    return "(" + ", ".join("*" if size is None else str(size) for size in shape) + ")"


# --------------------------------------------------------------------------------------------
# When the checks that read tensor values run


_STATE = threading.local()


def _depth() -> int:
    return getattr(_STATE, "depth", 0)


def entry_point(function: _F) -> _F:
    """Mark a public function or ``forward`` as a course entry point.

    Inside the outermost entry point of a call, nested entry points skip the checks that read
    tensor values (:func:`data_checks_enabled` is False there): the caller checked what it was
    given, and what it computes from it (a NaN from weights that diverged, say) must reach the
    caller's own handling instead of being refused half-way. Shape, type and dtype checks always
    run. Under ``torch.compile`` the wrapper is transparent.
    """

    @functools.wraps(function)
    def wrapper(*args, **kwargs):
        if torch.compiler.is_compiling():
            return function(*args, **kwargs)
        _STATE.depth = _depth() + 1
        try:
            return function(*args, **kwargs)
        finally:
            _STATE.depth -= 1

    return wrapper  # type: ignore[return-value]


def data_checks_enabled() -> bool:
    """True unless a course entry point called this one, or ``torch.compile`` is tracing."""
    return not torch.compiler.is_compiling() and _depth() <= 1


# --------------------------------------------------------------------------------------------
# Python values


def check_bool(name: str, value: Any) -> bool:
    """Raise unless ``value`` is a ``bool`` (not 0/1, not None)."""
    if not isinstance(value, bool):
        raise ArgumentTypeError(f"{name} must be a bool (True or False), got {describe(value)}")
    return value


def check_int(name: str, value: Any, *, low: int | None = None, high: int | None = None,
              allow_none: bool = False) -> int | None:
    """Raise unless ``value`` is an int (bools refused) in [low, high]; returns it as ``int``."""
    if value is None and allow_none:
        return None
    bounds = []
    if low is not None:
        bounds.append(f">= {low}")
    if high is not None:
        bounds.append(f"<= {high}")
    expected = "an int" + (" " + " and ".join(bounds) if bounds else "")
    if allow_none:
        expected += " or None"
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise ArgumentTypeError(f"{name} must be {expected}, got {describe(value)}")
    if not isinstance(value, int) and "seed" in name:
        # torch.Generator.manual_seed takes Python ints only ("an integer is required"): a
        # numpy seed is refused here, by name, rather than deep inside torch.
        raise ArgumentTypeError(f"{name} must be a Python int, got {describe(value)} "
                                f"({type(value).__module__}.{type(value).__name__}): pass "
                                f"int({name})")
    value = int(value)
    if (low is not None and value < low) or (high is not None and value > high):
        raise ValueError(f"{name} must be {expected}, got {value!r}")
    return value


def check_positive_int(name: str, value: Any, *, allow_none: bool = False) -> int | None:
    """Raise unless ``value`` is a positive ``int`` (or ``None`` when allowed)."""
    if value is None and allow_none:
        return None
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
        expected = "a positive int or None" if allow_none else "a positive int"
        error = ValueError if isinstance(value, numbers.Integral) and not isinstance(
            value, bool) else ArgumentTypeError
        raise error(f"{name} must be {expected}, got {describe(value)}")
    return int(value)


def check_non_negative_int(name: str, value: Any, *, allow_none: bool = False) -> int | None:
    """Raise unless ``value`` is an ``int`` >= 0 (or ``None`` when allowed)."""
    return check_int(name, value, low=0, allow_none=allow_none)


def check_scalar_in_range(
    name: str,
    value: Any,
    low: float,
    high: float,
    *,
    low_inclusive: bool = True,
    high_inclusive: bool = True,
    allow_none: bool = False,
) -> float | None:
    """Raise unless ``value`` is a finite real number (bools refused) in the interval.

    An infinite bound means "unbounded on that side": the value itself must still be finite.
    """
    if value is None and allow_none:
        return None
    left = "[" if low_inclusive and math.isfinite(low) else "("
    right = "]" if high_inclusive and math.isfinite(high) else ")"
    interval = f"{left}{low}, {high}{right}"
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise ArgumentTypeError(f"{name} must be a finite number in {interval}, "
                                f"got {describe(value)}")
    if not math.isfinite(value):
        raise ValueError(f"{name} must be a finite number in {interval}, got {value!r}")
    ok_low = value >= low if low_inclusive else value > low
    ok_high = value <= high if high_inclusive else value < high
    if not (ok_low and ok_high):
        raise ValueError(f"{name} must lie in {interval}, got {value!r}")
    return float(value)


def check_choice(name: str, value: Any, choices: Sequence[Any]) -> Any:
    """Raise unless ``value`` is one of ``choices`` (compared by equality and type)."""
    for choice in choices:
        if type(value) is type(choice) and value == choice:
            return value
    raise ValueError(f"{name} must be one of {list(choices)}, got {describe(value)}")


def check_str(name: str, value: Any, *, allow_none: bool = False,
              allow_empty: bool = False) -> str | None:
    """Raise unless ``value`` is a (non-empty, unless allowed) ``str``."""
    if value is None and allow_none:
        return None
    if not isinstance(value, str):
        expected = "a str or None" if allow_none else "a str"
        raise ArgumentTypeError(f"{name} must be {expected}, got {describe(value)}")
    if not value and not allow_empty:
        raise ValueError(f"{name} must be a non-empty str, got ''")
    return value


def check_instance(name: str, value: Any, types: type | tuple[type, ...], *,
                   allow_none: bool = False, expected: str | None = None) -> Any:
    """Raise unless ``value`` is an instance of ``types`` (``expected`` describes them)."""
    if value is None and allow_none:
        return None
    if not isinstance(value, types):
        if expected is None:
            names = types if isinstance(types, tuple) else (types,)
            expected = "a " + " or ".join(t.__name__ for t in names)
        if allow_none:
            expected += " or None"
        raise ArgumentTypeError(f"{name} must be {expected}, got {describe(value)}")
    return value


def check_callable(name: str, value: Any, *, allow_none: bool = False) -> Any:
    """Raise unless ``value`` is callable (or ``None`` when allowed)."""
    if value is None and allow_none:
        return None
    if not callable(value) or (isinstance(value, type) and issubclass(value, BaseException)):
        expected = "a callable or None" if allow_none else "a callable"
        raise ArgumentTypeError(f"{name} must be {expected}, got {describe(value)}")
    return value


def check_int_sequence(name: str, value: Any, *, low: int | None = None,
                       length: int | None = None, allow_empty: bool = False) -> list[int]:
    """Raise unless ``value`` is a list or tuple of ints >= ``low`` (of ``length`` items)."""
    if not isinstance(value, (list, tuple)):
        raise ArgumentTypeError(f"{name} must be a list or tuple of ints, got {describe(value)}")
    if length is not None and len(value) != length:
        raise ValueError(f"{name} must hold {length} ints, got {len(value)}")
    if not value and not allow_empty:
        raise ValueError(f"{name} must hold at least one int, got an empty sequence")
    return [check_int(f"{name}[{index}]", item, low=low)  # type: ignore[misc]
            for index, item in enumerate(value)]


def check_number_sequence(name: str, value: Any, *, low: float = -math.inf,
                          high: float = math.inf, length: int | None = None,
                          allow_empty: bool = False) -> list[float]:
    """Raise unless ``value`` is a list or tuple of finite numbers in [low, high]."""
    if not isinstance(value, (list, tuple)):
        raise ArgumentTypeError(f"{name} must be a list or tuple of numbers, "
                                f"got {describe(value)}")
    if length is not None and len(value) != length:
        raise ValueError(f"{name} must hold {length} numbers, got {len(value)}")
    if not value and not allow_empty:
        raise ValueError(f"{name} must hold at least one number, got an empty sequence")
    return [check_scalar_in_range(f"{name}[{index}]", item, low, high)  # type: ignore[misc]
            for index, item in enumerate(value)]


def check_torch_generator(name: str, value: Any, *, allow_none: bool = False) -> Any:
    """Raise unless ``value`` is a ``torch.Generator`` (or ``None`` when allowed)."""
    return check_instance(name, value, torch.Generator, allow_none=allow_none,
                          expected="a torch.Generator")


def check_numpy_generator(name: str, value: Any, *, allow_none: bool = False) -> Any:
    """Raise unless ``value`` is a ``numpy.random.Generator`` (``numpy.random.default_rng``)."""
    import numpy as np

    return check_instance(name, value, np.random.Generator, allow_none=allow_none,
                          expected="a numpy.random.Generator (numpy.random.default_rng(seed))")


# --------------------------------------------------------------------------------------------
# Tensors


def check_ndim(name: str, tensor: Any, ndim: int, layout: str) -> None:
    """Raise unless ``tensor`` is a tensor of rank ``ndim`` (``layout`` names the axes)."""
    if not isinstance(tensor, torch.Tensor):
        raise ArgumentTypeError(f"{name} must be a torch.Tensor of shape {layout}, got "
                                f"{describe(tensor)}")
    if tensor.ndim != ndim:
        raise ValueError(
            f"{name} must have {ndim} dimensions {layout}, got shape {tuple(tensor.shape)}"
        )


def check_shape(
    name: str, tensor: Any, expected: Sequence[int | None], layout: str
) -> None:
    """Raise unless ``tensor.shape`` matches ``expected`` (``None`` matches any size)."""
    check_ndim(name, tensor, len(expected), layout)
    for size, want in zip(tensor.shape, expected, strict=True):
        if want is not None and size != want:
            raise ValueError(
                f"{name} must have shape {layout} = {_format_shape(expected)}, "
                f"got {tuple(tensor.shape)}"
            )


def check_dtype_float(name: str, tensor: torch.Tensor) -> None:
    """Raise unless ``tensor`` has a real floating-point dtype."""
    if not tensor.is_floating_point():
        raise ValueError(f"{name} must be a floating-point tensor, got dtype {tensor.dtype}")


def check_finite(name: str, tensor: torch.Tensor) -> None:
    """Raise unless every element of a floating-point ``tensor`` is finite (no NaN or inf).

    Reads the values: runs only where :func:`data_checks_enabled`.
    """
    if not tensor.is_floating_point() or not data_checks_enabled() or tensor.numel() == 0:
        return
    finite = torch.isfinite(tensor.detach())
    if not bool(finite.all()):
        bad = tensor.detach()[~finite].flatten()[0].item()
        raise ValueError(f"{name} must hold only finite values, got {bad} "
                         f"({int((~finite).sum())} of {tensor.numel()} elements not finite)")


def check_tensor(name: str, value: Any, *, ndim: int | None = None, layout: str = "",
                 dtype: str | torch.dtype | None = None, finite: bool = True,
                 allow_none: bool = False) -> torch.Tensor | None:
    """Raise unless ``value`` is a tensor of rank ``ndim`` with the ``dtype`` kind
    (``"float"``, ``"int"`` (int64), ``"bool"`` or a torch dtype) and, for floats,
    finite values (when ``finite``)."""
    if value is None and allow_none:
        return None
    if not isinstance(value, torch.Tensor):
        what = f"a torch.Tensor {layout}".rstrip()
        raise ArgumentTypeError(f"{name} must be {what}{' or None' if allow_none else ''}, "
                                f"got {describe(value)}")
    if ndim is not None and value.ndim != ndim:
        raise ValueError(f"{name} must have {ndim} dimensions {layout}".rstrip()
                         + f", got shape {tuple(value.shape)}")
    if dtype == "float":
        check_dtype_float(name, value)
    elif dtype == "int":
        if value.dtype != torch.int64:
            raise ValueError(f"{name} must have dtype torch.int64, got {value.dtype}")
    elif dtype == "bool":
        if value.dtype != torch.bool:
            raise ValueError(f"{name} must have dtype torch.bool, got {value.dtype}")
    elif isinstance(dtype, torch.dtype) and value.dtype != dtype:
        raise ValueError(f"{name} must have dtype {dtype}, got {value.dtype}")
    if finite:
        check_finite(name, value)
    return value


def check_same_dtype_device(reference_name: str, reference: torch.Tensor, **others) -> None:
    """Raise unless every tensor in ``others`` shares ``reference``'s dtype and device."""
    for name, tensor in others.items():
        if tensor is None:
            continue
        if not isinstance(tensor, torch.Tensor):
            raise ArgumentTypeError(f"{name} must be a torch.Tensor, got {describe(tensor)}")
        if tensor.dtype != reference.dtype:
            raise ValueError(
                f"{name} must have the dtype of {reference_name} ({reference.dtype}), "
                f"got {tensor.dtype}"
            )
        if tensor.device != reference.device:
            raise ValueError(
                f"{name} must be on the device of {reference_name} ({reference.device}), "
                f"got {tensor.device}"
            )


def check_in_range(
    name: str,
    tensor: torch.Tensor,
    low: float,
    high: float,
    *,
    low_inclusive: bool = True,
    high_inclusive: bool = True,
) -> None:
    """Raise unless every element of ``tensor`` lies in the interval (NaN fails too).

    Reads the values: runs only where :func:`data_checks_enabled`.
    """
    if not data_checks_enabled() or tensor.numel() == 0:
        return
    values = tensor.detach()
    above = values >= low if low_inclusive else values > low
    below = values <= high if high_inclusive else values < high
    if not bool((above & below).all()):
        left = "[" if low_inclusive else "("
        right = "]" if high_inclusive else ")"
        bad = values[~(above & below)].flatten()[0].item()
        raise ValueError(
            f"{name} must lie in {left}{low}, {high}{right}, got a value of {bad} "
            f"(min {values.min().item():.4g}, max {values.max().item():.4g})"
        )


# --------------------------------------------------------------------------------------------
# Resources: memory, devices, files


@functools.cache
def _physical_memory() -> int:
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (AttributeError, OSError, ValueError):  # not POSIX: assume a 16 GB laptop
        return 16 * 1024 ** 3


def check_memory(names: str, elements: int, *, bytes_per_element: int = 4,
                 what: str = "the tensors") -> None:
    """Raise (naming ``names``, the arguments that set the size) when ``elements`` values of
    ``bytes_per_element`` bytes would need more memory than this machine has, before any of
    it is allocated (an allocation that large fails late or freezes a laptop)."""
    if torch.compiler.is_compiling():  # sizes are fixed by then; os.sysconf breaks the graph
        return
    needed = int(elements) * bytes_per_element
    available = _physical_memory()
    if needed > available:
        raise ValueError(f"{names} too large: {what} would need about {needed / 1e9:.3g} GB, "
                         f"more than this machine's {available / 1e9:.3g} GB of memory")


def check_device(name: str, device: Any, *, available: bool = True) -> torch.device:
    """A ``torch.device`` from ``device`` (a str or torch.device); raise naming ``name`` when it
    is not a device name or (``available``) that device is not available on this machine."""
    if not isinstance(device, (str, torch.device)):
        raise ArgumentTypeError(f"{name} must be a device name such as 'cpu' or 'cuda', got "
                                f"{describe(device)}")
    try:
        parsed = torch.device(device)
    except (RuntimeError, ValueError) as error:
        raise ValueError(f"{name} must be a device name such as 'cpu', 'cuda' or 'cuda:0', "
                         f"got {device!r} ({str(error).splitlines()[0]})") from None
    if parsed.type == "cpu" or not available:
        if parsed.type not in ("cpu", "cuda", "mps"):
            raise ValueError(f"{name} must be 'cpu', 'cuda' or 'mps' (optionally with an "
                             f"index), got {device!r}")
        return parsed
    if parsed.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(f"{name} is {device!r}, but CUDA is not available on this machine "
                             f"(torch.cuda.is_available() is False); use 'cpu'")
        if parsed.index is not None and parsed.index >= torch.cuda.device_count():
            raise ValueError(f"{name} is {device!r}, but this machine has "
                             f"{torch.cuda.device_count()} CUDA device(s)")
        return parsed
    if parsed.type == "mps":
        backend = getattr(torch.backends, "mps", None)
        if backend is None or not backend.is_available():
            raise ValueError(f"{name} is {device!r}, but MPS is not available on this machine; "
                             f"use 'cpu'")
        return parsed
    raise ValueError(f"{name} must be 'cpu', 'cuda' or 'mps' (optionally with an index), "
                     f"got {device!r}")


def check_writable_path(name: str, path: Any, *, suffixes: Sequence[str] | None = None
                        ) -> Path:
    """Raise unless a file can be written at ``path``, and, when given, its suffix is one of
    ``suffixes``: before a long run, not after it. The folder is created if it is missing (as
    the writer would) and probed with a temporary file; an existing file is opened for
    appending and closed, unchanged.
    """
    if not isinstance(path, (str, os.PathLike)) or isinstance(path, bytes) or not str(path):
        raise ArgumentTypeError(f"{name} must be a file path (str or Path), got "
                                f"{describe(path)}")
    path = Path(path)
    if suffixes is not None and path.suffix.lower().lstrip(".") not in suffixes:
        raise ValueError(f"{name} must end in one of "
                         f"{', '.join('.' + suffix for suffix in suffixes)}, got {str(path)!r}")
    if path.is_dir():
        raise ValueError(f"{name} must be a file path, got the folder {str(path)!r}")
    import tempfile

    folder = path.parent
    try:
        folder.mkdir(parents=True, exist_ok=True)
        if path.exists():
            with open(path, "ab"):
                pass
        else:
            with tempfile.TemporaryFile(dir=folder):
                pass
    except OSError as error:
        raise ValueError(f"{name} {str(path)!r} cannot be written: "
                         f"{error.strerror or error}") from None
    return path
