"""Crop convention (data_loaders/crop.py) vs data_formats.md 4.8 and float64 hand derivations."""

import cv2
import numpy as np
import pytest

from data_loaders import crop

# data_formats.md 4.8: image 640 x 480, three joints spanning u in [100, 200], v in [150, 220].
W, H = 640, 480
JOINTS = np.array([[100.0, 150.0], [200.0, 220.0], [150.0, 180.0]])
SQUARE_BOX = np.array([75.0, 110.0, 149.0, 149.0])


def test_worked_example_boxes():
    box = crop.bbox_from_joints(JOINTS)
    np.testing.assert_allclose(box, [75.0, 132.5, 150.0, 105.0], atol=1e-12)
    np.testing.assert_allclose(crop.process_bbox(box, W, H), SQUARE_BOX, atol=1e-12)


def test_worked_example_edge_cases():
    box = crop.bbox_from_joints(np.array([[5.0, 200.0], [60.0, 260.0]]))
    np.testing.assert_allclose(box, [-8.75, 185.0, 82.5, 90.0], atol=1e-12)
    np.testing.assert_allclose(crop.process_bbox(box, W, H), [-3.75, 185.0, 89.0, 89.0], atol=1e-12)
    box = crop.bbox_from_joints(np.array([[-50.0, -40.0], [-10.0, -5.0]]))
    np.testing.assert_allclose(box, [-60.0, -48.75, 60.0, 52.5], atol=1e-12)
    # A box left of/above the image is shifted to the border, not rejected.
    np.testing.assert_allclose(crop.process_bbox(box, W, H), [0.0, -3.75, 59.0, 59.0], atol=1e-12)


def test_process_bbox_no_box_cases():
    assert crop.process_bbox(np.array([10.0, 10.0, 0.0, 20.0]), W, H) is None  # zero area
    assert crop.process_bbox(np.array([700.0, 10.0, 30.0, 20.0]), W, H) is None  # right of image
    assert crop.process_bbox(np.array([10.0, 500.0, 30.0, 20.0]), W, H) is None  # below image


def _process_bbox_reference(box, image_w, image_h, ratio, expansion):
    """Independent float64 transcription of data_formats.md 4.2 steps 1-4."""
    x, y, w, h = (float(v) for v in box)
    x1, y1 = max(0.0, x), max(0.0, y)
    x2 = min(image_w - 1.0, x1 + max(0.0, w - 1.0))
    y2 = min(image_h - 1.0, y1 + max(0.0, h - 1.0))
    if not (w * h > 0 and x2 >= x1 and y2 >= y1):
        return None
    bw, bh = x2 - x1, y2 - y1
    cx, cy = x1 + bw / 2.0, y1 + bh / 2.0
    if bw > ratio * bh:
        bh = bw / ratio
    elif bw < ratio * bh:
        bw = bh * ratio
    bw, bh = bw * expansion, bh * expansion
    return [cx - bw / 2.0, cy - bh / 2.0, bw, bh]


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_boxes_match_reference_on_random_joints(seed):
    rng = np.random.default_rng(seed)
    for _ in range(50):
        joints = rng.uniform([-100, -100], [700, 560], size=(21, 2))
        box = crop.bbox_from_joints(joints, expansion=1.5)
        lo, hi = joints.min(0), joints.max(0)
        np.testing.assert_allclose(box[2:], 1.5 * (hi - lo), rtol=1e-12)
        np.testing.assert_allclose(box[:2] + box[2:] / 2, (lo + hi) / 2, rtol=1e-12)
        ratio, expansion = rng.choice([1.0, 0.75]), rng.choice([1.0, 1.5])
        got = crop.process_bbox(box, W, H, aspect_ratio=ratio, expansion=expansion)
        want = _process_bbox_reference(box, W, H, ratio, expansion)
        if want is None:
            assert got is None
        else:
            np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12)


def test_worked_example_affine_and_joints():
    affine = crop.crop_affine(SQUARE_BOX, 128)
    s = 128.0 / 149.0
    np.testing.assert_allclose(affine, [[s, 0.0, 64 - s * 149.5], [0.0, s, 64 - s * 184.5]], atol=1e-12)
    np.testing.assert_allclose(affine[:, 2], [-64.4295, -94.4966], atol=1e-4)
    out = crop.transform_points(JOINTS, affine)
    np.testing.assert_allclose(out, [[21.4765, 34.3624], [107.3826, 94.4966], [64.4295, 60.1342]], atol=1e-4)
    np.testing.assert_allclose(
        out / 128.0, [[0.167785, 0.268456], [0.838926, 0.738255], [0.503356, 0.469799]], atol=1e-6
    )


def test_worked_example_rotated():
    affine = crop.crop_affine(SQUARE_BOX, 128, rot_deg=90.0)
    src = np.array([[149.5, 259.0], [75.0, 184.5], [100.0, 150.0]])
    np.testing.assert_allclose(
        crop.transform_points(src, affine), [[128.0, 64.0], [64.0, 128.0], [34.3624, 106.5235]], atol=1e-4
    )


def test_worked_example_mirrored():
    mirrored = crop.mirror_points_px(JOINTS, W)
    np.testing.assert_allclose(mirrored, [[539.0, 150.0], [439.0, 220.0], [489.0, 180.0]])
    affine = crop.crop_affine(SQUARE_BOX, 128, mirror_width_px=W)
    np.testing.assert_allclose(crop.transform_points(np.array([[489.5, 184.5]]), affine), [[64.0, 64.0]])
    np.testing.assert_allclose(
        crop.transform_points(mirrored, affine) / 128.0,
        [[0.832215, 0.268456], [0.161074, 0.738255], [0.496644, 0.469799]],
        atol=1e-6,
    )


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_affine_equals_cv2_three_point_construction(seed):
    """The closed form equals cv2.getAffineTransform on the official three point pairs."""
    rng = np.random.default_rng(seed)
    for _ in range(20):
        box = np.array([*rng.uniform(-50, 500, 2), *rng.uniform(20, 300, 2)])
        scale, rot_deg, out = rng.uniform(0.75, 1.25), rng.uniform(-60, 60), int(rng.choice([128, 256]))
        c = box[:2] + box[2:] / 2
        r = np.deg2rad(rot_deg)

        def rotate(v):
            return np.array([v[0] * np.cos(r) - v[1] * np.sin(r), v[0] * np.sin(r) + v[1] * np.cos(r)])

        src = np.stack([c, c + rotate([0.0, scale * box[3] / 2]), c + rotate([scale * box[2] / 2, 0.0])])
        dst = np.array([[out / 2, out / 2], [out / 2, out], [out, out / 2]])
        want = cv2.getAffineTransform(src.astype(np.float32), dst.astype(np.float32))
        got = crop.crop_affine(box, out, scale=scale, rot_deg=rot_deg)
        # cv2 solves in float32 inputs; allow its rounding.
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-3)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_crop_camera_projection_commutes_with_affine(seed):
    """Projecting 3D joints with the crop camera == affinely transforming their 2D projection."""
    rng = np.random.default_rng(seed)
    joints_m = rng.normal(size=(21, 3)) * 0.04 + [0.02, -0.03, 0.6]
    focal = rng.uniform(550, 650, 2)
    principal = rng.uniform([300, 220], [340, 260])
    uv = joints_m[:, :2] / joints_m[:, 2:] * focal + principal
    box = crop.process_bbox(crop.bbox_from_joints(uv), W, H)
    affine = crop.crop_affine(box, 128)
    focal_c, principal_c = crop.crop_intrinsics(focal, principal, affine)
    projected = joints_m[:, :2] / joints_m[:, 2:] * focal_c + principal_c
    np.testing.assert_allclose(projected, crop.transform_points(uv, affine), atol=1e-9)
    # Hand derivation: fx' = s fx and c' = s (c - box centre) + 64.
    s = 128.0 / box[2]
    np.testing.assert_allclose(focal_c, s * focal, rtol=1e-12)
    np.testing.assert_allclose(principal_c, s * (principal - (box[:2] + box[2:] / 2)) + 64.0, rtol=1e-12)
    # The same holds in mirrored space: X -> -X, principal x -> W - 1 - cx, joints mirrored.
    affine_m = crop.crop_affine(box, 128, mirror_width_px=W)
    focal_m, principal_m = crop.crop_intrinsics(focal, [W - 1 - principal[0], principal[1]], affine_m)
    joints_mirror = joints_m * [-1.0, 1.0, 1.0]
    projected_m = joints_mirror[:, :2] / joints_mirror[:, 2:] * focal_m + principal_m
    np.testing.assert_allclose(projected_m, crop.transform_points(crop.mirror_points_px(uv, W), affine_m), atol=1e-9)


def test_crop_image_samples_where_the_affine_says():
    """An image whose pixel value encodes its column/row: the crop at pixel p holds the source at A^-1 p."""
    rows, cols = np.mgrid[0:H, 0:W]
    image = np.stack([cols % 256, rows % 256, (cols // 256) * 16 + rows // 256], axis=-1).astype(np.uint8)
    affine = crop.crop_affine(np.array([100.0, 50.0, 64.0, 64.0]), 128)  # 2x zoom, inside the image
    out = crop.crop_image(image, affine, 128, nearest=True)
    assert out.shape == (128, 128, 3) and out.dtype == np.uint8
    inverse = np.linalg.inv(np.vstack([affine, [0, 0, 1]]))[:2]
    for i, j in [(0, 0), (10, 70), (127, 127), (64, 3)]:
        src = crop.transform_points(np.array([[j, i]], dtype=float), inverse)[0]
        u, v = np.rint(src).astype(int)
        np.testing.assert_array_equal(out[i, j], image[v, u])
    # Bilinear: a linear ramp is reproduced exactly (up to uint8 rounding) between pixels.
    ramp = np.tile(np.arange(W, dtype=np.float32)[None, :] * 0.25, (H, 1))
    out_ramp = crop.crop_image(ramp, affine, 128)
    src_u = (np.arange(128) - affine[0, 2]) / affine[0, 0]
    np.testing.assert_allclose(out_ramp[5], 0.25 * src_u, atol=1e-3)
    # Zero border outside the image; a [H, W, 1] image keeps its channel axis.
    far = crop.crop_affine(np.array([-500.0, -500.0, 64.0, 64.0]), 128)
    assert not crop.crop_image(image, far).any()
    assert crop.crop_image(image[..., :1], affine).shape == (128, 128, 1)


def test_errors_name_the_input():
    with pytest.raises(ValueError, match="joints_img_px"):
        crop.bbox_from_joints(np.zeros((0, 2)))
    with pytest.raises(ValueError, match="bbox"):
        crop.process_bbox(np.zeros(3), W, H)
    with pytest.raises(ValueError, match="bbox"):
        crop.crop_affine(np.array([0.0, 0.0, 0.0, 10.0]))
    with pytest.raises(ValueError, match="points_px"):
        crop.transform_points(np.zeros((4, 3)), np.zeros((2, 3)))
    with pytest.raises(ValueError, match="affine"):
        crop.crop_intrinsics([600, 600], [320, 240], crop.crop_affine(SQUARE_BOX, rot_deg=10.0))
    with pytest.raises(ValueError, match="image"):
        crop.crop_image(np.zeros((4,)), np.eye(2, 3))
    with pytest.raises(ValueError, match="non-finite"):
        crop.bbox_from_joints(np.array([[np.nan, 1.0]]))
