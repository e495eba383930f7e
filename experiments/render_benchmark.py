"""CPU time of `h2o_jax.render.render_mesh` on the built-in hand (default) or a stand-in mesh.

Default mesh: the built-in hand (719 vertices, 1,434 faces) in the example grasp pose, seen from
the palm side and filling most of the crop, faces labelled by part. `--mesh procedural`: the
stand-in used before the built-in hand existed ("procedural hand", 812 vertices, 1,600 faces, close to MANO's 778 / 1,538): an ellipsoidal
palm (icosphere, 3 subdivisions: 642 vertices, 1,280 faces, scaled to 90 x 100 x 30 mm) and five
capped finger cylinders (16 segments: 34 vertices, 64 faces each), 0.5 m in front of the camera,
framed so that it fills most of the crop like a hand in H2ONet's 128 x 128 input. Each call renders
depth, face ids, labels and Lambert-shaded vertex colours, two-sided (the default) and with
back-face culling (same image for this closed mesh). The rasteriser is pure NumPy, so thread
settings of XLA/OpenMP do not matter; BLAS is not used on the hot path.

    python -m experiments.render_benchmark                    # 128 x 128, median of 200 renders
    python -m experiments.render_benchmark --mesh procedural
    python -m experiments.render_benchmark --image-size 256 --repeats 50
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time

import numpy as np

from h2o_jax.render import cylinder_mesh, merge_meshes, render_mesh, sphere_mesh


def _rotation_x(angle_rad: float) -> np.ndarray:
    c, s = np.cos(angle_rad), np.sin(angle_rad)
    return np.array([[1.0, 0.0, 0.0], [0.0, c, -s], [0.0, s, c]])


def procedural_hand(depth_m: float = 0.5) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Palm ellipsoid + five finger cylinders in the camera frame (y down: fingers point up).

    Returns:
      ``(vertices [812, 3] metres, faces [1600, 3] int32, face_part [1600] int32)`` with parts
      0 thumb .. 4 little, 5 palm.
    """
    palm_v, palm_f = sphere_mesh(1.0, subdivisions=3)
    palm_v = palm_v * np.array([0.045, 0.05, 0.015])
    meshes, parts = [], []
    # (x, y of the finger's centre in metres, length, tilt about z in radians): thumb first.
    fingers = [(-0.06, 0.0, 0.06, 0.8), (-0.03, -0.08, 0.07, 0.1), (0.0, -0.09, 0.08, 0.0),
               (0.03, -0.08, 0.075, -0.1), (0.055, -0.07, 0.06, -0.2)]
    for part, (x, y, length, tilt) in enumerate(fingers):
        v, f = cylinder_mesh(0.009, length, segments=16)
        v = v @ _rotation_x(np.pi / 2).T  # axis z -> axis y
        c, s = np.cos(tilt), np.sin(tilt)
        v = v @ np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]]).T + [x, y, 0.0]
        meshes.append((v, f))
        parts.append(np.full(len(f), part))
    meshes.append((palm_v, palm_f))
    parts.append(np.full(len(palm_f), 5))
    vertices, faces = merge_meshes(meshes)
    # Tilt the hand 30 degrees so that depth varies across the image, then move it out.
    vertices = vertices @ _rotation_x(np.deg2rad(30.0)).T + [0.0, 0.02, depth_m]
    return vertices, faces, np.concatenate(parts).astype(np.int32)


def builtin_hand_scene(depth_m: float = 0.5) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The built-in hand in the example grasp pose, palm towards the camera, centred at depth_m.

    Returns ``(vertices [719, 3] metres, faces [1434, 3] int32, face_part [1434] int32)``."""
    from h2o_jax.hand import builtin_hand_model, builtin_topology
    from h2o_jax.hand.mano import hand_forward
    from h2o_jax.hand.poses import example_poses
    from h2o_jax.render import face_parts_from_vertex_parts

    model = builtin_hand_model()
    zeros = np.zeros(10, np.float32)
    rest = np.asarray(hand_forward(model, np.zeros(48, np.float32), zeros, flat_hand_mean=True)["joints16_m"])
    pose = example_poses(rest)[2].astype(np.float32)
    verts = np.asarray(hand_forward(model, pose, zeros, flat_hand_mean=True)["vertices_m"], np.float64)
    # Palm normal (-y in the rest frame) towards the camera (-z), fingers up (-y in the image).
    view = np.array([[0.0, 0.0, 1.0], [-1.0, 0.0, 0.0], [0.0, 1.0, 0.0]])
    vertices = (verts - verts.mean(0)) @ view.T + [0.0, 0.0, depth_m]
    faces = np.asarray(model.faces)
    return vertices, faces, face_parts_from_vertex_parts(faces, builtin_topology().vertex_part)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--image-size", type=int, default=128, help="square image side (px)")
    parser.add_argument("--repeats", type=int, default=200, help="timed renders (>= 50)")
    parser.add_argument("--mesh", choices=("builtin", "procedural"), default="builtin")
    args = parser.parse_args(argv)
    if args.repeats < 50:
        parser.error("--repeats must be >= 50 for a stable median")
    vertices, faces, face_part = builtin_hand_scene() if args.mesh == "builtin" else procedural_hand()
    rng = np.random.default_rng(0)
    colors = rng.uniform(size=(len(vertices), 3))
    size = args.image_size
    # Focal length scaled with the image so the hand covers the same fraction of any crop.
    focal = (2.6 * size,) * 2
    principal = ((size - 1) / 2.0,) * 2

    def render(cull):
        return render_mesh(vertices, faces, focal, principal, (size, size), face_labels=face_part,
                           vertex_colors=colors, cull_back_faces=cull)

    print("command:", " ".join(["python -m experiments.render_benchmark", *sys.argv[1:]]))
    print(f"mesh: {args.mesh} hand, {len(vertices)} vertices, {len(faces)} faces; "
          f"image {size}x{size}, {int(render(False).mask.sum())} covered pixels; "
          f"numpy {np.__version__}")
    for cull in (False, True):
        render(cull)  # warm-up (page faults, lazily initialised NumPy paths)
        times_ms, cpu_ms = [], []
        for _ in range(args.repeats):
            start, start_cpu = time.perf_counter(), time.process_time()
            render(cull)
            times_ms.append((time.perf_counter() - start) * 1e3)
            cpu_ms.append((time.process_time() - start_cpu) * 1e3)
        # CPU time is printed too: on a shared machine wall time also counts waiting for a core.
        print(f"render_mesh(cull_back_faces={cull}): median {statistics.median(times_ms):.2f} ms "
              f"per render (min {min(times_ms):.2f}, max {max(times_ms):.2f}; CPU time median "
              f"{statistics.median(cpu_ms):.2f} ms; n = {args.repeats})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
