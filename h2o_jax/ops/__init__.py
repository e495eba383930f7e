"""Pure functional ops on arrays (jax/numpy only): jit-, vmap- and grad-safe.

Reusable outside h2o_jax: spiral convolution, mesh resampling, occlusion-weighted fusion, the
Eq. 6 enquiry, rotations and geometry. Shapes are documented per function.
"""

from h2o_jax.ops.enquiry import enquire, enquiry_weights, hand_usable
from h2o_jax.ops.fusion import finger_scores, guidance_logits, occlusion_fusion_weights, occlusion_weighted_fusion
from h2o_jax.ops.geometry import procrustes_align, project_points, root_relative
from h2o_jax.ops.mesh import resample_table_from_sparse, resample_vertices, spiral_conv
from h2o_jax.ops.rotation import (
    axis_angle_to_rotmat,
    geodesic_distance,
    rot6d_to_rotmat,
    rotmat_to_axis_angle,
    rotmat_to_quaternion,
    rotmat_to_rot6d,
)

__all__ = [
    "axis_angle_to_rotmat",
    "enquire",
    "enquiry_weights",
    "finger_scores",
    "geodesic_distance",
    "guidance_logits",
    "hand_usable",
    "occlusion_fusion_weights",
    "occlusion_weighted_fusion",
    "procrustes_align",
    "project_points",
    "resample_table_from_sparse",
    "resample_vertices",
    "root_relative",
    "rot6d_to_rotmat",
    "rotmat_to_axis_angle",
    "rotmat_to_quaternion",
    "rotmat_to_rot6d",
    "spiral_conv",
]
