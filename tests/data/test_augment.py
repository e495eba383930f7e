"""Augmentation: the official affine, exact camera consistency, image/mask warps, 3D targets, ranges."""

import cv2
import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from data_loaders import augment
from data_loaders.augment import IDENTITY, AugmentParams, augment_sample, crop_affine, sample_augment_params
from data_loaders.pipeline import assemble_sample
from record_fixtures import make_records

C = 64.0


def rotate_deg(v, deg):
    """The official `rotate_2d`: x' = x cos - y sin, y' = x sin + y cos (degrees)."""
    a = np.deg2rad(deg)
    return np.array([v[0] * np.cos(a) - v[1] * np.sin(a), v[0] * np.sin(a) + v[1] * np.cos(a)])


@pytest.mark.parametrize("seed", range(5))
def test_crop_affine_is_the_official_three_point_construction(seed):
    rng = np.random.default_rng(seed)
    s, r = rng.uniform(0.75, 1.25), rng.uniform(-60, 60)
    centre = np.array([C, C])
    src = np.float32([centre, centre + rotate_deg((0, s * C), r), centre + rotate_deg((s * C, 0), r)])
    dst = np.float32([[C, C], [C, 2 * C], [2 * C, C]])
    np.testing.assert_allclose(crop_affine(s, r), cv2.getAffineTransform(src, dst), atol=1e-4)


def test_crop_affine_hand_values():
    # data_formats.md 4.8: at +90 deg a source point below the centre goes to the output's right.
    affine = crop_affine(1.0, 90.0)
    np.testing.assert_allclose(affine @ [C, C + 20, 1], [C + 20, C], atol=1e-12)
    # s = 2 zooms out by 2 about the centre.
    np.testing.assert_allclose(crop_affine(2.0, 0.0) @ [0.0, 128.0, 1], [32.0, 96.0], atol=1e-12)


@pytest.mark.parametrize("seed", range(4))
def test_projection_stays_consistent_to_a_thousandth_pixel(seed):
    rng = np.random.default_rng(seed)
    points = np.c_[rng.uniform(-0.15, 0.15, (30, 2)), rng.uniform(0.3, 0.9, 30)]
    focal, principal = np.full(2, rng.uniform(150, 300)), rng.uniform(50, 78, 2)
    params = AugmentParams(rng.uniform(0.75, 1.25), rng.uniform(-60, 60), (1.0, 1.0, 1.0))
    sample = {"image": np.zeros((1, 128, 128, 3), np.float32), "joints_cam_m": points[None],
              "focal_px": focal[None], "principal_px": principal[None]}
    out = augment_sample(sample, params)
    # Independent float64 reference: pinhole projection, then the affine built from 3 point pairs.
    before = points[:, :2] / points[:, 2:] * focal + principal
    affine = crop_affine(params.scale, params.rot_deg)
    expected = before @ affine[:, :2].T + affine[:, 2]
    new = out["joints_cam_m"][0].astype(np.float64)
    after = new[:, :2] / new[:, 2:] * out["focal_px"][0] + out["principal_px"][0]
    np.testing.assert_allclose(after, expected, atol=1e-3)
    np.testing.assert_allclose(out["focal_px"][0], focal / params.scale, rtol=1e-6)
    np.testing.assert_allclose(new[:, 2], points[:, 2], rtol=1e-6)  # a turn about the optical axis


def fake_sample(seed=0):
    records = make_records(num_sequences=1, frames_per_sequence=3, seed=seed, missing=())
    return assemble_sample(records, include_hand_mask=True)


def test_quarter_turn_warps_exactly_like_rot90():
    sample = fake_sample()
    out = augment_sample(sample, AugmentParams(1.0, 90.0, (1.0, 1.0, 1.0)))
    # p' = c + R2(-90)(p - c) maps (x, y) to (y, 128 - x), so output[r, c] = input[c, 128 - r]
    # = rot90(input)[r - 1, c] (numpy's rot90: B[i, j] = A[j, 127 - i]); row 0 samples outside.
    for t in range(3):
        expected_img = np.zeros_like(sample["image"][t])
        expected_mask = np.zeros_like(sample["hand_mask"][t])
        expected_img[1:] = np.rot90(sample["image"][t], k=1)[:-1]
        expected_mask[1:] = np.rot90(sample["hand_mask"][t], k=1)[:-1]
        np.testing.assert_allclose(out["image"][t], expected_img, atol=1e-6)
        np.testing.assert_array_equal(out["hand_mask"][t], expected_mask)


def test_zoom_out_by_two_samples_every_second_pixel():
    sample = fake_sample(1)
    out = augment_sample(sample, AugmentParams(2.0, 0.0, (1.0, 1.0, 1.0)))
    q = np.arange(128)
    src = 2 * q - 64  # inverse map p = c + 2 (q - c): integer source pixels
    inside = (src >= 0) & (src < 128)
    rows, cols = np.meshgrid(q[inside], q[inside], indexing="ij")
    src_rows, src_cols = np.meshgrid(src[inside], src[inside], indexing="ij")
    for t in range(3):
        np.testing.assert_allclose(out["image"][t][rows, cols], sample["image"][t][src_rows, src_cols], atol=1e-6)
        np.testing.assert_array_equal(out["hand_mask"][t][rows, cols], sample["hand_mask"][t][src_rows, src_cols])
        # Output pixels whose source is more than one pixel outside the crop are the zero border.
        far = np.zeros((128, 128), bool)
        far_idx = q[(src < -1) | (src > 128)]
        far[far_idx, :] = far[:, far_idx] = True
        assert np.all(out["image"][t][far] == 0) and np.all(out["hand_mask"][t][far] == 0)


def test_mask_is_warped_nearest_at_half_pixel_positions():
    rng = np.random.default_rng(4)
    mask = rng.integers(0, 256, (1, 128, 128)).astype(np.uint8)  # distinct values expose any blending
    out = augment_sample({"image": np.zeros((1, 128, 128, 3), np.float32), "hand_mask": mask},
                         AugmentParams(0.5, 0.0, (1.0, 1.0, 1.0)))["hand_mask"][0]
    q = np.arange(128)
    src = 32 + q / 2  # inverse of p' = c + 2 (p - c): half-integer for odd q
    lo, hi = np.floor(src).astype(int), np.ceil(src).astype(int)
    candidates = np.stack([mask[0][np.ix_(a, b)] for a in (lo, hi) for b in (lo, hi)])
    assert np.all((candidates == out[None]).any(axis=0))
    np.testing.assert_array_equal(out[::2, ::2], mask[0][32:96, 32:96])  # even q: exact source pixels


def bilinear_reference(image, affine):
    """Float64 brute force: each output pixel samples the inverse-mapped point, zero outside."""
    inverse = cv2.invertAffineTransform(affine)
    ys, xs = np.mgrid[0:128, 0:128].astype(np.float64)
    sx = inverse[0, 0] * xs + inverse[0, 1] * ys + inverse[0, 2]
    sy = inverse[1, 0] * xs + inverse[1, 1] * ys + inverse[1, 2]
    x0, y0 = np.floor(sx).astype(int), np.floor(sy).astype(int)
    out = np.zeros((128, 128, 3))
    for dx in (0, 1):
        for dy in (0, 1):
            xi, yi = x0 + dx, y0 + dy
            w = (1 - np.abs(sx - xi)) * (1 - np.abs(sy - yi))
            ok = (xi >= 0) & (xi < 128) & (yi >= 0) & (yi < 128)
            out += np.where(ok[..., None], image[np.clip(yi, 0, 127), np.clip(xi, 0, 127)], 0.0) * w[..., None]
    return out


@pytest.mark.parametrize("seed", range(3))
def test_general_warp_and_colour_match_a_bilinear_reference(seed):
    rng = np.random.default_rng(seed)
    sample = fake_sample(seed)
    params = AugmentParams(rng.uniform(0.75, 1.25), rng.uniform(-60, 60), tuple(rng.uniform(0.8, 1.2, 3)))
    out = augment_sample(sample, params)
    affine = crop_affine(params.scale, params.rot_deg)
    for t in range(3):
        expected = np.clip(bilinear_reference(sample["image"][t].astype(np.float64), affine) * params.color_gain, 0, 1)
        error = np.abs(out["image"][t] - expected)
        # OpenCV quantises sample positions to 1/32 px: tiny errors inside, larger at the crop edge.
        assert error.mean() < 2e-3 and np.quantile(error, 0.99) < 1e-2 and error.max() < 0.1


def test_identity_warp_and_colour_gain_with_clipping():
    sample = fake_sample(2)
    sample["image"][0, 0, 0] = [1.0, 0.95, 0.0]
    out = augment_sample(sample, AugmentParams(1.0, 0.0, (1.2, 0.8, 1.1)))
    np.testing.assert_allclose(out["image"], np.minimum(sample["image"] * np.float32([1.2, 0.8, 1.1]), 1.0), atol=1e-6)
    np.testing.assert_allclose(out["image"][0, 0, 0], [1.0, 0.76, 0.0], atol=1e-6)
    ident = augment_sample(sample, IDENTITY)
    for key in sample:
        np.testing.assert_allclose(ident[key], sample[key], atol=2e-6, err_msg=key)


@pytest.mark.parametrize("seed", range(3))
def test_3d_targets_rotation_and_pose(seed):
    rng = np.random.default_rng(seed)
    sample = fake_sample(seed)
    before = {k: v.copy() for k, v in sample.items()}
    params = AugmentParams(rng.uniform(0.75, 1.25), rng.uniform(-60, 60), (1.0, 1.0, 1.0))
    out = augment_sample(sample, params)
    for key in sample:  # the input is left untouched
        np.testing.assert_array_equal(sample[key], before[key])
    angle = np.deg2rad(-params.rot_deg)
    a = Rotation.from_rotvec([0, 0, angle]).as_matrix()  # Rz(-r), an independent construction
    for key in ("joints_cam_m", "verts_cam_m", "joints_r_m", "verts_r_m"):
        np.testing.assert_allclose(out[key], sample[key].astype(np.float64) @ a.T, atol=1e-6, err_msg=key)
    np.testing.assert_allclose(out["rot_mat"], a @ sample["rot_mat"], atol=1e-6)
    for t in range(3):
        root = Rotation.from_rotvec(out["pose"][t, :3].astype(np.float64)).as_matrix()
        np.testing.assert_allclose(root, a @ Rotation.from_rotvec(sample["pose"][t, :3]).as_matrix(), atol=1e-5)
    np.testing.assert_array_equal(out["pose"][:, 3:], sample["pose"][:, 3:])
    # Canonical targets stay valid: rotated = canonical @ R'^T with the new rotation.
    for key_r, key_c in (("joints_r_m", "joints_c_m"), ("verts_r_m", "verts_c_m")):
        np.testing.assert_allclose(out[key_r], np.einsum("tij,tnj->tni", out["rot_mat"], out[key_c]), atol=1e-6)
        np.testing.assert_array_equal(out[key_c], sample[key_c])
    # 2D joints follow the projection of the turned 3D joints.
    projected = out["joints_cam_m"][..., :2] / out["joints_cam_m"][..., 2:] * out["focal_px"][:, None] \
        + out["principal_px"][:, None]
    np.testing.assert_allclose(projected, out["joints_img"] * 128, atol=1e-3)


def test_sampled_parameters_follow_the_official_distributions():
    rng = np.random.default_rng(0)
    params = [sample_augment_params(rng) for _ in range(4000)]
    scale = np.array([p.scale for p in params])
    rot = np.array([p.rot_deg for p in params])
    gain = np.array([p.color_gain for p in params])
    assert scale.min() >= 0.75 and scale.max() <= 1.25
    # P(|N(0,1)| > 1) = 0.3173: that share sits exactly on the clip bounds.
    assert abs(np.mean((scale == 0.75) | (scale == 1.25)) - 0.3173) < 0.03
    assert abs(np.mean(rot == 0.0) - 0.4) < 0.03  # rotation kept with probability 0.6
    rotated = rot[rot != 0.0]
    assert rotated.min() >= -60 and rotated.max() <= 60
    assert abs(np.mean(np.abs(rotated) == 60) - 0.0455) < 0.015  # P(|N| > 2)
    assert gain.min() >= 0.8 and gain.max() <= 1.2 and abs(gain.mean() - 1.0) < 0.01
    # Always the same number of draws, whatever the outcome.
    a, b = np.random.default_rng(5), np.random.default_rng(5)
    sample_augment_params(a)
    b.standard_normal(), b.standard_normal(), b.random(), b.uniform(size=3)
    assert a.random() == b.random()
    assert sample_augment_params(np.random.default_rng(1), rot_prob=0.0).rot_deg == 0.0


def test_bad_inputs_raise():
    with pytest.raises(KeyError, match="image"):
        augment_sample({"joints_img": np.zeros((3, 21, 2))}, IDENTITY)
    with pytest.raises(ValueError, match=r"\[T, 128, 128, 3\] float32"):
        augment_sample({"image": np.zeros((3, 128, 128, 3), np.uint8)}, IDENTITY)
    with pytest.raises(ValueError, match="scale must be finite and > 0"):
        AugmentParams(0.0, 0.0, (1.0, 1.0, 1.0))
    with pytest.raises(ValueError, match="color_gain must be 3"):
        AugmentParams(1.0, 0.0, (1.0, 1.0))
    assert augment.ROT_PROB == 0.6 and augment.SCALE_FACTOR == 0.25 and augment.ROT_FACTOR_DEG == 30
