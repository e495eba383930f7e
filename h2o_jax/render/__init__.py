"""Rendering for labels and synthetic scenes (NumPy only): a z-buffer triangle rasteriser, closed
mesh primitives, and the H2ONet finger/hand occlusion labels (architecture.md section 16).
"""

from h2o_jax.render.occlusion_labels import (
    PART_NAMES,
    OcclusionLabels,
    face_parts_from_vertex_parts,
    occlusion_labels,
    vertex_part_visibility,
    visible_hand_mask,
)
from h2o_jax.render.primitives import box_mesh, cylinder_mesh, merge_meshes, sphere_mesh
from h2o_jax.render.rasterizer import RenderResult, render_mesh

__all__ = [
    "PART_NAMES",
    "OcclusionLabels",
    "RenderResult",
    "box_mesh",
    "cylinder_mesh",
    "face_parts_from_vertex_parts",
    "merge_meshes",
    "occlusion_labels",
    "render_mesh",
    "sphere_mesh",
    "vertex_part_visibility",
    "visible_hand_mask",
]
