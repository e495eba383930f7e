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


def test_op_sources_map_each_instruction_to_its_model_code_with_layers_collapsed():
    from experiments.profile import _op_sources

    text = """ENTRY main {
  %pad_slice_fusion.3 = f32[2,4]{1,0} fusion(%a), kind=kLoop, calls=%c, metadata={op_name="jit(train_step)/jvp(H2ONet)/H2ONet.encode/backbone/dense_stack2/dense1/conv2/conv3x3_0/conv/slice" stack_frame_id=1}
  %dot.7 = f32[2,2]{1,0} dot(%a, %b), metadata={op_name="jit(train_step)/transpose(jvp(H2ONet))/H2ONet.encode/backbone/thrink/conv/dot_general"}
  %p = f32[2,4]{1,0} parameter(0)
}"""
    assert _op_sources(text) == {
        "pad_slice_fusion.3": "jvp(H2ONet)/H2ONet.encode/backbone/dense_stack*/dense*/conv*/conv3x3_0/conv/slice",
        "dot.7": "transpose(jvp(H2ONet))/H2ONet.encode/backbone/thrink/conv/dot_general",
    }


def test_trace_of_a_configs_train_step_attributes_the_time_to_the_network():
    from experiments.profile import trace_train_step

    tables = trace_train_step("experiments/configs/synthetic.py:tiny", steps=1, top=10**6)  # every row
    by_kind, by_source = tables["by kind"], tables["by source"]
    assert by_kind and by_source
    assert all(ms >= 0 and count >= 1 for _, ms, count in by_kind + by_source)
    assert [ms for _, ms, _ in by_kind] == sorted((ms for _, ms, _ in by_kind), reverse=True)
    # Both tables sum the same operations.
    assert np.isclose(sum(ms for _, ms, _ in by_kind), sum(ms for _, ms, _ in by_source))
    assert sum(count for _, _, count in by_kind) == sum(count for _, _, count in by_source)
    # Most of the step is the encoder's forward and backward.
    backbone_ms = sum(ms for key, ms, _ in by_source if "/backbone/" in key)
    assert backbone_ms > 0.5 * sum(ms for _, ms, _ in by_source)
