"""experiments.orientation_probe: its constant and error measures against scipy, and a probe
that must learn an orientation that the images show plainly."""

import numpy as np
from scipy.spatial.transform import Rotation

from experiments import orientation_probe


def test_mean_rotation_and_errors_match_scipy():
    rng = np.random.default_rng()
    base = Rotation.random(random_state=rng)
    spread = Rotation.from_rotvec(rng.normal(size=(50, 3)) * 0.6) * base
    rotations = spread.as_matrix()
    # The rotation closest to the mean matrix is the chordal L2 mean (scipy's Rotation.mean).
    np.testing.assert_allclose(orientation_probe.mean_rotation(rotations), spread.mean().as_matrix(), atol=1e-9)
    other = Rotation.random(50, random_state=rng)
    errors = orientation_probe.rotation_errors(rotations, other.as_matrix())
    np.testing.assert_allclose(errors["angle_deg"], np.degrees((spread.inv() * other).magnitude()).mean(), rtol=1e-4)
    np.testing.assert_allclose(errors["rot_mse"], np.mean((rotations - other.as_matrix()) ** 2), rtol=1e-12)


def test_the_probe_learns_an_orientation_the_images_show():
    """Two orientations, 90 degrees apart, shown by a bright left or right half: a few dozen
    steps must bring the validation angle far below the constant's 45 degrees."""
    rng = np.random.default_rng(0)
    rotations = Rotation.from_rotvec([[0.0, 0.0, 0.0], [0.0, np.pi / 2, 0.0]]).as_matrix().astype(np.float32)

    def make(n):
        labels = rng.integers(0, 2, n)
        images = rng.random((n, 128, 128, 3)).astype(np.float32) * 0.2
        for i, label in enumerate(labels):
            images[i, :, 64 * label:64 * (label + 1)] += 0.8
        return {"image": images, "rot_mat": rotations[labels],
                "joints_img": np.full((n, 21, 2), 0.5, np.float32)}

    rows = orientation_probe.probe(make(64), make(32), steps=120, batch_size=8, width=4, eval_every=60)
    assert [r["step"] for r in rows] == [60, 120]
    assert rows[-1]["angle_deg"] < 10.0, rows
