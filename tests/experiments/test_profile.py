"""experiments.profile: the HLO op census and the per-part timer it prints."""

import jax
import jax.numpy as jnp
import numpy as np

from experiments.profile import op_kinds, time_compiled


def test_op_kinds_counts_the_entry_computation_by_kind():
    text = """HloModule m

fused_computation {
  p = f32[4]{0} parameter(0)
  ROOT e = f32[4]{0} exponential(p)
}

ENTRY main {
  a = f32[4,4]{1,0} parameter(0)
  b = f32[4,4]{1,0} parameter(1)
  d = f32[4,4]{1,0} dot(a, b), lhs_contracting_dims={1}, rhs_contracting_dims={0}
  g = f32[2,4]{1,0} gather(d, a), offset_dims={1}
  f = f32[4,4]{1,0} fusion(d), kind=kLoop, calls=fused_computation
  ROOT t = (f32[4,4]{1,0}, f32[2,4]{1,0}) tuple(f, g)
}
"""
    # parameters and the result tuple are not work; the fused computation's body is not counted
    assert op_kinds(text) == {"dot": 1, "gather": 1, "fusion": 1}


def test_time_compiled_reports_flops_and_ops_of_a_real_function():
    a = jnp.asarray(np.random.default_rng(0).normal(size=(64, 32)), jnp.float32)
    b = jnp.asarray(np.random.default_rng(1).normal(size=(32, 16)), jnp.float32)
    result = time_compiled(lambda a, b: jax.nn.relu(a @ b), (a, b), iters=3)
    assert result["ms"] > 0
    np.testing.assert_allclose(result["gflop"], 2 * 64 * 32 * 16 / 1e9, rtol=0.1)  # the matmul's FLOPs
    assert result["ops"].get("dot", 0) + result["ops"].get("fusion", 0) >= 1
