"""The grain pipeline on in-memory fake records: batch contract, targets, triplets, augmentation
inside the pipeline, determinism, checkpoint state, sharding, padded evaluation, preview."""

import cv2
import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from data_loaders import preview
from data_loaders.features import BATCH_FEATURES, check_batch
from data_loaders.pipeline import (FirstSamples, SampleSource, assemble_sample, eval_batches, make_eval_dataset,
                                    make_train_dataset)
from data_loaders.triplets import TripletIndex
from record_fixtures import NUM_SHAPE, NUM_VERTICES, make_records


@pytest.fixture(scope="module")
def records():
    return make_records(num_sequences=3, frames_per_sequence=14, seed=0)


def record_id_of(records):
    return {(int(r["sequence_index"]), int(r["frame_number"])): i for i, r in enumerate(records)}


def project(points, focal, principal):
    points = points.astype(np.float64)
    return points[..., :2] / points[..., 2:] * focal[..., None, :] + principal[..., None, :]


def test_sample_targets_against_an_independent_reference(records):
    source = SampleSource(records, gap=3)
    ids = TripletIndex([r["sequence_index"] for r in records], [r["frame_number"] for r in records], gap=3)
    for index in (0, 5, 13, 20, len(records) - 1):
        sample = source[index]
        check_batch({k: v[None] for k, v in sample.items()}, NUM_VERTICES, NUM_SHAPE)
        assert set(sample) == set(BATCH_FEATURES)
        frames = [records[i] for i in ids.triplet(index)]
        for t, frame in enumerate(frames):
            np.testing.assert_allclose(sample["image"][t], frame["image"] / 255.0, atol=1e-7)
            np.testing.assert_allclose(sample["joints_img"][t], frame["joints_img_px"] / 128.0, rtol=1e-7)
            rot = Rotation.from_rotvec(frame["pose"][:3].astype(np.float64)).as_matrix()
            np.testing.assert_allclose(sample["rot_mat"][t], rot, atol=1e-6)
            root = frame["joints_cam_m"][0].astype(np.float64)
            verts_r = frame["verts_cam_m"] - root
            np.testing.assert_allclose(sample["verts_r_m"][t], verts_r, atol=1e-7)
            np.testing.assert_allclose(sample["joints_r_m"][t], frame["joints_cam_m"] - root, atol=1e-7)
            # canonical = R^T rotated (column vectors), checked by explicit per-vertex products
            np.testing.assert_allclose(sample["verts_c_m"][t], [rot.T @ v for v in verts_r], atol=1e-6)
            assert sample["frame_index"][t] == frame["frame_number"]
            assert sample["occ_label_mask"][t] == frame["occ_label_valid"]
            np.testing.assert_array_equal(sample["occ_labels"][t], frame["occ_labels"])
        assert sample["sequence_index"] == frames[0]["sequence_index"]
        assert sample["mask"] == frames[0]["label_valid"]


def test_canonical_targets_recover_the_rigid_fixture_hand(records):
    # The fixture hand is rigid per sequence: canonical targets must be identical for all frames.
    source = SampleSource(records, gap=3)
    seq0 = [i for i, r in enumerate(records) if r["sequence_index"] == 0]
    canon = np.stack([source[i]["verts_c_m"][0] for i in seq0])
    np.testing.assert_allclose(canon, np.broadcast_to(canon[:1], canon.shape), atol=2e-6)
    joints_c = np.stack([source[i]["joints_c_m"][0] for i in seq0])
    np.testing.assert_allclose(joints_c[:, 0], 0.0, atol=1e-7)  # root-relative: joint 0 at the origin


def test_triplet_frames_in_samples(records):
    ids = record_id_of(records)
    source = SampleSource(records, gap=3)
    sample = source[ids[(1, 9)]]
    assert sample["frame_index"].tolist() == [9, 6, 3]
    sample = source[ids[(1, 10)]]
    assert sample["frame_index"].tolist() == [10, 6, 4]  # t - 3 = 7 missing -> nearest earlier 6
    assert source[ids[(0, 0)]]["frame_index"].tolist() == [0, 0, 0]
    assert source[ids[(2, 5)]]["frame_index"].tolist() == [5, 3, 0]
    h2onet = SampleSource(records, gap=3, policy="h2onet")
    assert h2onet[ids[(1, 10)]]["frame_index"].tolist() == [10, 6, 3]  # list offsets skip the gap


def test_unlabelled_and_unlabelled_occlusion_frames(records):
    ids = record_id_of(records)
    source = SampleSource(records, gap=3)
    assert source[ids[(0, 3)]]["mask"] == 0.0  # label_valid = 0 in the fixture
    sample = source[ids[(2, 8)]]  # frames 8, 5, 2 of sequence 2; frame 5 has no occlusion labels
    assert sample["occ_label_mask"].tolist() == [1.0, 0.0, 1.0]


def batches(dataset, n):
    iterator = iter(dataset)
    return [next(iterator) for _ in range(n)]


def test_train_batches_contract_projection_and_canonical_relation(records):
    source = SampleSource(records, gap=3, train_jitter=True)
    for augment in (False, True):
        for batch in batches(make_train_dataset(source, 4, seed=3, augment=augment, shard_index=0, shard_count=1), 3):
            check_batch(batch, NUM_VERTICES, NUM_SHAPE)
            # projected 3D joints land on the 2D labels (the crop camera follows the augmentation)
            projected = project(batch["joints_cam_m"], batch["focal_px"], batch["principal_px"])
            assert np.abs(projected - batch["joints_img"] * 128).max() < 0.5
            np.testing.assert_allclose(projected, batch["joints_img"] * 128, atol=2e-3)
            # rotated = canonical @ R^T
            np.testing.assert_allclose(batch["joints_r_m"], np.einsum("btij,btnj->btni", batch["rot_mat"],
                                                                      batch["joints_c_m"]), atol=1e-6)
            np.testing.assert_allclose(batch["verts_r_m"] + batch["joints_cam_m"][:, :, :1], batch["verts_cam_m"],
                                       atol=1e-6)
            assert batch["image"].min() >= 0.0 and batch["image"].max() <= 1.0


def test_augmentation_changes_images_but_not_canonical_targets(records):
    source = SampleSource(records, gap=3)
    plain = batches(make_train_dataset(source, 4, seed=5, augment=False, shard_index=0, shard_count=1), 2)
    aug = batches(make_train_dataset(source, 4, seed=5, augment=True, shard_index=0, shard_count=1), 2)
    for p, a in zip(plain, aug):
        np.testing.assert_array_equal(p["frame_index"], a["frame_index"])  # same shuffle
        np.testing.assert_array_equal(p["verts_c_m"], a["verts_c_m"])
        assert np.abs(p["image"] - a["image"]).mean() > 1e-3
        # one augmentation per sample: the image-plane rotation is shared by the three frames
        turn = np.einsum("btij,btkj->btik", a["rot_mat"], p["rot_mat"])  # A = R' R^T per frame
        np.testing.assert_allclose(turn, np.broadcast_to(turn[:, :1], turn.shape), atol=1e-5)
        np.testing.assert_allclose(turn[..., 2, :], np.broadcast_to([0.0, 0.0, 1.0], turn[..., 2, :].shape), atol=1e-5)
        zoom = a["focal_px"] / p["focal_px"]
        np.testing.assert_allclose(zoom, np.broadcast_to(zoom[:, :1], zoom.shape), rtol=1e-5)


def test_same_seed_same_batches_and_state_restore(records):
    source = SampleSource(records, gap=3, train_jitter=True)
    make = lambda seed: make_train_dataset(source, 4, seed=seed, shard_index=0, shard_count=1)  # noqa: E731
    a, b, c = batches(make(11), 3), batches(make(11), 3), batches(make(12), 3)
    for x, y in zip(a, b):
        for key in x:
            np.testing.assert_array_equal(x[key], y[key], err_msg=key)
    assert any(not np.array_equal(x["image"], z["image"]) for x, z in zip(a, c))
    # Run past one epoch (41 samples / 4) so the restored state crosses an epoch boundary.
    iterator = iter(make(11))
    for _ in range(9):
        next(iterator)
    state = iterator.get_state()
    expected = [next(iterator) for _ in range(4)]
    restored = iter(make(11))
    restored.set_state(state)
    for x, y in zip(expected, (next(restored) for _ in range(4))):
        for key in x:
            np.testing.assert_array_equal(x[key], y[key], err_msg=key)


def test_epochs_cover_every_sample_and_shards_are_disjoint(records):
    ids = record_id_of(records)
    source = SampleSource(records, gap=3)
    seen = []
    for shard in range(2):
        dataset = make_train_dataset(source, 4, seed=0, augment=False, shard_index=shard, shard_count=2)
        steps = (len(records) // 2) // 2  # one epoch of this shard in local batches of 2
        got = [ids[(int(s), int(f))] for b in batches(dataset, steps)
               for s, f in zip(b["sequence_index"], b["frame_index"][:, 0])]
        assert all(i % 2 == shard for i in got) and len(set(got)) == len(got)
        assert got != sorted(got)  # shuffled
        nxt = [ids[(int(s), int(f))] for b in batches(dataset, 2 * steps)[steps:]
               for s, f in zip(b["sequence_index"], b["frame_index"][:, 0])]
        assert nxt != got  # reshuffled every epoch
        seen += got
    assert len(seen) >= len(records) - 4  # everything but the dropped remainders


def test_eval_batches_fixed_order_padding_and_shards(records):
    source = SampleSource(records, gap=3)
    ids = record_id_of(records)
    batches_ = eval_batches(source, 8, shard_index=0, shard_count=1)
    assert len(batches_) == 6  # 41 samples
    for b in batches_:
        check_batch(b, NUM_VERTICES, NUM_SHAPE)
    order = [ids[(int(s), int(f))] for b in batches_ for s, f in zip(b["sequence_index"], b["frame_index"][:, 0])]
    assert order[:len(records)] == list(range(len(records)))
    last = batches_[-1]
    assert last["mask"][1:].tolist() == [0.0] * 7  # padding
    pads = last["verts_c_m"][1:]
    np.testing.assert_array_equal(pads, np.broadcast_to(last["verts_c_m"][:1], pads.shape))  # copies of a real one
    labelled = np.array([float(r["label_valid"]) for r in records])
    np.testing.assert_array_equal(np.concatenate([b["mask"] for b in batches_])[:len(records)], labelled)
    # Three processes: equal batch counts, each real sample exactly once over all of them.
    per_process = [eval_batches(source, 4, shard_index=i, shard_count=3) for i in range(3)]
    assert {len(p) for p in per_process} == {4}
    for i, p in enumerate(per_process):
        got = [ids[(int(s), int(f))] for b in p for s, f in zip(b["sequence_index"], b["frame_index"][:, 0])]
        mine = list(range(i, len(records), 3))
        assert got[:len(mine)] == mine  # real samples in order, then padding only
        masks = np.concatenate([b["mask"] for b in p])
        np.testing.assert_array_equal(masks[:len(mine)], labelled[mine])
        assert not masks[len(mine):].any()
    assert len(make_eval_dataset(source, 4, shard_index=2, shard_count=3)) == 4


def test_custom_random_access_source_and_frame_ids(records):
    class Reader:  # anything with len and [i], as TFDS data sources are
        def __len__(self):
            return len(records)

        def __getitem__(self, i):
            return records[i]

    scanned = SampleSource(Reader(), gap=3)
    given = SampleSource(Reader(), gap=3, frame_ids=([r["sequence_index"] for r in records],
                                                     [r["frame_number"] for r in records]))
    np.testing.assert_array_equal(scanned.index.all_triplets(), given.index.all_triplets())
    np.testing.assert_array_equal(scanned[7]["image"], given[7]["image"])
    with_mask = SampleSource(records, gap=3, include_hand_mask=True)[7]
    assert with_mask["hand_mask"].shape == (3, 128, 128) and with_mask["hand_mask"].dtype == np.uint8


def test_bad_inputs_raise(records):
    source = SampleSource(records, gap=3)
    with pytest.raises(ValueError, match="positive multiple of the process count 2"):
        make_train_dataset(source, 3, seed=0, shard_index=0, shard_count=2)
    with pytest.raises(ValueError, match=r"shard_index 2 must lie in \[0, shard_count=2\)"):
        make_eval_dataset(source, 4, shard_index=2, shard_count=2)
    with pytest.raises(ValueError, match="fewer than one batch"):
        make_train_dataset(SampleSource(records[:3], gap=1), 4, seed=0, shard_index=0, shard_count=1)
    with pytest.raises(ValueError, match="frame_ids describe 2 records but the source has 41"):
        SampleSource(records, gap=3, frame_ids=([0, 0], [0, 1]))
    with pytest.raises(ValueError, match="random-access"):
        SampleSource(iter(records), gap=3)
    with pytest.raises(IndexError, match="out of range for 41 samples"):
        source[41]
    with pytest.raises(KeyError, match="lacks 'pose'"):
        assemble_sample([{k: v for k, v in records[0].items() if k != "pose"}])


# --- preview -------------------------------------------------------------------------------------

def segment_distance(points, a, b):
    ab = b - a
    t = np.clip(((points - a) @ ab) / max(ab @ ab, 1e-12), 0, 1)
    return np.linalg.norm(points - (a + t[:, None] * ab), axis=1)


def test_render_preview_draws_only_near_labels(records):
    source = SampleSource(records, gap=3)
    samples = [source[i] for i in (4, 20, 33)]
    scale = 2
    image = preview.render_preview(samples, tile_scale=scale, columns=2)
    tile_w, tile_h = 128 * scale, 128 * scale + preview.BANNER_PX
    strip_w = 3 * tile_w + 2 * preview.GAP_PX
    assert image.dtype == np.uint8 and image.shape == (2 * tile_h + preview.GAP_PX, 2 * strip_w + preview.GAP_PX, 3)
    for i, sample in enumerate(samples):
        for t in range(3):
            y0 = (i // 2) * (tile_h + preview.GAP_PX)
            x0 = (i % 2) * (strip_w + preview.GAP_PX) + t * (tile_w + preview.GAP_PX)
            crop = image[y0:y0 + 128 * scale, x0:x0 + 128 * scale].astype(int)
            plain = np.repeat(np.repeat(np.round(sample["image"][t] * 255), scale, 0), scale, 1).astype(int)
            changed = np.argwhere(np.any(crop != plain, axis=-1))[:, ::-1].astype(float)  # (x, y)
            joints = sample["joints_img"][t] * 128 * scale + (scale - 1) / 2
            verts = project(sample["verts_cam_m"][t][None], sample["focal_px"][t][None],
                            sample["principal_px"][t][None])[0] * scale + (scale - 1) / 2
            dist = np.min(np.linalg.norm(changed[:, None] - np.concatenate([joints, verts])[None], axis=-1), axis=1)
            for parent, child in preview.SKELETON_EDGES:
                dist = np.minimum(dist, segment_distance(changed, joints[parent], joints[child]))
            assert len(changed) > 50 and dist.max() <= 4.0  # radius 3 about rounded centres: nothing drawn elsewhere
            for j, p in enumerate(joints):  # joints are drawn (last) in their finger's colour
                x, y = int(round(p[0])), int(round(p[1]))
                assert tuple(crop[y, x]) in {preview.joint_colour(k) for k in range(21)}
            banner = image[y0 + 128 * scale:y0 + tile_h, x0:x0 + tile_w]
            for head in range(6):
                bx = preview.FLAG_X0_PX + head * preview.FLAG_STEP_PX + 1
                if sample["occ_label_mask"][t] == 0:
                    expected = preview.NO_LABEL_RGB
                else:
                    expected = preview.OCCLUDED_RGB if sample["occ_labels"][t, head] else preview.VISIBLE_RGB
                assert tuple(banner[4, bx]) == expected


def test_preview_main_writes_the_rendered_png(records, tmp_path, monkeypatch):
    monkeypatch.setattr(preview, "load_records", lambda name, split, data_dir: records)
    out = tmp_path / "p.png"
    preview.main(["synthetic/tiny", "--num", "3", "--out", str(out), "--gap", "3", "--columns", "3"])
    written = cv2.cvtColor(cv2.imread(str(out)), cv2.COLOR_BGR2RGB)
    source = SampleSource(records, gap=3)
    expected = preview.render_preview([source[i] for i in (0, 20, 40)], columns=3)
    np.testing.assert_array_equal(written, expected)
    with pytest.raises(FileNotFoundError, match="could not write"):
        preview.main(["synthetic/tiny", "--out", str(tmp_path / "missing" / "p.png")])
    with pytest.raises(ValueError, match="at least one sample"):
        preview.render_preview([])


def test_tfds_array_record_source_end_to_end(records, tmp_path):
    """A real TFDS ArrayRecord split (as the builders write) through the pipeline and the preview CLI."""
    tfds = pytest.importorskip("tensorflow_datasets", reason="tensorflow-datasets is a project dependency")
    from data_loaders.records import tfds_features

    class PipelineTestRecords(tfds.core.GeneratorBasedBuilder):
        VERSION = tfds.core.Version("1.0.0")

        def _info(self):
            return tfds.core.DatasetInfo(builder=self, features=tfds_features(NUM_VERTICES, NUM_SHAPE))

        def _split_generators(self, dl_manager):
            return {"train": self._generate_examples()}

        def _generate_examples(self):
            yield from enumerate(records)

    data_dir = str(tmp_path / "tfds")
    with pytest.raises(FileNotFoundError, match="is not built"):
        preview.load_records("pipeline_test_records", "train", data_dir)
    PipelineTestRecords(data_dir=data_dir, file_format="array_record").download_and_prepare()
    split = preview.load_records("pipeline_test_records", "train", data_dir)
    source = SampleSource(split, gap=3)  # scans the stored ids (Python ints from TFDS)
    reference = SampleSource(records, gap=3)
    ids = record_id_of(records)
    for i in (0, 17, 40):  # TFDS shuffles the stored order: match samples by (sequence, frame)
        sample = source[i]
        expected = reference[ids[(int(sample["sequence_index"]), int(sample["frame_index"][0]))]]
        for key, value in sample.items():
            np.testing.assert_array_equal(value, expected[key], err_msg=key)
    batch = next(iter(make_train_dataset(source, 4, seed=0, shard_index=0, shard_count=1)))
    check_batch(batch, NUM_VERTICES, NUM_SHAPE)
    out = tmp_path / "preview.png"
    preview.main(["pipeline_test_records", "--data-dir", data_dir, "--num", "2", "--gap", "3", "--out", str(out)])
    assert cv2.imread(str(out)).shape[0] == 128 * 2 + preview.BANNER_PX
    with pytest.raises(KeyError, match="has no split 'test'"):
        preview.load_records("pipeline_test_records", "test", data_dir)
    with pytest.raises(KeyError, match="not a registered TFDS dataset"):
        preview.load_records("no_such_dataset_xyz", "train", data_dir)


def test_first_samples_is_a_bounded_prefix():
    items = [{"i": i} for i in range(5)]
    assert [s["i"] for s in FirstSamples(items, 3)] == [0, 1, 2]
    whole = FirstSamples(items, 50)  # a limit past the end keeps everything
    assert len(whole) == 5 and whole[4] == {"i": 4}
    with pytest.raises(IndexError, match="sample index 3 out of range for 3 samples"):
        FirstSamples(items, 3)[3]
