"""Checkpoints: the model-only restore reads params and batch_stats, whatever optimiser state
was saved beside them, from the best save when there is one."""

import jax
import numpy as np
import optax
import pytest

from experiments.checkpointing import Checkpoints
from h2o_jax.training import TrainState


def make_state(rng, step):
    params = {"dense": {"kernel": rng.normal(size=(5, 3)).astype(np.float32),
                        "bias": rng.normal(size=3).astype(np.float32)}}
    batch_stats = {"bn": {"mean": rng.normal(size=3).astype(np.float32),
                          "var": rng.random(3).astype(np.float32)}}
    opt_state = optax.adam(1e-3).init(params)
    opt_state = jax.tree.map(lambda x: x + 1 if np.ndim(x) else x, opt_state)  # non-trivial moments
    return TrainState(np.asarray(step, np.int32), params, batch_stats, opt_state)


def assert_same(restored, state):
    for key in ("params", "batch_stats"):
        expected = getattr(state, key)
        assert jax.tree.structure(restored[key]) == jax.tree.structure(expected)
        for got, want in zip(jax.tree.leaves(restored[key]), jax.tree.leaves(expected)):
            np.testing.assert_array_equal(np.asarray(got), want)


def test_restore_variables_prefers_best_and_returns_the_model_only(tmp_path):
    rng = np.random.default_rng(0)
    checkpoints = Checkpoints(str(tmp_path), keep=2)
    with pytest.raises(FileNotFoundError, match="no checkpoint"):
        checkpoints.restore_variables()
    early, late = make_state(rng, 2), make_state(rng, 4)
    checkpoints.save(2, early, None)
    checkpoints.save_best(2, early, score=1.0)
    checkpoints.save(4, late, None)
    assert not checkpoints.save_best(4, late, score=3.0)  # worse: best stays at step 2
    checkpoints.wait()

    variables, step = checkpoints.restore_variables()
    assert step == 2 and set(variables) == {"params", "batch_stats"}
    assert_same(variables, early)
    variables, step = checkpoints.restore_variables(best=False)
    assert step == 4
    assert_same(variables, late)
    checkpoints.close()


def test_restore_variables_from_a_fresh_manager(tmp_path):
    """Evaluation opens the run's checkpoints in a new process: nothing saved by this object."""
    state = make_state(np.random.default_rng(1), 3)
    writer = Checkpoints(str(tmp_path))
    writer.save(3, state, {"iterator": 7})
    writer.wait()
    writer.close()
    reader = Checkpoints(str(tmp_path))
    variables, step = reader.restore_variables()
    assert step == 3
    assert_same(variables, state)
    reader.close()
