"""Where a process's (or a test run's) time goes in JAX compilation: record, then summarise.

`CompileLog(folder)` registers a `jax.monitoring` listener that appends one JSON line per
compilation event of this process to `<folder>/<pid>.jsonl`: the event (tracing, lowering, the
backend compile -- which includes loading a persistent-cache hit --, cache hits), its duration,
the jitted function's name and the test running (`PYTEST_CURRENT_TEST`). The test suite turns it on
with `pytest --compile-log DIR` (tests/conftest.py: every xdist worker; subprocesses the tests start
are not recorded). Then

    python -m experiments.compile_report DIR

prints the seconds by event, the compile seconds by test and by function, and how many compilations
were quick (< 1 s: eager ops, dispatched one by one) against their summed time.
"""

from __future__ import annotations

import argparse
import collections
import glob
import json
import os
import time
from typing import Any

BACKEND_COMPILE_EVENT = "/jax/core/compile/backend_compile_duration"
QUICK_COMPILE_S = 1.0


class CompileLog:
    """Appends this process's compilation events to `<folder>/<pid>.jsonl` (see module docstring)."""

    def __init__(self, folder: str):
        import jax.monitoring

        os.makedirs(folder, exist_ok=True)
        self.path = os.path.join(folder, f"{os.getpid()}.jsonl")
        jax.monitoring.register_event_duration_secs_listener(self._record)

    def _record(self, event: str, duration_s: float, **kwargs: Any) -> None:
        if "/compile" not in event and "/compilation_cache/" not in event:
            return
        row = dict(event=event, duration_s=float(duration_s), function=str(kwargs.get("fun_name", "")),
                   test=os.environ.get("PYTEST_CURRENT_TEST", "").split(" (")[0], time_s=time.time())
        with open(self.path, "a") as f:
            f.write(json.dumps(row) + "\n")


def read_log(folder: str) -> list[dict[str, Any]]:
    """Every event row of every process in `folder` (the pid is added as `process`)."""
    paths = sorted(glob.glob(os.path.join(folder, "*.jsonl")))
    if not paths:
        raise FileNotFoundError(f"no compile log (*.jsonl) in {folder!r}: run pytest --compile-log {folder}")
    rows = []
    for path in paths:
        with open(path) as f:
            for line in f:
                if line.strip():
                    rows.append(dict(json.loads(line), process=os.path.basename(path).split(".")[0]))
    return rows


def summarise(rows: list[dict[str, Any]], top: int = 20) -> dict[str, Any]:
    """Seconds by event; backend-compile seconds and counts by test and by function; quick compiles."""
    by_event: dict[str, float] = collections.defaultdict(float)
    by_test: dict[str, float] = collections.defaultdict(float)
    by_function: dict[str, list] = collections.defaultdict(lambda: [0, 0.0])
    quick_count, quick_s, compile_count, compile_s = 0, 0.0, 0, 0.0
    for row in rows:
        by_event[row["event"]] += row["duration_s"]
        if row["event"] != BACKEND_COMPILE_EVENT:
            continue
        compile_count += 1
        compile_s += row["duration_s"]
        by_test[row["test"] or "(outside a test)"] += row["duration_s"]
        by_function[row["function"]][0] += 1
        by_function[row["function"]][1] += row["duration_s"]
        if row["duration_s"] < QUICK_COMPILE_S:
            quick_count += 1
            quick_s += row["duration_s"]
    ranked = lambda d, key: sorted(d.items(), key=key, reverse=True)[:top]  # noqa: E731
    return dict(
        processes=len({row["process"] for row in rows}), compile_count=compile_count, compile_s=compile_s,
        quick_count=quick_count, quick_s=quick_s,
        by_event=dict(sorted(by_event.items(), key=lambda kv: -kv[1])),
        by_test=ranked(by_test, lambda kv: kv[1]),
        by_function=[(name, count, seconds) for name, (count, seconds) in ranked(by_function, lambda kv: kv[1][1])])


def format_summary(summary: dict[str, Any]) -> str:
    lines = [f"{summary['processes']} processes, {summary['compile_count']} backend compilations "
             f"(persistent-cache loads included), {summary['compile_s']:.1f} s; "
             f"{summary['quick_count']} under {QUICK_COMPILE_S:g} s, {summary['quick_s']:.1f} s together",
             "", "seconds by event:"]
    lines += [f"  {seconds:9.1f}  {event}" for event, seconds in summary["by_event"].items()]
    lines += ["", "backend compile seconds by test:"]
    lines += [f"  {seconds:9.1f}  {test}" for test, seconds in summary["by_test"]]
    lines += ["", "backend compile by function (count, seconds):"]
    lines += [f"  {count:5d} {seconds:9.1f}  {name}" for name, count, seconds in summary["by_function"]]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("folder", help="the folder given to pytest --compile-log")
    parser.add_argument("--top", type=int, default=20, help="rows per ranking")
    args = parser.parse_args(argv)
    try:
        summary = summarise(read_log(args.folder), args.top)
    except FileNotFoundError as err:
        raise SystemExit(f"error: {err}")
    print(format_summary(summary))
    return summary


if __name__ == "__main__":
    main()
