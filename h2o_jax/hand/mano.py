"""MANO-format hand model in JAX: linear blend skinning with pose blend shapes (data_formats.md 1.4-1.7).

Shape letters: V vertices, S shape components, F faces, ``...`` broadcast batch dimensions.
Everything is in metres; outputs are never scaled to millimetres.

Why the skinning is written here instead of wrapping the ``body-models`` library (0.26.2, JAX
backend), as issue #3 asked to consider first. Measured on a fake MANO file of data_formats.md
1.8 (tests/hand/mano_fixtures.py) on CPU:

* numerics: body-models' ``MANO(model_path=..., flat_hand_mean=False/True)`` ``forward_vertices``
  / ``forward_skeleton`` agree with a float64 per-vertex LBS reference to 4e-8 m, accept a file
  with 800 vertices and 20 shape components, and jit and vmap fine;
* but the gradient is NaN at exactly zero rotation: with ``flat_hand_mean=True`` and a zero
  pose all 48 pose-gradient entries are NaN (with ``flat_hand_mean=False`` the 3 root entries
  are, the fingers being offset by the mean); feeding rotation matrices from a safe Rodrigues
  (``rotation_type="rotmat"``) does not help: the gradient with respect to identity matrices is
  NaN too. Zero pose is the natural initial / GT value (e.g. flat hands, zero wrist rotation),
  so this is disqualifying for training;
* its pickle loader resolves any global a file names (a user-supplied file could run code);
  ours refuses everything but arrays, chumpy and sparse classes (see mano_io);
* its model object is built from a file path only, so a ``HandModel`` built from arrays (the
  built-in procedural hand) would need a file round trip;
* speed is no reason to prefer it: jitted batch-32 forward 3 ms here vs 4-13 ms, forward+grad
  14 ms vs 24 ms (shared 2-core CPU, noisy; the two agree to 7e-8 m).

The forward pass below follows data_formats.md 1.6 step by step; tests compare it against an
independent per-vertex float64 numpy implementation, and against body-models where installed.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct
from jax.typing import ArrayLike

from h2o_jax.hand.mano_io import NUM_FINGER_POSE, NUM_MANO_JOINTS, load_mano_dict
from h2o_jax.ops._checks import check_shape
from h2o_jax.ops.rotation import axis_angle_to_rotmat

# Parent of each MANO joint (data_formats.md 1.4); finger order index, middle, pinky, ring, thumb.
MANO_PARENTS = (-1, 0, 1, 2, 0, 4, 5, 0, 7, 8, 0, 10, 11, 0, 13, 14)
# MANO-native 21 (16 chain joints, tips thumb..pinky) -> common order: common = native[P] (0.3).
NATIVE_TO_COMMON = (0, 13, 14, 15, 16, 1, 2, 3, 17, 4, 5, 6, 18, 10, 11, 12, 19, 7, 8, 9, 20)
# manopth's layer tips (thumb, index, middle, ring, little) for the 778-vertex right MANO (1.7).
MANO_FINGERTIP_VERTICES = (745, 317, 444, 556, 673)
NUM_POSE = 3 * NUM_MANO_JOINTS  # 48 axis-angle numbers: root, then 15 finger joints
# The chain evaluated depth by depth: (joints, their parents) per depth below the root.
_CHAIN_DEPTHS = (
    ((1, 4, 7, 10, 13), (0, 0, 0, 0, 0)),
    ((2, 5, 8, 11, 14), (1, 4, 7, 10, 13)),
    ((3, 6, 9, 12, 15), (2, 5, 8, 11, 14)),
)
_DEPTH_ORDER = (0,) + tuple(j for joints, _ in _CHAIN_DEPTHS for j in joints)
_FROM_DEPTH_ORDER = tuple(int(i) for i in np.argsort(_DEPTH_ORDER))


@struct.dataclass
class HandModel:
    """A MANO-format hand model as a pytree of arrays (all leaves; shapes static).

    Attributes:
      v_template_m: [V, 3] float32 rest mesh of the mean hand, metres.
      shapedirs: [V, 3, S] float32 shape blend basis (metres per unit beta).
      posedirs: [V, 3, 135] float32 pose blend basis over the lrotmin feature.
      joint_regressor16: [16, V] float32 rest joints from (shaped) vertices.
      skin_weights: [V, 16] float32 LBS weights.
      hands_components: [45, 45] float32 PCA basis of the finger pose, one component per row.
      hands_mean: [45] float32 mean finger pose (axis-angle).
      faces: [F, 3] int32 triangles.
      fingertip_vertices: [5] int32 tip vertex ids: thumb, index, middle, ring, little.
    """

    v_template_m: jax.Array
    shapedirs: jax.Array
    posedirs: jax.Array
    joint_regressor16: jax.Array
    skin_weights: jax.Array
    hands_components: jax.Array
    hands_mean: jax.Array
    faces: jax.Array
    fingertip_vertices: jax.Array

    @property
    def num_vertices(self) -> int:
        return int(self.v_template_m.shape[0])

    @property
    def num_betas(self) -> int:
        return int(self.shapedirs.shape[-1])

    @property
    def parents(self) -> tuple[int, ...]:
        return MANO_PARENTS


def hand_model_from_mano_dict(
    mano: dict[str, Any],
    *,
    fingertip_vertices: Sequence[int] = MANO_FINGERTIP_VERTICES,
    source: str = "MANO dict",
) -> HandModel:
    """Builds a :class:`HandModel` from the dict :func:`load_mano_dict` returns.

    Args:
      mano: validated MANO-format arrays (see ``mano_io.load_mano_dict``).
      fingertip_vertices: 5 vertex ids (thumb, index, middle, ring, little).
      source: how errors name the data (e.g. the file path).

    Raises:
      ValueError: the kinematic tree is not MANO's, or a fingertip id is out of range.
    """
    kintree = np.asarray(mano["kintree_table"])
    parents = [int(p) if 0 <= p < NUM_MANO_JOINTS else -1 for p in kintree[0]]
    if tuple(parents) != MANO_PARENTS or tuple(int(j) for j in kintree[1]) != tuple(range(NUM_MANO_JOINTS)):
        raise ValueError(
            f"{source}: kintree_table describes parents {parents} for joints {kintree[1].tolist()}; "
            f"expected MANO's tree {list(MANO_PARENTS)} for joints 0..15"
        )
    num_vertices = int(np.shape(mano["v_template"])[0])
    tips = np.asarray(fingertip_vertices)
    if tips.shape != (5,) or tips.dtype.kind not in "iu" or np.any((tips < 0) | (tips >= num_vertices)):
        raise ValueError(
            f"{source}: fingertip_vertices must be 5 vertex ids in 0..{num_vertices - 1} "
            f"(thumb, index, middle, ring, little), got {fingertip_vertices!r}"
        )

    def f32(key: str) -> jax.Array:
        return jnp.asarray(mano[key], dtype=jnp.float32)

    return HandModel(
        v_template_m=f32("v_template"),
        shapedirs=f32("shapedirs"),
        posedirs=f32("posedirs"),
        joint_regressor16=f32("J_regressor"),
        skin_weights=f32("weights"),
        hands_components=f32("hands_components"),
        hands_mean=f32("hands_mean"),
        faces=jnp.asarray(mano["f"], dtype=jnp.int32),
        fingertip_vertices=jnp.asarray(tips, dtype=jnp.int32),
    )


def load_hand_model(
    path: str | os.PathLike[str], *, fingertip_vertices: Sequence[int] = MANO_FINGERTIP_VERTICES
) -> HandModel:
    """Loads a MANO-format ``.pkl``/``.npz`` file (see ``mano_io.load_mano_dict``) as a HandModel.

    ``fingertip_vertices`` defaults to manopth's tips for the 778-vertex right MANO; a model with
    another mesh (the built-in procedural hand) passes its own.
    """
    path = os.fspath(path)
    return hand_model_from_mano_dict(load_mano_dict(path), fingertip_vertices=fingertip_vertices, source=path)


def pca_to_full_pose(model: HandModel, coeffs: ArrayLike) -> jax.Array:
    """PCA pose to 48-number axis-angle: root + ``coeffs[3:] @ hands_components[:n]``.

    The mean pose is NOT added here (``hand_forward`` adds it when ``flat_hand_mean=False``),
    so Dex-YCB's ``pose_m[:48]`` (n = 45) converts to H2ONet's mean-relative pose.

    Args:
      coeffs: [..., 3 + n], 0 <= n <= 45: root axis-angle then n PCA coefficients.

    Returns:
      [..., 48].
    """
    check_shape("coeffs", coeffs, (None,), "[..., 3 + n] with 0 <= n <= 45")
    coeffs = jnp.asarray(coeffs)
    n = coeffs.shape[-1] - 3
    if not 0 <= n <= NUM_FINGER_POSE:
        raise ValueError(f"coeffs must have shape [..., 3 + n] with 0 <= n <= 45, got shape {coeffs.shape}")
    fingers = coeffs[..., 3:] @ model.hands_components[:n]
    return jnp.concatenate([coeffs[..., :3], fingers.astype(coeffs.dtype)], axis=-1)


def _chain(rot: jax.Array, rest_joints: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Global rotations/translations G_j of 1.6 step 5, evaluated depth by depth (3 steps).

    Args:
      rot: [..., 16, 3, 3] local rotations; rest_joints: [..., 16, 3].

    Returns:
      ([..., 16, 3, 3], [..., 16, 3]) global rotation and translation (= posed joint) per joint.
    """
    root_rot, root_t = rot[..., 0, :, :], rest_joints[..., 0, :]  # the root turns about J_0
    # Every depth's parents are the previous depth's joints in the same order (root for depth
    # 1), so the five fingers advance together.
    parent_rot = jnp.broadcast_to(root_rot[..., None, :, :], (*root_rot.shape[:-2], 5, 3, 3))
    parent_t = jnp.broadcast_to(root_t[..., None, :], (*root_t.shape[:-1], 5, 3))
    rots, ts = [root_rot[..., None, :, :]], [root_t[..., None, :]]
    for joints_t, parents_t in _CHAIN_DEPTHS:
        joints, parents = np.asarray(joints_t), np.asarray(parents_t)
        bone = rest_joints[..., joints, :] - rest_joints[..., parents, :]
        parent_t = jnp.einsum("...ab,...b->...a", parent_rot, bone) + parent_t
        parent_rot = parent_rot @ rot[..., joints, :, :]
        rots.append(parent_rot)
        ts.append(parent_t)
    order = np.asarray(_FROM_DEPTH_ORDER)
    return jnp.concatenate(rots, axis=-3)[..., order, :, :], jnp.concatenate(ts, axis=-2)[..., order, :]


def hand_forward(
    model: HandModel,
    pose_aa: ArrayLike,
    betas: ArrayLike,
    *,
    flat_hand_mean: bool = False,
    trans_m: ArrayLike | None = None,
) -> dict[str, jax.Array]:
    """MANO forward pass (data_formats.md 1.6): shape and pose blend, kinematic chain, LBS.

    Batch dimensions of ``pose_aa``, ``betas`` and ``trans_m`` broadcast against each other.

    Args:
      model: the hand model.
      pose_aa: [..., 48] axis-angle, MANO joint order (root first), radians. With
        ``flat_hand_mean=False`` the finger part is relative to ``hands_mean`` (H2ONet,
        Dex-YCB); with True it is absolute (HO3D).
      betas: [..., S] shape coefficients, S = ``model.num_betas``.
      flat_hand_mean: see ``pose_aa``.
      trans_m: optional [..., 3] translation in metres added to every output point.

    Returns:
      dict with ``vertices_m`` [..., V, 3], ``joints16_m`` [..., 16, 3] (posed chain joints,
      MANO order) and ``joints_m`` [..., 21, 3] (chain joints + tip vertices, common order of
      data_formats.md 0.2).
    """
    check_shape("pose_aa", pose_aa, (NUM_POSE,), "[..., 48]")
    check_shape("betas", betas, (model.num_betas,), f"[..., {model.num_betas}] (the model's shape components)")
    pose = jnp.asarray(pose_aa)
    betas = jnp.asarray(betas)
    if trans_m is not None:
        check_shape("trans_m", trans_m, (3,), "[..., 3]")
    if not flat_hand_mean:
        pose = jnp.concatenate([pose[..., :3], pose[..., 3:] + model.hands_mean.astype(pose.dtype)], axis=-1)
    batch = jnp.broadcast_shapes(pose.shape[:-1], betas.shape[:-1], () if trans_m is None else np.shape(trans_m)[:-1])
    pose = jnp.broadcast_to(pose, (*batch, NUM_POSE))
    betas = jnp.broadcast_to(betas, (*batch, model.num_betas))

    # 1-2: shaped rest mesh, and rest joints regressed from it (not from the posed mesh).
    v_shaped = model.v_template_m + jnp.einsum("vds,...s->...vd", model.shapedirs, betas)
    rest_joints = jnp.einsum("jv,...vd->...jd", model.joint_regressor16, v_shaped)
    # 3: Rodrigues, safe (finite value and gradient) at zero rotation.
    rot = axis_angle_to_rotmat(pose.reshape(*batch, NUM_MANO_JOINTS, 3))
    # 4: lrotmin pose blend over the 15 non-root joints; the root rotation is excluded.
    feature = (rot[..., 1:, :, :] - jnp.eye(3, dtype=rot.dtype)).reshape(*batch, 9 * (NUM_MANO_JOINTS - 1))
    v_posed = v_shaped + jnp.einsum("vdp,...p->...vd", model.posedirs, feature)
    # 5-6: chain, then skinning transforms A_j = G_j [I | -J_j].
    g_rot, joints16 = _chain(rot, rest_joints)
    a_t = joints16 - jnp.einsum("...jab,...jb->...ja", g_rot, rest_joints)
    # 7: blend the 3x4 transforms per vertex, apply to the posed rest vertices.
    t_rot = jnp.einsum("vj,...jab->...vab", model.skin_weights, g_rot)
    t_t = jnp.einsum("vj,...ja->...va", model.skin_weights, a_t)
    vertices = jnp.einsum("...vab,...vb->...va", t_rot, v_posed) + t_t
    # 8: translation.
    if trans_m is not None:
        offset = jnp.asarray(trans_m)[..., None, :]
        vertices, joints16 = vertices + offset, joints16 + offset
    tips = jnp.take(vertices, model.fingertip_vertices, axis=-2)
    joints21 = jnp.concatenate([joints16, tips], axis=-2)[..., np.asarray(NATIVE_TO_COMMON), :]
    return {"vertices_m": vertices, "joints16_m": joints16, "joints_m": joints21}


def common_joint_regressor(model: HandModel) -> np.ndarray:
    """[21, V] float32 regressor of the common-order joints from vertices (data_formats.md 1.7).

    Rows: the 16 ``joint_regressor16`` rows followed by one-hot rows at the 5 fingertip vertices,
    permuted into the common order. Used as ``MeshTopology.joint_regressor``. Setup-time (numpy):
    call it on a concrete model, not inside jit.
    """
    reg16 = np.asarray(model.joint_regressor16, dtype=np.float32)
    tips = np.asarray(model.fingertip_vertices)
    one_hot = np.zeros((5, reg16.shape[1]), dtype=np.float32)
    one_hot[np.arange(5), tips] = 1.0
    return np.concatenate([reg16, one_hot], axis=0)[np.asarray(NATIVE_TO_COMMON)]
