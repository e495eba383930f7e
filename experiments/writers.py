"""Metric writers (JSON lines + TensorBoard), the periodic-action helper and progress reporting.

Only process 0 writes; other processes get a writer that drops everything (clu's convention).
"""

from __future__ import annotations

import json
import math
import os
import time
from collections.abc import Mapping
from typing import Any

import jax
import numpy as np


def every(step: int, period: int, total_steps: int | None = None, first: bool = False) -> bool:
    """True when a periodic action is due at `step` (1-based count of finished steps).

    Due every `period` steps, on the last step when `total_steps` is given, and on step 1 when
    `first`. A period <= 0 disables the action except for the last-step rule.
    """
    if first and step == 1:
        return True
    if total_steps is not None and step == total_steps:
        return True
    return period > 0 and step % period == 0


def _to_float(name: str, value: Any) -> float:
    array = np.asarray(value)
    if array.size != 1:
        raise ValueError(f"metric {name!r} must be a scalar, got shape {array.shape}")
    return float(array.reshape(()))


class MetricWriter:
    """Writes scalar metrics to `<workdir>/metrics.jsonl` and a TensorBoard event file.

    Each JSONL line is {"step": int, "split": str, "time": float, **scalars}.
    """

    def __init__(self, workdir: str, tensorboard: bool = True) -> None:
        self._enabled = jax.process_index() == 0
        self._jsonl = None
        self._tb = None
        if not self._enabled:
            return
        os.makedirs(workdir, exist_ok=True)
        self._jsonl = open(os.path.join(workdir, "metrics.jsonl"), "a", encoding="utf-8")
        if tensorboard:
            from tensorboardX import SummaryWriter

            self._tb = SummaryWriter(os.path.join(workdir, "tensorboard"))

    def write_scalars(self, step: int, scalars: Mapping[str, Any], split: str = "train") -> None:
        if not self._enabled:
            return
        values = {name: _to_float(name, value) for name, value in scalars.items()}
        record = {"step": int(step), "split": split, "time": time.time(), **values}
        self._jsonl.write(json.dumps(record) + "\n")
        if self._tb is not None:
            for name, value in values.items():
                self._tb.add_scalar(f"{split}/{name}", value, global_step=int(step))

    def flush(self) -> None:
        if self._jsonl is not None:
            self._jsonl.flush()
        if self._tb is not None:
            self._tb.flush()

    def close(self) -> None:
        self.flush()
        if self._jsonl is not None:
            self._jsonl.close()
            self._jsonl = None
        if self._tb is not None:
            self._tb.close()
            self._tb = None


def read_metrics(workdir: str, split: str | None = None) -> list[dict[str, Any]]:
    """Reads back the JSONL records written by MetricWriter (optionally one split)."""
    path = os.path.join(workdir, "metrics.jsonl")
    records = []
    with open(path, encoding="utf-8") as f:
        for line in f:
            record = json.loads(line)
            if split is None or record["split"] == split:
                records.append(record)
    return records


class StepTimer:
    """Steps/s and ETA over the steps since the previous report."""

    def __init__(self, start_step: int, total_steps: int) -> None:
        self._total = total_steps
        self._last_step = start_step
        self._last_time = time.perf_counter()

    def report(self, step: int) -> dict[str, float]:
        now = time.perf_counter()
        elapsed = max(now - self._last_time, 1e-9)
        steps_per_s = (step - self._last_step) / elapsed
        self._last_step, self._last_time = step, now
        eta_s = (self._total - step) / steps_per_s if steps_per_s > 0 else math.inf
        return {"steps_per_s": steps_per_s, "eta_s": eta_s}


def format_eta(seconds: float) -> str:
    if not math.isfinite(seconds):
        return "?"
    seconds = int(seconds)
    return f"{seconds // 3600:d}:{seconds % 3600 // 60:02d}:{seconds % 60:02d}"
