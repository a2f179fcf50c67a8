"""Argument validation shared by every nlbook module.

Each helper raises ``ValueError`` whose message names the argument, what was given and what
was expected, e.g. ``k must have shape (B, H, T, d_k) = (2, 4, 16, 8), got (2, 4, 15, 8)``.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

__all__ = [
    "check_dtype_float",
    "check_in_range",
    "check_ndim",
    "check_positive_int",
    "check_same_dtype_device",
    "check_scalar_in_range",
    "check_shape",
]


def _format_shape(shape: Sequence[int | None]) -> str:
    return "(" + ", ".join("*" if size is None else str(size) for size in shape) + ")"


def check_ndim(name: str, tensor: torch.Tensor, ndim: int, layout: str) -> None:
    """Raise unless ``tensor`` is a tensor of rank ``ndim`` (``layout`` names the axes)."""
    if not isinstance(tensor, torch.Tensor):
        raise ValueError(f"{name} must be a torch.Tensor of shape {layout}, got {type(tensor)}")
    if tensor.ndim != ndim:
        raise ValueError(
            f"{name} must have {ndim} dimensions {layout}, got shape {tuple(tensor.shape)}"
        )


def check_shape(
    name: str, tensor: torch.Tensor, expected: Sequence[int | None], layout: str
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
    """Raise unless ``tensor`` has a floating-point dtype."""
    if not tensor.is_floating_point():
        raise ValueError(f"{name} must be a floating-point tensor, got dtype {tensor.dtype}")


def check_same_dtype_device(reference_name: str, reference: torch.Tensor, **others) -> None:
    """Raise unless every tensor in ``others`` shares ``reference``'s dtype and device."""
    for name, tensor in others.items():
        if tensor is None:
            continue
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
    """Raise unless every element of ``tensor`` lies in the interval (NaN fails too)."""
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


def check_scalar_in_range(
    name: str,
    value: float,
    low: float,
    high: float,
    *,
    low_inclusive: bool = True,
    high_inclusive: bool = True,
) -> None:
    """Raise unless the Python number ``value`` lies in the interval."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f"{name} must be a number, got {value!r}")
    ok_low = value >= low if low_inclusive else value > low
    ok_high = value <= high if high_inclusive else value < high
    if not (ok_low and ok_high):
        left = "[" if low_inclusive else "("
        right = "]" if high_inclusive else ")"
        raise ValueError(f"{name} must lie in {left}{low}, {high}{right}, got {value!r}")


def check_positive_int(name: str, value: int, *, allow_none: bool = False) -> None:
    """Raise unless ``value`` is a positive ``int`` (or ``None`` when allowed)."""
    if value is None and allow_none:
        return
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        expected = "a positive int or None" if allow_none else "a positive int"
        raise ValueError(f"{name} must be {expected}, got {value!r}")
