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

    Each JSONL line is {"step": int, "split": str, "time": float, **scalars}. Both files are
    flushed at every `write_scalars`, so a killed run keeps every step it logged.

    `resume_step`: the step the run restarts from (its restored checkpoint, 0 for a fresh
    start). JSONL lines of later steps (logged after that checkpoint by a run that was then
    killed) are dropped, and the new TensorBoard file starts with TensorBoard's purge marker
    (a SessionLog START at `resume_step + 1`), which hides the older files' events of those
    steps: every step appears once.
    """

    def __init__(self, workdir: str, tensorboard: bool = True, resume_step: int | None = None) -> None:
        self._enabled = jax.process_index() == 0
        self._jsonl = None
        self._tb = None
        if not self._enabled:
            return
        os.makedirs(workdir, exist_ok=True)
        path = os.path.join(workdir, "metrics.jsonl")
        if resume_step is not None:
            dropped = drop_metrics_after(path, resume_step)
            if dropped:
                print(f"metrics: dropped {dropped} lines of steps after {resume_step} from {path} "
                      "(logged after the checkpoint the run resumes from); TensorBoard hides those steps of "
                      "the older event files (purge marker in the new one)", flush=True)
        self._jsonl = open(path, "a", encoding="utf-8")
        if tensorboard:
            self._tb = _EventFile(os.path.join(workdir, "tensorboard"), purge_from=(resume_step or 0) + 1)

    def write_scalars(self, step: int, scalars: Mapping[str, Any], split: str = "train") -> None:
        if not self._enabled:
            return
        values = {name: _to_float(name, value) for name, value in scalars.items()}
        record = {"step": int(step), "split": split, "time": time.time(), **values}
        self._jsonl.write(json.dumps(record) + "\n")
        if self._tb is not None:
            self._tb.write_scalars(int(step), {f"{split}/{name}": value for name, value in values.items()})
        self.flush()

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


class _EventFile:
    """A TensorBoard events file written synchronously (tensorboardX's SummaryWriter queues
    events for a background thread, so its `flush` does not put them on disk)."""

    def __init__(self, logdir: str, purge_from: int) -> None:
        from tensorboardX.event_file_writer import EventsWriter
        from tensorboardX.proto.event_pb2 import Event, SessionLog

        os.makedirs(logdir, exist_ok=True)
        self._event = Event
        # The pid keeps a quickly restarted run (same second, same host) from reusing the name.
        self._writer = EventsWriter(os.path.join(logdir, "events"), filename_suffix=f".{os.getpid()}")
        if purge_from > 1:
            self._writer.write_event(Event(wall_time=time.time(), step=purge_from,
                                           session_log=SessionLog(status=SessionLog.START)))

    def write_scalars(self, step: int, values: Mapping[str, float]) -> None:
        from tensorboardX.summary import scalar

        for tag, value in values.items():
            self._writer.write_event(self._event(wall_time=time.time(), step=step, summary=scalar(tag, value)))

    def flush(self) -> None:
        self._writer.flush()

    def close(self) -> None:
        self._writer.close()


def drop_metrics_after(path: str, step: int) -> int:
    """Removes the lines of `path` (metrics.jsonl) whose step exceeds `step`, and a torn last
    line; returns how many lines went. The file is replaced atomically."""
    if not os.path.exists(path):
        return 0
    with open(path, encoding="utf-8") as f:
        lines = f.readlines()
    kept = []
    for line in lines:
        try:
            if json.loads(line)["step"] <= step:
                kept.append(line)
        except (json.JSONDecodeError, KeyError, TypeError):
            pass  # a line cut by a kill
    if len(kept) == len(lines) and all(line.endswith("\n") for line in kept):
        return 0
    kept = [line if line.endswith("\n") else line + "\n" for line in kept]
    with open(path + ".tmp", "w", encoding="utf-8") as f:
        f.writelines(kept)
    os.replace(path + ".tmp", path)
    return len(lines) - len(kept)


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
