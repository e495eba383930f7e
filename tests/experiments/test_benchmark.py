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
             (["--iters", "0"], r"^error: --iters must be >= 1"),
             (["--train-config", "experiments/configs/synthetic.py:huge"], r"^error: --train-config: .*unknown preset 'huge'"),
             (["--train-config", str(tmp_path / "none.py")], r"^error: --train-config: .*none\.py' not found")]
    for flags, message in cases:
        with pytest.raises(SystemExit, match=message):
            benchmark.main(["--preset", "tiny", "--out", str(tmp_path / "b.json"), *flags])


def test_train_config_times_that_configs_own_train_step(tmp_path):
    """The main job's step as experiments.train jits it: the config's variant, width and batch."""
    out = tmp_path / "bench.json"
    results = benchmark.main(["--preset", "tiny", "--skip-inference", "--train-iters", "1", "--out", str(out),
                              "--train-config", "experiments/configs/synthetic.py:tiny"])
    assert [r.case for r in results] == ["train step (synthetic.py:tiny: B+D+MF+FO+HO, 1/8 width)"]
    assert results[0].batch == 4 and results[0].ms_per_call > 0
    assert json.loads(out.read_text())["results"][0]["case"] == results[0].case
