"""spiral_conv and resampling tables against float64 numpy references."""

from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.sparse
from jax.test_util import check_grads

from h2o_jax.ops import resample_table_from_sparse, resample_vertices, spiral_conv

REFERENCE_DIR = Path(__file__).resolve().parents[2].parent / "shared" / "reference"


def naive_spiral_conv(x, spirals, weight, bias):
    """Per-vertex loop: concatenate neighbour features in spiral order, then a dense layer."""
    batch, num_vertices, channels = x.shape
    out = np.zeros((batch, num_vertices, weight.shape[1]))
    for b in range(batch):
        for v in range(num_vertices):
            feature = np.concatenate([x[b, spirals[v, k]] for k in range(spirals.shape[1])])
            out[b, v] = feature @ weight + bias
    return out


@pytest.mark.parametrize("seed", [0, 1])
@pytest.mark.parametrize("num_vertices,spiral_length,channels,out_channels", [(7, 3, 2, 4), (20, 9, 5, 3)])
def test_spiral_conv_matches_naive_loop(seed, num_vertices, spiral_length, channels, out_channels):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(2, num_vertices, channels))
    spirals = rng.integers(0, num_vertices, size=(num_vertices, spiral_length))
    spirals[:, 0] = np.arange(num_vertices)
    weight = rng.normal(size=(spiral_length * channels, out_channels))
    bias = rng.normal(size=out_channels)
    expected = naive_spiral_conv(x, spirals, weight, bias)
    got = jax.jit(spiral_conv)(x.astype(np.float32), spirals, weight.astype(np.float32), bias.astype(np.float32))
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5)
    # Unbatched input and vmap over the batch give the same result.
    vmapped = jax.jit(jax.vmap(lambda xi: spiral_conv(xi, spirals, weight, bias)))(
        x.astype(np.float32))
    np.testing.assert_allclose(vmapped, got, rtol=1e-6, atol=1e-6)


def test_spiral_conv_centre_kernel_is_identity():
    rng = np.random.default_rng(3)
    num_vertices, spiral_length, channels = 11, 4, 3
    x = rng.normal(size=(num_vertices, channels)).astype(np.float32)
    spirals = np.stack([np.arange(num_vertices)] + [rng.permutation(num_vertices) for _ in range(3)], 1)
    weight = np.zeros((spiral_length * channels, channels), np.float32)
    weight[:channels] = np.eye(channels)  # neighbour-major: rows 0..C-1 are the centre vertex
    np.testing.assert_array_equal(spiral_conv(x, spirals, weight, None), x)


def test_spiral_conv_gradients():
    rng = np.random.default_rng(4)
    spirals = rng.integers(0, 6, size=(6, 3))
    args = (rng.normal(size=(2, 6, 2)), rng.normal(size=(6, 4)), rng.normal(size=4))
    with jax.enable_x64(True):
        check_grads(lambda x, w, b: spiral_conv(x, spirals, w, b), args, order=2, modes=["rev"])


def test_spiral_conv_shape_errors():
    x = np.zeros((5, 2), np.float32)
    spirals = np.zeros((5, 3), np.int32)
    with pytest.raises(ValueError, match="weight"):
        spiral_conv(x, spirals, np.zeros((5, 4), np.float32), None)
    with pytest.raises(ValueError, match="x must have shape"):
        spiral_conv(np.zeros((4, 2)), spirals, np.zeros((6, 4)), None)
    with pytest.raises(ValueError, match="spiral_indices"):
        spiral_conv(x, np.zeros(5, np.int32), np.zeros((6, 4)), None)
    with pytest.raises(ValueError, match="bias"):
        spiral_conv(x, spirals, np.zeros((6, 4), np.float32), np.zeros(3, np.float32))


def random_sparse_with_stored_zeros(rng, num_out, num_in, per_row):
    rows = np.repeat(np.arange(num_out), per_row)
    cols = np.concatenate([rng.choice(num_in, per_row, replace=False) for _ in range(num_out)])
    vals = rng.normal(size=rows.size)
    vals[rng.random(rows.size) < 0.3] = 0.0  # explicit stored zeros, as in the official matrices
    return scipy.sparse.csc_matrix((vals, (rows, cols)), shape=(num_out, num_in))


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_resample_table_equals_dense_matmul(seed):
    rng = np.random.default_rng(seed)
    matrix = random_sparse_with_stored_zeros(rng, 13, 7, 3)
    indices, weights = resample_table_from_sparse(matrix)
    assert indices.shape == (13, 3) and indices.dtype == np.int32 and weights.dtype == np.float32
    x = rng.normal(size=(2, 7, 4))
    expected = np.einsum("oi,bic->boc", matrix.toarray(), x)
    got = jax.jit(resample_vertices)(x.astype(np.float32), indices, weights)
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5)
    vmapped = jax.vmap(lambda xi: resample_vertices(xi, indices, weights))(x)
    np.testing.assert_allclose(vmapped, expected, rtol=1e-5, atol=1e-5)


def test_resample_table_keeps_stored_zeros_and_pads():
    matrix = scipy.sparse.coo_matrix(
        (np.array([0.0, 2.0, 1.0]), (np.array([0, 0, 1]), np.array([3, 1, 2]))), shape=(3, 4)
    )
    indices, weights = resample_table_from_sparse(matrix, width=3)
    np.testing.assert_array_equal(indices, [[1, 3, 0], [2, 0, 0], [0, 0, 0]])
    np.testing.assert_array_equal(weights, [[2.0, 0.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, 0.0]])
    with pytest.raises(ValueError, match="more than the table width"):
        resample_table_from_sparse(matrix, width=1)
    with pytest.raises(ValueError, match="scipy sparse"):
        resample_table_from_sparse(np.eye(3))


def test_resample_gradients():
    rng = np.random.default_rng(5)
    indices, weights = resample_table_from_sparse(random_sparse_with_stored_zeros(rng, 5, 4, 2))
    with jax.enable_x64(True):
        check_grads(lambda x: resample_vertices(x, indices, weights.astype(np.float64)),
                    (rng.normal(size=(4, 3)),), order=2, modes=["rev"])


@pytest.mark.skipif(not (REFERENCE_DIR / "official_hierarchy.npz").exists(),
                    reason="official reference data (../shared/reference) is not beside this checkout")
def test_official_up_matrices_become_width_3_tables():
    data = np.load(REFERENCE_DIR / "official_hierarchy.npz")
    rng = np.random.default_rng(0)
    for level in range(4):
        key = f"up_transform{level}"
        matrix = scipy.sparse.coo_matrix(
            (data[f"{key}_vals"], (data[f"{key}_rows"], data[f"{key}_cols"])),
            shape=tuple(data[f"{key}_shape"]),
        )
        counts = np.bincount(data[f"{key}_rows"], minlength=matrix.shape[0])
        assert (counts == 3).all()
        indices, weights = resample_table_from_sparse(matrix)
        assert indices.shape == (matrix.shape[0], 3)
        x = rng.normal(size=(matrix.shape[1], 2))
        np.testing.assert_allclose(resample_vertices(jnp.asarray(x, jnp.float32), indices, weights),
                                   matrix.toarray() @ x, rtol=1e-5, atol=1e-5)
