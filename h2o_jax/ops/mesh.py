"""Mesh ops: gather-based spiral convolution and fixed-width vertex resampling.

Shape letters: V vertices, S spiral length, C channels, K table width.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import scipy.sparse
from jax.typing import ArrayLike

from h2o_jax.ops._checks import check_exact_rank, check_rank_at_least, check_shape


def spiral_conv(
    x: ArrayLike, spiral_indices: ArrayLike, weight: ArrayLike, bias: ArrayLike | None
) -> jax.Array:
    """Spiral convolution (SpiralNet++ / the official H2ONet SpiralConv).

    Gathers each vertex's spiral neighbourhood and applies one dense layer to the neighbour-major
    concatenation: input position ``k * C + c`` holds channel ``c`` of spiral element ``k``
    (``k = 0`` is the vertex itself), so converted PyTorch ``Linear`` weights line up.

    Args:
      x: ``[..., V, C]`` per-vertex features.
      spiral_indices: ``[V, S]`` integer vertex indices, centre vertex first.
      weight: ``[S * C, C_out]`` (the transpose of PyTorch's ``Linear.weight``).
      bias: ``[C_out]`` or None.

    Returns:
      ``[..., V, C_out]``.
    """
    check_rank_at_least("x", x, 2, "[..., V, C]")
    check_exact_rank("spiral_indices", spiral_indices, 2, "[V, S]")
    num_vertices, spiral_length = np.shape(spiral_indices)
    check_shape("x", x, (num_vertices, None), f"[..., V={num_vertices}, C]")
    channels = np.shape(x)[-1]
    check_exact_rank("weight", weight, 2, "[S * C, C_out]")
    check_shape("weight", weight, (spiral_length * channels, None),
                f"[S * C = {spiral_length * channels}, C_out]")
    x = jnp.asarray(x)
    gathered = jnp.take(x, jnp.asarray(spiral_indices).reshape(-1), axis=-2)
    gathered = gathered.reshape(*x.shape[:-2], num_vertices, spiral_length * channels)
    out = gathered @ jnp.asarray(weight)
    if bias is not None:
        check_exact_rank("bias", bias, 1, "[C_out]")
        check_shape("bias", bias, (np.shape(weight)[1],), f"[C_out = {np.shape(weight)[1]}]")
        out = out + jnp.asarray(bias)
    return out


def resample_vertices(x: ArrayLike, indices: ArrayLike, weights: ArrayLike) -> jax.Array:
    """Applies a fixed-width resampling table: ``out[o] = sum_k weights[o, k] * x[indices[o, k]]``.

    Gather + weighted sum (no scatter), equal to the dense matmul ``U @ x`` of the sparse
    matrix the table was built from.

    Args:
      x: ``[..., V_in, C]``.
      indices: ``[V_out, K]`` integer indices into ``V_in``.
      weights: ``[V_out, K]``.

    Returns:
      ``[..., V_out, C]``.
    """
    check_rank_at_least("x", x, 2, "[..., V_in, C]")
    check_exact_rank("indices", indices, 2, "[V_out, K]")
    check_shape("weights", weights, np.shape(indices), f"{list(np.shape(indices))} (as indices)")
    check_exact_rank("weights", weights, 2, "[V_out, K]")
    x = jnp.asarray(x)
    gathered = jnp.take(x, jnp.asarray(indices), axis=-2)  # [..., V_out, K, C]
    return jnp.einsum("...okc,ok->...oc", gathered, jnp.asarray(weights, dtype=x.dtype))


def resample_table_from_sparse(
    matrix: scipy.sparse.spmatrix | scipy.sparse.sparray, width: int | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Builds a fixed-width resampling table from a sparse ``[V_out, V_in]`` matrix.

    Explicitly stored zeros are kept (the official up matrices store exactly three entries per
    row, some of them 0); rows with fewer entries than ``width`` are padded with index 0 and
    weight 0, which contributes nothing. Duplicate entries are summed first.

    Args:
      matrix: any scipy sparse matrix or array of shape ``[V_out, V_in]``.
      width: table width K; defaults to the largest number of stored entries in a row.

    Returns:
      ``(indices int32 [V_out, K], weights float32 [V_out, K])``, entries of each row in
      increasing column order.
    """
    if not scipy.sparse.issparse(matrix):
        raise ValueError(f"matrix must be a scipy sparse matrix, got {type(matrix).__name__}")
    csr = scipy.sparse.csr_matrix(matrix, copy=True)
    csr.sum_duplicates()  # keeps explicit zeros
    csr.sort_indices()
    counts = np.diff(csr.indptr)
    max_count = int(counts.max()) if counts.size else 0
    width = max_count if width is None else int(width)
    if width < 1:
        raise ValueError(f"width must be >= 1, got {width}")
    if max_count > width:
        row = int(np.argmax(counts))
        raise ValueError(
            f"matrix row {row} stores {max_count} entries, more than the table width {width}"
        )
    num_rows = csr.shape[0]
    indices = np.zeros((num_rows, width), np.int32)
    weights = np.zeros((num_rows, width), np.float32)
    slot = np.arange(csr.nnz) - np.repeat(csr.indptr[:-1], counts)
    rows = np.repeat(np.arange(num_rows), counts)
    indices[rows, slot] = csr.indices
    weights[rows, slot] = csr.data
    return indices, weights
