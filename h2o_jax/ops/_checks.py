"""Shape checks for the public ops: errors that name the argument and the expected shape."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def check_rank_at_least(name: str, array, min_rank: int, spec: str) -> None:
    if np.ndim(array) < min_rank:
        raise ValueError(f"{name} must have shape {spec}, got shape {np.shape(array)}")


def check_shape(name: str, array, expected: Sequence[int | None], spec: str) -> None:
    """Checks the trailing dims of `array` against `expected` (None = any size)."""
    shape = np.shape(array)
    if len(shape) < len(expected):
        raise ValueError(f"{name} must have shape {spec}, got shape {shape}")
    tail = shape[len(shape) - len(expected):]
    for have, want in zip(tail, expected):
        if want is not None and have != want:
            raise ValueError(f"{name} must have shape {spec}, got shape {shape}")


def check_exact_rank(name: str, array, rank: int, spec: str) -> None:
    if np.ndim(array) != rank:
        raise ValueError(f"{name} must have shape {spec}, got shape {np.shape(array)}")
