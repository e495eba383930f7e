"""Typed, frozen configuration of the network and its losses (hashable: safe as static args).

`experiments/` converts its ml_collections configs into these once; the library never reads
config files or flags.
"""

from __future__ import annotations

import dataclasses
from typing import Literal

Variant = Literal["single_frame", "B", "B+D", "B+D+MF", "B+D+MF+FS", "B+D+MF+FO", "B+D+MF+FO+HO"]


@dataclasses.dataclass(frozen=True)
class ModelConfig:
    """Network configuration. Defaults reproduce the official multi-frame H2ONet.

    Attributes:
      num_frames: 3 for the multi-frame model (frames t, t-k, t-2k), 1 for single-frame ones.
      dual_branch: orientation from its own encoder (dense_stack3) on sg(F_I) (True, "D") or from
        the mesh encoder's bottleneck alone (False, the baseline "B").
      mesh_fusion: how the current frame's mesh uses the other frames: "none" (single frame),
        "concat" (Table 5 row iii: offset head on concat of the three frames' features),
        "occlusion" (Eq. 2-4, FO), "select_gt" (row iv FS: output the canonical mesh of the frame
        whose ground-truth labels show the fewest occluded fingers).
      orientation_fusion: the hand-level enquiry and offset rotation of Eq. 5-7 (HO).
      width_divisor: divides every channel count of the encoder, decoder and heads (1 = the
        paper's network; 8 or 16 give tiny models for tests and CPU runs).
      dtype: compute dtype of convolutions and dense layers ("float32" or "bfloat16"); params,
        batch statistics and outputs stay float32.
      occ_fusion_score, occ_joint_groups, offset_input, occ_heads, delta_r_scope, mf_joint_grad:
        the switches of architecture.md C.13 (official values by default).
      hand_reading: Eq. 5 reading ("A" official: usable unless all fingers occluded).
      template_residual: the mesh head predicts offsets from the topology's root-relative
        template instead of absolute canonical vertices (not in the official network, whose
        weights need False): a network trained from scratch starts from a hand-shaped mesh, which
        short CPU runs cannot otherwise reach (issue 13).
      sf_root_grad: a single-frame network's root joint keeps the gradient of the rotated terms
        (True, official, architecture.md 7.2); False detaches it as the multi-frame network does.
        The official way diverged on the synthetic data in stage 2 (README "Study"); it has no
        effect on a multi-frame network, whose root is always detached.
      scratch_encoder: not official (official weights need False). Every mobile unit of the
        encoder gets a parameter-free identity path (channels sliced or zero-padded) and the
        "no_expand" dense blocks add their input, and every squeeze-excitation gate starts at a
        constant 0.5 (fc2's BatchNorm scale at 0). The official encoder, trained from scratch,
        does not learn the 2D joints in hundreds of steps (its gradients grow ~300x from the
        uv head back to the stem at initialisation, as in a deep plain BatchNorm-ReLU network);
        with both changes it does (README "Main job", issue 13). No new parameters.
      stack_out_channels: channels of the hourglasses' outputs (0: 24 / width_divisor, the
        official count). The 21 joint maps are a 1x1 convolution of stack 2's output, so a
        quarter-width network's 6 channels bound them to rank 6; 24 lifts that.
      occlusion_guidance: what steers the finger fusion (Eq. 3) and the enquiry (Eq. 5-6) in
        training: "predicted" (official: the classifier's own logits, always) or
        "labels_in_training" (not official: the ground-truth occlusion labels where a frame has
        them, `h2o_jax.ops.guidance_logits`, while training; the classifier at inference). The
        offset heads after the fusion otherwise learn only from frames the classifier flags, and
        a classifier that rarely fires leaves them nothing to learn (README "Study").
      enquiry_rotation: how frame t's rotation uses the enquired feature G' (HO variants):
        "offset" (official Eq. 7: R_t = g(cat[G', G_t]) f(G_t), with g learned) or "copy" (not
        official: R_t = f(G'), the base rotation regressor on the enquired feature, for the
        joints as well as the vertices; g is unused). "copy" is the paper's key idea (take the
        orientation of the most recent visible frame) without a head that must learn it from
        the few training frames whose hand is occluded while an earlier one is visible.
      gate_logit_offset: added to every finger's occluded logit in the Eq. 5 gate only (0 =
        official; not the fusion weights, not the classifier's outputs): a decision threshold
        to choose on validation data when the classifier ranks occlusion well (ROC AUC) but
        rarely calls it (README "Study").
    """

    num_frames: int = 3
    dual_branch: bool = True
    mesh_fusion: Literal["none", "concat", "occlusion", "select_gt"] = "occlusion"
    orientation_fusion: bool = True
    width_divisor: int = 1
    dtype: Literal["float32", "bfloat16"] = "float32"
    occ_fusion_score: Literal["visible_prob", "occluded_prob", "visible_logit"] = "visible_prob"
    occ_joint_groups: Literal["official", "anatomical"] = "official"
    offset_input: Literal["concat", "fused"] = "concat"
    occ_heads: Literal[5, 6] = 6
    delta_r_scope: Literal["frame0_vertices", "all"] = "frame0_vertices"
    mf_joint_grad: bool = False
    hand_reading: Literal["A", "B"] = "A"
    template_residual: bool = False
    sf_root_grad: bool = True
    scratch_encoder: bool = False
    stack_out_channels: int = 0
    occlusion_guidance: Literal["predicted", "labels_in_training"] = "predicted"
    enquiry_rotation: Literal["offset", "copy"] = "offset"
    gate_logit_offset: float = 0.0

    def __post_init__(self) -> None:
        if self.num_frames not in (1, 3):
            raise ValueError(f"num_frames must be 1 or 3, got {self.num_frames}")
        if self.num_frames == 1 and (self.mesh_fusion != "none" or self.orientation_fusion):
            raise ValueError("a single-frame model needs mesh_fusion='none' and orientation_fusion=False")
        if self.num_frames == 3 and self.mesh_fusion == "none":
            raise ValueError("a three-frame model needs a mesh_fusion other than 'none'")
        if self.dtype not in ("float32", "bfloat16"):
            raise ValueError(f"dtype must be 'float32' or 'bfloat16', got {self.dtype!r}")
        if self.occlusion_guidance not in ("predicted", "labels_in_training"):
            raise ValueError("occlusion_guidance must be 'predicted' or 'labels_in_training', "
                             f"got {self.occlusion_guidance!r}")
        if self.enquiry_rotation not in ("offset", "copy"):
            raise ValueError(f"enquiry_rotation must be 'offset' or 'copy', got {self.enquiry_rotation!r}")
        if not (isinstance(self.gate_logit_offset, (int, float)) and abs(self.gate_logit_offset) < float("inf")):
            raise ValueError(f"gate_logit_offset must be a finite number, got {self.gate_logit_offset!r}")
        if self.stack_out_channels < 0:
            raise ValueError(f"stack_out_channels must be >= 0 (0: 24 / width_divisor), got {self.stack_out_channels}")
        if 128 % self.width_divisor or 24 % self.width_divisor:
            raise ValueError(f"width_divisor must divide 128 and 24 (1, 2, 4, 8), got {self.width_divisor}")

    @property
    def multi_frame(self) -> bool:
        return self.num_frames > 1

    @property
    def uses_occlusion_classifier(self) -> bool:
        return self.mesh_fusion == "occlusion" or self.orientation_fusion


VARIANTS: dict[str, dict] = {
    # The paper's dagger model == Table 5 row ii (dual branch, one frame).
    "single_frame": dict(num_frames=1, mesh_fusion="none", orientation_fusion=False),
    "B": dict(num_frames=1, dual_branch=False, mesh_fusion="none", orientation_fusion=False),
    "B+D": dict(num_frames=1, mesh_fusion="none", orientation_fusion=False),
    "B+D+MF": dict(mesh_fusion="concat", orientation_fusion=False),
    "B+D+MF+FS": dict(mesh_fusion="select_gt", orientation_fusion=False),
    "B+D+MF+FO": dict(mesh_fusion="occlusion", orientation_fusion=False),
    "B+D+MF+FO+HO": dict(mesh_fusion="occlusion", orientation_fusion=True),
}


def model_config_for(variant: str, **overrides) -> ModelConfig:
    """The ModelConfig of a named variant (see VARIANTS), with field overrides."""
    if variant not in VARIANTS:
        raise ValueError(f"unknown model variant {variant!r}; choose one of {sorted(VARIANTS)}")
    return ModelConfig(**{**VARIANTS[variant], **overrides})


@dataclasses.dataclass(frozen=True)
class LossConfig:
    """Loss weights and switches (architecture.md 12 and C.7; official values by default).

    Attributes:
      stage: 1 (mesh branch, classifier, offset head; no rotated terms) or 2 (all terms).
      normal_weight: weight of the normal-vector loss (0.1).
      rot_weight: weight of the global-rotation L2 loss (1.0).
      mesh_weight: multiplies every mesh term (vertices, joints, normals and edges, canonical and
        rotated; 1.0 = official). Not official: the mesh terms are L1 in metres, so in the shared
        encoder their gradient is ~30x smaller than the 2D-joint term's (issue 13).
      rotated_shape_losses: stage 2 also applies normal/edge losses to the rotated mesh.
      frame_reduction: "mean" over the B*T rows (official) or "sum" over frames (paper).
      occ_positive_weight: weight of the "occluded" class in the occlusion cross-entropy (1 =
        official, unweighted). Not official when != 1: occluded fingers are the minority (about
        a fifth of the synthetic labels), and an unweighted loss leaves the heads biased to
        "visible" (README "Study").
    """

    stage: Literal[1, 2] = 1
    normal_weight: float = 0.1
    rot_weight: float = 1.0
    mesh_weight: float = 1.0
    rotated_shape_losses: bool = True
    frame_reduction: Literal["mean", "sum"] = "mean"
    occ_positive_weight: float = 1.0

    def __post_init__(self) -> None:
        if self.stage not in (1, 2):
            raise ValueError(f"stage must be 1 or 2, got {self.stage}")
        if not (isinstance(self.occ_positive_weight, (int, float)) and 0.0 < self.occ_positive_weight < float("inf")):
            raise ValueError(f"occ_positive_weight must be a finite number > 0, got {self.occ_positive_weight!r}")
        for name in ("normal_weight", "rot_weight", "mesh_weight"):
            weight = getattr(self, name)
            if not (isinstance(weight, (int, float)) and 0.0 <= weight < float("inf")):
                raise ValueError(f"{name} must be a finite number >= 0, got {weight!r}")
