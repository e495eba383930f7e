"""The built-in procedural hand: a licence-free right hand in MANO's own model format.

MANO cannot be shipped, so h2o_jax builds its own articulated hand (design.md): a palm and five
three-segment fingers with rounded tips, one closed, consistently oriented triangle mesh of 719
vertices, MANO's 16-joint tree and joint order, linear-blend-skinning weights, a 10-parameter
shape space and MANO's 16 x 3 axis-angle pose space. :func:`builtin_mano_dict` returns it as the
13 keys of ``MANO_RIGHT.pkl`` (data_formats.md 1.2), so the one MANO layer
(:mod:`h2o_jax.hand.mano`) skins both this hand and the real MANO.

Construction (deterministic, numpy only): the palm is the surface of a 6 x 12 x 3 cell box grid
(length x width x thickness); each finger replaces a 3 x 3 cell patch of the box (the four fingers
tile the distal face, the thumb sits on the radial side) by a tube of elliptic rings that follows
its bone chain and closes in a dome with an apex vertex (the fingertip). A few Taubin smoothing
steps round the box. Joints are ring centres (the 16-row joint regressor averages a ring of
vertices), so shape changes move joints consistently as in MANO.

Frame of the rest hand (metres): wrist joint near the origin, fingers along +x, the back of the
hand towards +y (the palm faces -y), the thumb on the -z side. Part ids: 0 thumb, 1 index,
2 middle, 3 ring, 4 little, 5 palm. Pose-corrective blend shapes are zero (``posedirs`` = 0) and
``hands_components`` is the identity (no PCA prior); ``hands_mean`` is a slight natural curl.
"""

from __future__ import annotations

import dataclasses
import functools

import numpy as np

from h2o_jax.hand.mano import MANO_PARENTS  # noqa: F401  (re-exported: the tree this hand follows)
from h2o_jax.hand.poses import FINGER_CHAINS

PALM_PART = 5
NUM_SHAPE = 10
SHAPE_NAMES = (
    "scale", "palm_width", "palm_length", "finger_length", "thumb_length",
    "finger_thickness", "palm_thickness", "index_vs_ring", "little_length", "finger_spread",
)

_PALM_CELLS = (6, 12, 3)  # x (length), z (width), y (thickness)
_TAUBIN_STEPS = 4


@dataclasses.dataclass(frozen=True)
class HandProportions:
    """Adult right-hand proportions in metres (defaults: palm 8.5 cm, middle finger 8.2 cm)."""

    palm_length_m: float = 0.085
    palm_width_m: float = 0.080
    palm_thickness_m: float = 0.028
    # MCP->PIP, PIP->DIP, DIP->tip per finger; thumb: CMC->MCP, MCP->IP, IP->tip.
    segment_lengths_m: tuple[tuple[float, float, float], ...] = (
        (0.045, 0.032, 0.027),
        (0.036, 0.022, 0.018),
        (0.039, 0.024, 0.019),
        (0.037, 0.023, 0.019),
        (0.029, 0.018, 0.016),
    )
    # Half-width and half-thickness of each finger at its base.
    radii_m: tuple[tuple[float, float], ...] = (
        (0.0110, 0.0095), (0.0092, 0.0082), (0.0095, 0.0085), (0.0090, 0.0080), (0.0078, 0.0070),
    )
    # Rest directions of the four fingers in the palm plane (degrees towards +z); thumb fixed.
    spread_deg: tuple[float, float, float, float] = (-7.0, 0.0, 6.0, 13.0)


def proportions_for_shape(betas: np.ndarray, base: HandProportions = HandProportions()) -> HandProportions:
    """Proportions after the shape parameters ``betas`` [10] (one unit = 5 % or 3 degrees)."""
    b = np.asarray(betas, np.float64)
    if b.shape != (NUM_SHAPE,):
        raise ValueError(f"betas must have shape ({NUM_SHAPE},), got {b.shape}")
    scale = 1.0 + 0.05 * b[0]
    lengths = np.array(base.segment_lengths_m) * scale
    lengths[1:] *= 1.0 + 0.05 * b[3]
    lengths[0] *= 1.0 + 0.05 * b[4]
    lengths[1] *= 1.0 + 0.05 * b[7]
    lengths[3] *= 1.0 - 0.05 * b[7]
    lengths[4] *= 1.0 + 0.05 * b[8]
    spread = np.array(base.spread_deg) * (1.0 + 0.25 * b[9])
    return HandProportions(
        palm_length_m=base.palm_length_m * scale * (1.0 + 0.05 * b[2]),
        palm_width_m=base.palm_width_m * scale * (1.0 + 0.05 * b[1]),
        palm_thickness_m=base.palm_thickness_m * scale * (1.0 + 0.05 * b[6]),
        segment_lengths_m=tuple(map(tuple, lengths.tolist())),
        radii_m=tuple(map(tuple, (np.array(base.radii_m) * scale * (1.0 + 0.05 * b[5])).tolist())),
        spread_deg=tuple(spread.tolist()),
    )


@dataclasses.dataclass(frozen=True)
class _Connectivity:
    """Everything about the mesh that does not depend on proportions."""

    faces: np.ndarray            # [F, 3]
    num_vertices: int
    palm_grid: np.ndarray        # [Vp, 3] integer (i, k, j) grid coords of palm vertices
    base_loops: tuple[np.ndarray, ...]   # per finger: [12] vertex ids on the palm, cyclic
    loop_uv: tuple[np.ndarray, ...]      # per finger: [12, 2] patch-plane offsets (normalised)
    rings: tuple[np.ndarray, ...]        # per finger: [R, 12] vertex ids of tube rings
    apex: np.ndarray             # [5] fingertip vertex ids


def _palm_grid():
    """Integer (i, k, j) coordinates of the box-surface vertices that survive the finger patches
    (a patch's interior vertices are replaced by its finger)."""
    nx, nz, ny = _PALM_CELLS
    interior = set()
    for finger in range(5):
        side_axis, side_value, (ua, u0, u1), (va, v0, v1) = _patch(finger)
        for u in range(u0 + 1, u1):
            for v in range(v0 + 1, v1):
                c = [0, 0, 0]
                c[side_axis], c[ua], c[va] = side_value, u, v
                interior.add(tuple(c))
    coords = [(i, k, j) for i in range(nx + 1) for k in range(nz + 1) for j in range(ny + 1)
              if (i in (0, nx) or k in (0, nz) or j in (0, ny)) and (i, k, j) not in interior]
    return np.array(coords, np.int64)


def _patch(finger: int):
    """(side axis, side value, (u axis, u range), (v axis, v range)) of a finger's palm patch.

    Grid axes: 0 = x (i), 1 = z (k), 2 = y (j)."""
    nx, nz, ny = _PALM_CELLS
    if finger == 0:  # thumb on the -z side, cells i in [1, 4)
        return 1, 0, (0, 1, 4), (2, 0, ny)
    k0 = 3 * (finger - 1)
    return 0, nx, (1, k0, k0 + 3), (2, 0, ny)


_RINGS_PER_FINGER = 8  # 6 body rings + 2 dome rings
_LOOP = 12


def _connectivity() -> _Connectivity:
    grid = _palm_grid()
    index_of = {tuple(c): n for n, c in enumerate(grid.tolist())}
    nx, nz, ny = _PALM_CELLS
    quads = []
    removed_cells = set()
    base_loops, loop_uv = [], []
    for finger in range(5):
        side_axis, side_value, (ua, u0, u1), (va, v0, v1) = _patch(finger)
        for a in range(u0, u1):
            for b in range(v0, v1):
                removed_cells.add((side_axis, side_value, frozenset({(ua, a), (va, b)})))
        perimeter = ([(u, v0) for u in range(u0, u1)] + [(u1, v) for v in range(v0, v1)]
                     + [(u, v1) for u in range(u1, u0, -1)] + [(u0, v) for v in range(v1, v0, -1)])
        loop, uv = [], []
        for u, v in perimeter:
            c = [0, 0, 0]
            c[side_axis], c[ua], c[va] = side_value, u, v
            loop.append(index_of[tuple(c)])
            uv.append(((u - (u0 + u1) / 2) / ((u1 - u0) / 2), (v - (v0 + v1) / 2) / ((v1 - v0) / 2)))
        base_loops.append(np.array(loop))
        loop_uv.append(np.array(uv))
    sizes = (nx, nz, ny)
    for axis in range(3):
        other = [a for a in range(3) if a != axis]
        for value in (0, sizes[axis]):
            for a in range(sizes[other[0]]):
                for b in range(sizes[other[1]]):
                    if (axis, value, frozenset({(other[0], a), (other[1], b)})) in removed_cells:
                        continue
                    corners = []
                    for da, db in ((0, 0), (1, 0), (1, 1), (0, 1)):
                        c = [0, 0, 0]
                        c[axis], c[other[0]], c[other[1]] = value, a + da, b + db
                        corners.append(index_of[tuple(c)])
                    quads.append((corners, axis, value))
    num_vertices = len(grid)
    rings, apex, tube_quads, fans = [], [], [], []
    for finger in range(5):
        ids = np.arange(num_vertices, num_vertices + _RINGS_PER_FINGER * _LOOP).reshape(_RINGS_PER_FINGER, _LOOP)
        num_vertices += _RINGS_PER_FINGER * _LOOP
        rings.append(ids)
        apex.append(num_vertices)
        num_vertices += 1
        chain = [base_loops[finger]] + list(ids)
        for r in range(len(chain) - 1):
            for i in range(_LOOP):
                j = (i + 1) % _LOOP
                tube_quads.append((finger, [chain[r][i], chain[r][j], chain[r + 1][j], chain[r + 1][i]]))
        for i in range(_LOOP):
            fans.append((finger, [ids[-1][i], ids[-1][(i + 1) % _LOOP], apex[-1]]))
    return _Connectivity(
        faces=np.zeros((0, 3), np.int64),  # oriented in _orient (needs positions)
        num_vertices=num_vertices, palm_grid=grid, base_loops=tuple(base_loops),
        loop_uv=tuple(loop_uv), rings=tuple(rings), apex=np.array(apex),
    ), quads, tube_quads, fans


def _finger_frames(p: HandProportions, conn: _Connectivity, palm_vertices: np.ndarray):
    """Per finger: base centre, unit direction d, lateral e1, e2 (all [3])."""
    frames = []
    thumb_dir = np.array([0.72, -0.35, -0.60])
    thumb_dir /= np.linalg.norm(thumb_dir)
    for finger in range(5):
        centre = palm_vertices[conn.base_loops[finger]].mean(0)
        side_axis, _, (ua, _, _), (va, _, _) = _patch(finger)
        world_axis = {0: np.array([1.0, 0, 0]), 1: np.array([0, 0, 1.0]), 2: np.array([0, 1.0, 0])}
        if finger == 0:
            d = thumb_dir
        else:
            angle = np.deg2rad(p.spread_deg[finger - 1])
            d = np.array([np.cos(angle), 0.0, np.sin(angle)])
        u_axis, v_axis = world_axis[ua], world_axis[va]
        e1 = u_axis - (u_axis @ d) * d
        e1 /= np.linalg.norm(e1)
        e2 = v_axis - (v_axis @ d) * d - (v_axis @ e1) * e1
        e2 /= np.linalg.norm(e2)
        frames.append((centre, d, e1, e2))
    return frames


def _ring_stations(lengths, tip_radius):
    """Arc lengths and radius factors of the 8 rings, plus the apex arc length."""
    l1, l2, l3 = lengths
    total = l1 + l2 + l3
    dome_start = total - tip_radius
    body = [l1 / 3, 2 * l1 / 3, l1, l1 + l2 / 2, l1 + l2, dome_start]
    taper = [1.0 - 0.15 * s / dome_start for s in body]
    stations, factors = list(body), list(taper)
    for phi in np.deg2rad([40.0, 70.0]):
        stations.append(dome_start + tip_radius * np.sin(phi))
        factors.append(taper[-1] * np.cos(phi))
    return np.array(stations), np.array(factors), total


def _positions(p: HandProportions, conn: _Connectivity) -> np.ndarray:
    nx, nz, ny = _PALM_CELLS
    scale = np.array([p.palm_length_m / nx, p.palm_width_m / nz, p.palm_thickness_m / ny])
    g = conn.palm_grid.astype(np.float64)
    palm = np.stack([g[:, 0] * scale[0], g[:, 2] * scale[2] - p.palm_thickness_m / 2,
                     g[:, 1] * scale[1] - p.palm_width_m / 2], axis=1)  # (x, y, z)
    vertices = np.zeros((conn.num_vertices, 3))
    vertices[: len(palm)] = palm
    for finger, (centre, d, e1, e2) in enumerate(_finger_frames(p, conn, palm)):
        a, b = p.radii_m[finger]
        stations, factors, total = _ring_stations(p.segment_lengths_m[finger], 0.85 * b)
        theta = np.arctan2(conn.loop_uv[finger][:, 1], conn.loop_uv[finger][:, 0])
        for r, (s, f) in enumerate(zip(stations, factors)):
            vertices[conn.rings[finger][r]] = (centre + s * d + f * a * np.cos(theta)[:, None] * e1
                                               + f * b * np.sin(theta)[:, None] * e2)
        vertices[conn.apex[finger]] = centre + total * d
    return vertices


def _orient(vertices, quads, tube_quads, fans, conn):
    """Triangulates and orients every face outwards (box sides: side normal; tubes: radial)."""
    faces = []
    palm = vertices[: len(conn.palm_grid)]
    frames = _finger_frames(HandProportions(), conn, palm)
    for corners, axis, value in quads:
        outward = np.zeros(3)
        world = {0: 0, 1: 2, 2: 1}[axis]
        outward[world] = 1.0 if value > 0 else -1.0
        faces += _oriented_pair(vertices, corners, lambda c, o=outward: o)
    # A tube's quads all share one winding pattern: decide it once per finger on a mid-tube quad
    # (the radial direction is ambiguous next to an oblique base loop).
    flip = {}
    for finger, corners in tube_quads:
        if finger in flip or corners[0] != conn.rings[finger][3][0]:
            continue
        centre, d, _, _ = frames[finger]
        rel = vertices[corners].mean(0) - centre
        n = np.cross(vertices[corners[1]] - vertices[corners[0]], vertices[corners[3]] - vertices[corners[0]])
        flip[finger] = n @ (rel - (rel @ d) * d) < 0
    for finger, corners in tube_quads:
        corners = corners[::-1] if flip[finger] else corners
        faces += [[corners[0], corners[1], corners[2]], [corners[0], corners[2], corners[3]]]
    for finger, tri in fans:
        faces.append(tri[::-1] if flip[finger] else tri)
    return np.array(faces, np.int64)


def _oriented_pair(vertices, corners, outward_at):
    c = vertices[corners].mean(0)
    n = np.cross(vertices[corners[1]] - vertices[corners[0]], vertices[corners[3]] - vertices[corners[0]])
    if n @ outward_at(c) < 0:
        corners = corners[::-1]
    return [[corners[0], corners[1], corners[2]], [corners[0], corners[2], corners[3]]]


def _taubin(vertices, faces, steps=_TAUBIN_STEPS, lam=0.5, mu=-0.53):
    """Uniform-umbrella Taubin smoothing (a linear map of the positions; keeps the volume)."""
    n = len(vertices)
    edges = np.concatenate([faces[:, [0, 1]], faces[:, [1, 2]], faces[:, [2, 0]]])
    edges = np.unique(np.sort(np.concatenate([edges, edges[:, ::-1]]), axis=1), axis=0)
    adjacency = np.zeros((n, n))
    adjacency[edges[:, 0], edges[:, 1]] = 1
    adjacency[edges[:, 1], edges[:, 0]] = 1
    mean_op = adjacency / adjacency.sum(1, keepdims=True)
    v = vertices.copy()
    for _ in range(steps):
        for factor in (lam, mu):
            v = v + factor * (mean_op @ v - v)
    return v


@functools.cache
def _cached_connectivity() -> _Connectivity:
    conn, quads, tube_quads, fans = _connectivity()
    faces = _orient(_positions(HandProportions(), conn), quads, tube_quads, fans, conn)
    return dataclasses.replace(conn, faces=faces)


def hand_vertices(proportions: HandProportions = HandProportions()) -> np.ndarray:
    """[V, 3] float64 rest vertices of the hand with the given proportions (metres)."""
    conn = _cached_connectivity()
    return _taubin(_positions(proportions, conn), conn.faces)


def _joint_regressor16(conn: _Connectivity) -> np.ndarray:
    regressor = np.zeros((16, conn.num_vertices))
    wrist = np.flatnonzero(conn.palm_grid[:, 0] == 0)
    regressor[0, wrist] = 1.0 / len(wrist)
    for finger, chain in enumerate(FINGER_CHAINS):
        rings = [conn.base_loops[finger], conn.rings[finger][2], conn.rings[finger][4]]
        for joint, ring in zip(chain, rings):
            regressor[joint, ring] = 1.0 / len(ring)
    return regressor


def _smoothstep(t):
    t = np.clip(t, 0.0, 1.0)
    return t * t * (3 - 2 * t)


def _skin_weights(p: HandProportions, conn: _Connectivity) -> np.ndarray:
    """[V, 16] skinning weights: a bone's vertices follow its proximal joint; joints blend over
    a window of about 1 cm so bent fingers stay smooth."""
    weights = np.zeros((conn.num_vertices, 16))
    num_palm = len(conn.palm_grid)
    weights[:num_palm, 0] = 1.0
    palm = _positions(p, conn)[:num_palm]
    # Palm vertices near a finger's base share up to half their weight with its first joint.
    share = np.zeros((num_palm, 5))
    for finger, chain in enumerate(FINGER_CHAINS):
        dist = np.linalg.norm(palm[:, None] - palm[conn.base_loops[finger]][None], axis=-1).min(1)
        share[:, finger] = 0.5 * (1 - _smoothstep(dist / 0.015))
    total = share.sum(1, keepdims=True)
    share = np.where(total > 0.5, share * 0.5 / np.maximum(total, 1e-12), share)
    for finger, chain in enumerate(FINGER_CHAINS):
        weights[:num_palm, chain[0]] += share[:, finger]
    weights[:num_palm, 0] -= share.sum(1)
    blend_m = 0.010
    for finger, chain in enumerate(FINGER_CHAINS):
        l1, l2, _ = p.segment_lengths_m[finger]
        a, b = p.radii_m[finger]
        stations, _, _ = _ring_stations(p.segment_lengths_m[finger], 0.85 * b)
        ids = list(conn.rings[finger]) + [np.array([conn.apex[finger]])]
        for ring_ids, s in zip(ids, list(stations) + [np.inf]):
            t0 = _smoothstep((s - 0.0) / blend_m + 0.5)      # wrist -> first joint
            t1 = _smoothstep((s - l1) / blend_m + 0.5)       # first -> second joint
            t2 = _smoothstep((s - l1 - l2) / blend_m + 0.5)  # second -> third joint
            w = np.zeros(16)
            w[0] = 1 - t0
            w[chain[0]] = t0 * (1 - t1)
            w[chain[1]] = t1 * (1 - t2)
            w[chain[2]] = t2
            weights[ring_ids] = w
    return weights


def _vertex_part(conn: _Connectivity) -> np.ndarray:
    part = np.full(conn.num_vertices, PALM_PART, np.int32)
    for finger in range(5):
        part[conn.rings[finger].ravel()] = finger
        part[conn.apex[finger]] = finger
    return part


def flexion_axes() -> np.ndarray:
    """[16, 3] unit axes (rest frame) about which a positive rotation curls each joint towards
    the palm; row 0 (the wrist) is the palm's own flexion axis. Used to make grasp-like poses."""
    conn = _cached_connectivity()
    palm = _positions(HandProportions(), conn)[: len(conn.palm_grid)]
    axes = np.zeros((16, 3))
    axes[0] = [0.0, 0.0, -1.0]
    for finger, (_, d, _, _) in enumerate(_finger_frames(HandProportions(), conn, palm)):
        # The palm faces -y: curling towards it is a positive rotation about y x d.
        axis = np.cross([0.0, 1.0, 0.0], d)
        axis /= np.linalg.norm(axis)
        for joint in FINGER_CHAINS[finger]:
            axes[joint] = axis
    return axes


# Rest vertices are snapped to multiples of 2**-30 m (~0.9 nm): the generator's matrix products go
# through BLAS, whose kernel choice moves the last bits (~1e-17 m), and the mesh hierarchy built
# from these positions must be the same on every machine. Scaling by a power of two and rounding
# are exact, so only a value within such a perturbation of a half-grid point could still differ;
# tests/hand/test_builtin.py checks that none is.
REST_GRID_M = 2.0**-30


def snap_to_grid(values_m: np.ndarray, grid_m: float = REST_GRID_M) -> np.ndarray:
    """`values_m` rounded to the nearest multiple of `grid_m` (a power of two: exact)."""
    return np.round(np.asarray(values_m, np.float64) / grid_m) * grid_m


def builtin_mano_dict() -> dict:
    """The built-in hand as the 13 keys of a MANO model file (float64, MANO's dtypes) plus
    ``vertex_part`` [V] and ``fingertip_vertices`` [5] (ignored by MANO loaders)."""
    conn = _cached_connectivity()
    rest = snap_to_grid(hand_vertices())
    step = 1e-3
    shapedirs = np.zeros((conn.num_vertices, 3, NUM_SHAPE))
    for k in range(NUM_SHAPE):
        delta = np.zeros(NUM_SHAPE)
        delta[k] = step
        plus = hand_vertices(proportions_for_shape(delta))
        minus = hand_vertices(proportions_for_shape(-delta))
        shapedirs[:, :, k] = (plus - minus) / (2 * step)
    regressor = _joint_regressor16(conn)
    axes = flexion_axes()
    hands_mean = (0.15 * axes[1:]).reshape(45)
    kintree = np.array([[2**32 - 1 if p < 0 else p for p in MANO_PARENTS], list(range(16))], np.int64)
    return {
        "v_template": rest,
        "shapedirs": shapedirs,
        "posedirs": np.zeros((conn.num_vertices, 3, 135)),
        "J_regressor": regressor,
        "J": regressor @ rest,
        "weights": _skin_weights(HandProportions(), conn),
        "kintree_table": kintree,
        "f": conn.faces.astype(np.uint32),
        "hands_components": np.eye(45),
        "hands_mean": hands_mean,
        "hands_coeffs": np.zeros((1, 45)),
        "bs_style": "lbs",
        "bs_type": "lrotmin",
        "vertex_part": _vertex_part(conn),
        "fingertip_vertices": conn.apex.astype(np.int32),
    }
