"""The training loop: exact resume after an interruption, NaN guard, metrics and checkpoints."""

import json
import os
import shutil

import jax
import numpy as np
import pytest

from experiments import train
from experiments.configs.default import get_config
from experiments.writers import read_metrics
from h2o_jax.hand.random_topology import random_topology

TOPOLOGY = "random:48,24,12,6,3"


def make_source(num_samples, seed=0, nan_sample=None):
    """In-memory single-frame samples following data_loaders/features.py (T = 1)."""
    topology = random_topology((48, 24, 12, 6, 3))
    rng = np.random.default_rng(seed)
    samples = []
    for i in range(num_samples):
        verts = (topology.template_vertices_m + rng.normal(size=topology.template_vertices_m.shape) * 0.01)[None]
        joints = np.einsum("jv,tvk->tjk", topology.joint_regressor, verts)
        sample = {
            "image": rng.random((1, 128, 128, 3)).astype(np.float32),
            "verts_c_m": verts.astype(np.float32), "verts_r_m": verts.astype(np.float32),
            "joints_c_m": joints.astype(np.float32), "joints_r_m": joints.astype(np.float32),
            "rot_mat": np.eye(3, dtype=np.float32)[None], "joints_img": rng.random((1, 21, 2)).astype(np.float32),
            "occ_labels": rng.integers(0, 2, (1, 6)).astype(np.int32), "mask": np.float32(1.0),
        }
        if i == nan_sample:
            sample["verts_c_m"] = np.full_like(sample["verts_c_m"], np.nan)
        samples.append(sample)
    return samples


def tiny_config(num_steps=6):
    config = get_config()
    config.model.variant = "single_frame"
    config.model.width_divisor = 8
    config.model.topology = TOPOLOGY
    config.data.batch_size = 4
    config.optim.learning_rate = 1e-3
    # No decay milestones: they are steps_per_epoch (the source size) times an epoch, compiled into
    # the train step as constants, so each source size would compile its own step (never reached
    # in these few steps anyway); without them the tests of this file share one compiled step.
    config.optim.milestones_epochs = ()
    config.train.update(num_steps=num_steps, log_every=1, checkpoint_every=2, eval_every=6, keep_checkpoints=2)
    return config


def test_interrupted_run_resumes_exactly(tmp_path):
    source = make_source(12)
    reference = train.train_and_evaluate(tiny_config(), str(tmp_path / "a"), source, eval_source=source[:5])
    # The second run stops after step 3 (checkpoint at 2 only), as if killed, then resumes.
    workdir = str(tmp_path / "b")
    train.train_and_evaluate(tiny_config(), workdir, source, stop_after_steps=3)
    resumed = train.train_and_evaluate(tiny_config(), workdir, source)
    assert int(resumed.step) == int(reference.step) == 6
    for a, b in zip(jax.tree.leaves(reference.params), jax.tree.leaves(resumed.params)):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    records = read_metrics(str(tmp_path / "a"), split="train")
    assert [r["step"] for r in records] == [1, 2, 3, 4, 5, 6]
    assert all(np.isfinite(r["total"]) for r in records)
    evaluation = json.loads((tmp_path / "a" / "eval_6.json").read_text())
    assert evaluation["overall"]["num_samples"] == 5 and evaluation["overall"]["j_pe_mm"] > 0
    assert (tmp_path / "a" / "checkpoints" / "best").exists()
    assert json.loads((tmp_path / "a" / "config.json").read_text())["model"]["variant"] == "single_frame"


def test_nan_guard_names_the_step_range_and_keeps_the_checkpoint(tmp_path):
    source = make_source(4, nan_sample=2)  # every batch of 4 holds the NaN sample
    config = tiny_config()
    config.train.log_every = 2
    with pytest.raises(FloatingPointError, match="between steps 1 and 1"):
        train.train_and_evaluate(config, str(tmp_path), source)


def test_command_line_errors_are_one_line(tmp_path):
    workdir = ["--workdir", str(tmp_path / "w")]
    with pytest.raises(SystemExit, match="error: bad config or flags"):
        train.main(["--config", str(tmp_path / "missing.py"), *workdir])
    with pytest.raises(SystemExit, match="error: bad config or flags"):  # a typo in an override
        train.main(["--config", "experiments/configs/synthetic.py:tiny", "--config.train.num_stepz=3", *workdir])
    with pytest.raises(SystemExit, match="error: unknown dataset 'nope'"):
        train.main(["--config", "experiments/configs/synthetic.py:tiny", "--config.data.name=nope", *workdir])


def test_a_checkpoint_cut_by_a_kill_is_set_aside_and_the_run_resumes_from_the_previous_one(tmp_path, capsys):
    source = make_source(8)
    workdir = tmp_path / "run"
    train.train_and_evaluate(tiny_config(), str(workdir), source, stop_after_steps=4)  # checkpoints 2 and 4
    latest = workdir / "checkpoints" / "latest"
    # A kill while orbax writes step 6 leaves its temporary folder; a step folder copied in part
    # (step 8: no completion files, no data item) is what a non-atomic copy or file system leaves.
    shutil.copytree(latest / "4", latest / "6.orbax-checkpoint-tmp-1234")
    shutil.copytree(latest / "4" / "state", latest / "8" / "state")
    capsys.readouterr()
    state = train.train_and_evaluate(tiny_config(), str(workdir), source)
    out = capsys.readouterr().out
    assert f"resumed from step 4 ({workdir}/checkpoints/latest)" in out
    assert "step 8 in" in out and "incomplete" in out and "removed" in out
    assert int(state.step) == 6
    assert sorted(os.listdir(latest)) == ["4", "6", "8.incomplete"]  # keep_checkpoints=2


def test_a_bogus_variant_is_a_one_line_error(tmp_path):
    with pytest.raises(SystemExit, match=r"^error: bad config or flags: unknown model variant 'bogus'"):
        train.main(["--config", "experiments/configs/synthetic.py:tiny", "--config.model.variant=bogus",
                    "--workdir", str(tmp_path / "w")])
    with pytest.raises(SystemExit, match=r"^error: bad config or flags: width_divisor must divide"):
        train.main(["--config", "experiments/configs/synthetic.py:tiny", "--config.model.width_divisor=3",
                    "--workdir", str(tmp_path / "w")])


def test_an_unreadable_topology_is_a_one_line_error(tmp_path):
    config = tiny_config()
    config.model.topology = "mano:/nonexistent/MANO_RIGHT.pkl"
    with pytest.raises(train.UserError, match=r"^topology 'mano:/nonexistent/MANO_RIGHT\.pkl': .*nonexistent") as err:
        train.train_and_evaluate(config, str(tmp_path / "w"), make_source(4))
    assert "\n" not in str(err.value)  # main() prints it as one `error: ...` line


def test_stage_two_starts_from_the_first_runs_weights_and_topology_file(tmp_path, capsys):
    from h2o_jax.hand.topology import save_topology

    spec = str(tmp_path / "topology.npz")
    save_topology(random_topology((48, 24, 12, 6, 3)), spec)
    source = make_source(4)
    config = tiny_config(num_steps=2)
    config.model.topology = spec
    first = train.train_and_evaluate(config, str(tmp_path / "stage1"), source)
    os.remove(spec)  # stage 2 must take the first run's topology.npz, not rebuild from the spec
    config.train.init_from = str(tmp_path / "stage1")
    config.train.num_steps = 1
    config.optim.learning_rate = 0.0  # one step that changes no weight: they must be stage 1's
    capsys.readouterr()
    second = train.train_and_evaluate(config, str(tmp_path / "stage2"), source)
    assert f"initialised from {tmp_path / 'stage1'} (step 2)" in capsys.readouterr().out
    for a, b in zip(jax.tree.leaves(first.params), jax.tree.leaves(second.params)):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    config.model.topology = "random:50,25,12,6,3"
    with pytest.raises(train.UserError, match=r"is not the one the run in .*stage1.* trained with .*"
                                              r"--config.model.topology=.*stage1/topology\.npz"):
        train.train_and_evaluate(config, str(tmp_path / "stage2b"), source)


def test_a_multi_frame_run_starts_from_a_single_frame_run(tmp_path, capsys):
    """architecture.md C.8: the multi-frame model starts from the single-frame stage; the
    single-frame rotation head becomes the per-frame head fc_block1, the multi-frame-only heads
    keep their initialisation, and a run whose weights have no place here is refused."""
    from flax import traverse_util

    from experiments.checkpointing import Checkpoints
    from experiments.common import model_config_from
    from h2o_jax.hand.topology import load_topology
    from h2o_jax.nn import H2ONet
    from h2o_jax.training import create_train_state, make_optimizer

    single_dir = str(tmp_path / "sf")
    single = train.train_and_evaluate(tiny_config(num_steps=2), single_dir, make_source(4))
    multi = tiny_config()
    multi.model.variant = "B+D+MF+FO+HO"
    model = H2ONet(load_topology(os.path.join(single_dir, "topology.npz")), model_config_from(multi))
    # Another seed than the single-frame run's, so copied weights differ from initial ones; the rbg
    # key compiles far faster than threefry (test speed only).
    fresh = jax.jit(lambda k: create_train_state(model, make_optimizer(train.optim_config(multi), 1), k, 4))(
        jax.random.key(1, impl="unsafe_rbg"))
    capsys.readouterr()
    started = train._init_from_run(fresh, single_dir)
    assert (f"initialised from {single_dir} (step 2); at initialisation: occ_pred, offset_pred, "
            "rot_reg/fc_block2") in capsys.readouterr().out
    for name in ("params", "batch_stats"):
        from_single = traverse_util.flatten_dict(getattr(single, name), sep="/")
        at_init = traverse_util.flatten_dict(getattr(fresh, name), sep="/")
        for key, value in traverse_util.flatten_dict(getattr(started, name), sep="/").items():
            source_key = key.replace("rot_reg/fc_block1_", "rot_reg/fc_block_")
            if source_key in from_single:
                want = from_single[source_key]
            else:
                assert key.split("/")[0] in ("occ_pred", "offset_pred") or key.startswith("rot_reg/fc_block2_"), key
                want = at_init[key]
            np.testing.assert_array_equal(np.asarray(value), np.asarray(want), err_msg=f"{name} {key}")
    # The other way round, the multi-frame heads have no place in the single-frame network.
    multi_dir = str(tmp_path / "mf")
    checkpoints = Checkpoints(multi_dir, keep=1)
    checkpoints.save(1, started, None)
    checkpoints.wait()
    checkpoints.close()
    with pytest.raises(train.UserError, match=r"its params do not fit this run's network .*: occ_pred/.* more$"):
        train._init_from_run(single, multi_dir)


def test_optim_config_carries_every_optimiser_key_of_the_config_file():
    config = get_config()
    overrides = dict(learning_rate=3e-3, grad_clip_norm=0.5, schedule="cosine", warmup_steps=7,
                     final_fraction=0.2, rotation_lr_scale=0.5, joint_regressor_lr_scale=0.0,
                     backbone_lr_scale=4.0)
    config.optim.update(overrides)
    config.train.num_steps = 99
    optim = train.optim_config(config)
    for key, value in overrides.items():
        assert getattr(optim, key) == value, key
    assert optim.total_steps == 99


def test_single_frame_stage_runs_first_and_starts_the_run(tmp_path, monkeypatch):
    """train.single_frame_steps: the control flow of the two stages (the training itself is
    stubbed here; test_main_job runs both stages for real)."""
    calls = []

    class Done:
        def __init__(self, step):
            self.step = np.int32(step)

    def fake_train(config, workdir, train_source, eval_source, stop_after_steps=None):
        calls.append((config, workdir, stop_after_steps))
        steps = config.train.num_steps if stop_after_steps is None else min(stop_after_steps, config.train.num_steps)
        return Done(steps)

    monkeypatch.setattr(train, "train_and_evaluate", fake_train)
    config = get_config()
    config.model.variant = "B+D+MF+FO+HO"
    config.loss.stage = 2
    config.train.update(num_steps=7, single_frame_steps=5, single_frame_batch_size=12)
    workdir = str(tmp_path / "run")
    state = train.train_in_stages(config, workdir, [], None)
    (first, first_dir, _), (second, second_dir, _) = calls
    assert first_dir == os.path.join(workdir, "single_frame") and second_dir == workdir
    assert first.model.variant == "single_frame" and first.loss.stage == 1
    assert first.data.batch_size == 12 and first.train.num_steps == 5 and first.train.eval_every == 5
    assert second.train.init_from == first_dir and second.model.variant == "B+D+MF+FO+HO"
    assert second.loss.stage == 2 and int(state.step) == 7
    assert config.train.init_from == ""  # the caller's config is left alone
    # Killed inside the first stage: the run is not started.
    calls.clear()
    assert train.train_in_stages(config, workdir, [], None, stop_after_steps=3) is None
    assert len(calls) == 1
    # ... and the kill budget carries over into the second stage.
    calls.clear()
    train.train_in_stages(config, workdir, [], None, stop_after_steps=6)
    assert [c[2] for c in calls] == [6, 1]
    # Once the run has a checkpoint, the first stage is not looked at again.
    calls.clear()
    monkeypatch.setattr(train, "_latest_step", lambda path: 3 if path == workdir else None)
    train.train_in_stages(config, workdir, [], None)
    assert [c[1] for c in calls] == [workdir] and calls[0][0].train.init_from == ""
    monkeypatch.setattr(train, "_latest_step", lambda path: None)
    config.train.init_from = "elsewhere"
    with pytest.raises(train.UserError, match="init_from and train.single_frame_steps"):
        train.train_in_stages(config, workdir, [], None)


def test_the_best_checkpoint_counts_the_rotation_only_when_it_is_trained():
    overall = {"pa_j_pe_mm": 9.0, "pa_v_pe_mm": 8.0, "j_pe_mm": 50.0, "v_pe_mm": 45.0}
    assert train.selection_score(overall, loss_stage=1) == 17.0
    assert train.selection_score(overall, loss_stage=2) == 112.0
    # Stage 2: a run whose PA errors are a little worse but whose rotation is much better wins.
    better_rotation = dict(overall, pa_j_pe_mm=9.5, j_pe_mm=40.0, v_pe_mm=36.0)
    assert train.selection_score(better_rotation, 2) < train.selection_score(overall, 2)
    assert train.selection_score(better_rotation, 1) > train.selection_score(overall, 1)
