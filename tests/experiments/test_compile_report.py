"""experiments.compile_report: recording a process's compilations and summing them by hand."""

import json
import os
import subprocess
import sys

import pytest

from experiments import compile_report

_PROGRAM = """
import sys
import jax, jax.numpy as jnp
from experiments.compile_report import CompileLog
CompileLog(sys.argv[1])
jax.jit(lambda x: jnp.sin(x) * 2)(jnp.ones(3)).block_until_ready()
jax.jit(lambda x: jnp.cos(x) + 1)(jnp.ones(3)).block_until_ready()
"""


def test_a_process_records_one_backend_compile_per_jitted_function(tmp_path):
    env = dict(os.environ, PYTEST_CURRENT_TEST="t::one (call)", JAX_PLATFORMS="cpu")
    subprocess.run([sys.executable, "-c", _PROGRAM, str(tmp_path)], check=True, env=env)
    rows = compile_report.read_log(str(tmp_path))
    compiles = [r for r in rows if r["event"] == compile_report.BACKEND_COMPILE_EVENT]
    # The two jitted functions, besides the eager ops that jnp.ones dispatches.
    assert [r["function"] for r in compiles].count("jit(<lambda>)") == 2
    assert all(r["test"] == "t::one" and r["duration_s"] > 0 for r in compiles)


def _row(process, event, seconds, function="f", test="t"):
    return dict(process=process, event=event, duration_s=seconds, function=function, test=test)


def test_summary_sums_by_event_test_and_function():
    compile_event, trace_event = compile_report.BACKEND_COMPILE_EVENT, "/jax/core/compile/jaxpr_trace_duration"
    rows = [_row("1", compile_event, 30.0, "jit(train_step)", "a"), _row("1", compile_event, 0.25, "jit(add)", "a"),
            _row("2", compile_event, 0.5, "jit(add)", "b"), _row("2", compile_event, 2.0, "jit(train_step)", ""),
            _row("2", trace_event, 4.0, "train_step", "b")]
    summary = compile_report.summarise(rows)
    assert summary["processes"] == 2 and summary["compile_count"] == 4 and summary["compile_s"] == 32.75
    assert summary["quick_count"] == 2 and summary["quick_s"] == 0.75
    assert summary["by_event"] == {compile_event: 32.75, trace_event: 4.0}
    assert summary["by_test"] == [("a", 30.25), ("(outside a test)", 2.0), ("b", 0.5)]
    assert summary["by_function"] == [("jit(train_step)", 2, 32.0), ("jit(add)", 2, 0.75)]
    text = compile_report.format_summary(summary)
    assert "4 backend compilations" in text and "2 under 1 s, 0.8 s together" in text


def test_an_empty_folder_is_a_one_line_error(tmp_path):
    with pytest.raises(SystemExit, match=r"^error: no compile log \(\*\.jsonl\) in .*pytest --compile-log"):
        compile_report.main([str(tmp_path)])
    (tmp_path / "7.jsonl").write_text(json.dumps(dict(event=compile_report.BACKEND_COMPILE_EVENT, duration_s=1.5,
                                                      function="jit(f)", test="x", time_s=0.0)) + "\n")
    assert compile_report.main([str(tmp_path)])["compile_s"] == 1.5
