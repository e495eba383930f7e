"""The benchmark runs end to end at a tiny size (no timing asserts: speed lives in BENCHMARKS.md)."""

import json

from experiments import benchmark


def test_benchmark_tiny_preset_writes_a_consistent_report(tmp_path):
    out = tmp_path / "bench.json"
    results = benchmark.main(["--preset", "tiny", "--skip-train", "--iters", "2", "--out", str(out)])
    report = json.loads(out.read_text())
    cases = [(r["case"], r["batch"]) for r in report["results"]]
    assert cases == [("single-frame", 1), ("single-frame", 4), ("three-frame", 1), ("three-frame", 4), ("streaming", 1)]
    for result, row in zip(results, report["results"]):
        assert row["ms_per_call"] > 0 and row["compile_s"] > 0
        assert abs(row["ms_per_frame"] * row["batch"] - row["ms_per_call"]) < 1e-9
        assert abs(row["fps"] - 1000.0 / row["ms_per_frame"]) < 1e-6
        assert result.case == row["case"]
    assert report["topology"].startswith("random tables, tiny")


def test_bad_options_are_one_line_errors(tmp_path):
    import pytest

    cases = [(["--topology", str(tmp_path / "missing.npz")], r"^error: topology file .*missing\.npz"),
             (["--dtypes", "float16"], r"^error: --dtypes: 'float16' is not float32 or bfloat16"),
             (["--width-divisor", "3"], r"^error: width_divisor must divide"),
             (["--iters", "0"], r"^error: --iters must be >= 1")]
    for flags, message in cases:
        with pytest.raises(SystemExit, match=message):
            benchmark.main(["--preset", "tiny", "--out", str(tmp_path / "b.json"), *flags])
