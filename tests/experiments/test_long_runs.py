"""The training command as a long run lives it, in real subprocesses on synthetic/tiny: killed
with SIGKILL, stopped with SIGTERM and SIGINT, resumed; and a damaged dataset."""

import json
import os
import queue
import re
import shutil
import signal
import struct
import subprocess
import sys
import threading
import time

import pytest

from experiments import evaluate, train
from experiments.writers import read_metrics

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
NUM_STEPS = 20
CONFIG = ["--config", "experiments/configs/synthetic.py:tiny", "--config.model.variant=single_frame",
          f"--config.train.num_steps={NUM_STEPS}", "--config.train.log_every=1", "--config.train.checkpoint_every=4",
          "--config.train.keep_checkpoints=3", "--config.train.eval_every=0", "--config.train.predictions_png=False"]


class Trainer:
    """Runs `python -m experiments.train` on one shared synthetic/tiny data folder and XLA cache."""

    def __init__(self, root):
        self.env = dict(os.environ, TFDS_DATA_DIR=str(root / "tfds"), JAX_PLATFORMS="cpu",
                        JAX_COMPILATION_CACHE_DIR=str(root / "xla_cache"))
        self.env.pop("OPENBLAS_CORETYPE", None)

    def start(self, workdir):
        process = subprocess.Popen([sys.executable, "-m", "experiments.train", *CONFIG, "--workdir", str(workdir)],
                                   cwd=REPO, env=self.env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                   text=True)
        lines = queue.Queue()
        threading.Thread(target=lambda: [lines.put(line) for line in process.stdout] + [lines.put(None)],
                         daemon=True).start()
        process.lines, process.output = lines, []
        return process

    @staticmethod
    def wait_for(process, pattern, timeout=600):
        """Reads the output until a line matches `pattern`."""
        while True:
            line = process.lines.get(timeout=timeout)
            if line is None:
                raise AssertionError(f"the run ended before {pattern!r}:\n{''.join(process.output)}")
            process.output.append(line)
            if re.search(pattern, line):
                return line

    @staticmethod
    def finish(process, timeout=600):
        """(exit status, whole output) once the process has ended."""
        while (line := process.lines.get(timeout=timeout)) is not None:
            process.output.append(line)
        process.stdout.close()
        return process.wait(timeout=timeout), "".join(process.output)

    def run(self, workdir):
        return self.finish(self.start(workdir))


@pytest.fixture(scope="module")
def trainer(tmp_path_factory):
    trainer = Trainer(tmp_path_factory.mktemp("long_runs"))
    prepare = ("import ml_collections; from experiments.common import open_records; "
               "open_records(ml_collections.ConfigDict(dict(name='synthetic/tiny', build_workers=1)), 'train')")
    subprocess.run([sys.executable, "-c", prepare], cwd=REPO, env=trainer.env, check=True, capture_output=True)
    return trainer


@pytest.fixture(scope="module")
def reference(trainer, tmp_path_factory):
    """(workdir, train losses by step) of an uninterrupted run."""
    workdir = tmp_path_factory.mktemp("reference")
    status, output = trainer.run(workdir)
    assert status == 0, output
    return workdir, {r["step"]: r["total"] for r in read_metrics(str(workdir), split="train")}


def complete_steps(workdir):
    latest = os.path.join(workdir, "checkpoints", "latest")
    if not os.path.isdir(latest):
        return []
    return sorted(int(name) for name in os.listdir(latest)
                  if name.isdigit() and os.path.exists(os.path.join(latest, name, "_CHECKPOINT_METADATA")))


def tensorboard_scalars(workdir):
    """[(tag, step, value)] as TensorBoard shows them: event files in name order, and a SessionLog
    START at step s hides the events of steps >= s written before it (TensorBoard's purge rule)."""
    from tensorboardX.proto.event_pb2 import Event, SessionLog

    folder = os.path.join(workdir, "tensorboard")
    shown = []
    for name in sorted(os.listdir(folder)):
        with open(os.path.join(folder, name), "rb") as f:
            data = f.read()
        position = 0
        while position + 12 <= len(data):  # TFRecord: length u64, crc u32, payload, crc u32
            (length,) = struct.unpack("<Q", data[position:position + 8])
            end = position + 12 + length
            if end + 4 > len(data):
                break
            event = Event.FromString(data[position + 12:end])
            position = end + 4
            if event.HasField("session_log") and event.session_log.status == SessionLog.START:
                shown = [item for item in shown if item[1] < event.step]
            shown += [(value.tag, event.step, value.simple_value) for value in event.summary.value]
    return shown


def train_steps(workdir):
    return [r["step"] for r in read_metrics(str(workdir), split="train")]


def test_kill_stop_and_resume_lose_nothing_and_match_an_uninterrupted_run(trainer, reference, tmp_path):
    _, reference = reference
    workdir = tmp_path / "run"
    # SIGKILL once the checkpoint of step 4 is written (orbax writes it in the background): every
    # logged step is on disk, JSONL and TensorBoard.
    process = trainer.start(workdir)
    trainer.wait_for(process, r"^step 6/")
    deadline = time.monotonic() + 120
    while not complete_steps(workdir) and time.monotonic() < deadline:
        time.sleep(0.05)
    process.kill()
    trainer.finish(process)
    logged = train_steps(workdir)
    assert logged == list(range(1, len(logged) + 1)) and len(logged) >= 6
    assert {step for tag, step, _ in tensorboard_scalars(workdir) if tag == "train/total"} >= set(range(1, 7))
    restored = complete_steps(workdir)[-1]
    assert max(logged) > restored  # lines of steps the resumed run will train again

    # Resumed, then SIGTERM: the step is finished and checkpointed, the run says how to go on.
    process = trainer.start(workdir)
    trainer.wait_for(process, rf"^resumed from step {restored} \({re.escape(str(workdir))}/checkpoints/latest\)$")
    trainer.wait_for(process, rf"^step {restored + 2}/")
    process.send_signal(signal.SIGTERM)
    status, output = trainer.finish(process)
    stopped = re.search(r"^stopped at step (\d+): rerun the same command to resume$", output, re.M)
    assert status == 128 + signal.SIGTERM and stopped, output
    assert re.search(rf"^metrics: dropped {max(logged) - restored} lines of steps after {restored} ", output, re.M)
    term_step = int(stopped.group(1))
    assert complete_steps(workdir)[-1] == term_step
    assert train_steps(workdir) == list(range(1, term_step + 1))  # the orphans went, nothing repeats

    # SIGINT (Ctrl-C) likewise.
    process = trainer.start(workdir)
    trainer.wait_for(process, rf"^resumed from step {term_step} ")
    trainer.wait_for(process, rf"^step {term_step + 1}/")
    process.send_signal(signal.SIGINT)
    status, output = trainer.finish(process)
    stopped = re.search(r"^stopped at step (\d+): rerun the same command to resume$", output, re.M)
    assert status == 128 + signal.SIGINT and stopped, output
    assert complete_steps(workdir)[-1] == int(stopped.group(1))

    status, output = trainer.run(workdir)
    assert status == 0, output
    records = read_metrics(str(workdir), split="train")
    assert [r["step"] for r in records] == list(range(1, NUM_STEPS + 1))
    assert {r["step"]: r["total"] for r in records} == reference  # bit for bit
    shown = [(step, value) for tag, step, value in tensorboard_scalars(workdir) if tag == "train/total"]
    assert sorted(step for step, _ in shown) == list(range(1, NUM_STEPS + 1))
    assert all(value == pytest.approx(reference[step], rel=1e-6) for step, value in shown)  # float32 in events


def damaged_copy(data_dir, tmp_path, split, damage):
    """A copy of the prepared synthetic/tiny folder with the shard file of `split` truncated or removed."""
    copy = tmp_path / "tfds"
    shutil.copytree(data_dir, copy)
    from data_loaders.synthetic.builder import Synthetic

    folder = copy / "synthetic" / "tiny" / str(Synthetic.VERSION)
    shard = next(folder.glob(f"synthetic-{split}.array_record-*"))
    if damage == "truncated":
        os.truncate(shard, shard.stat().st_size // 2)
    else:
        shard.unlink()
    return copy, folder, shard


def files_of(folder):
    return sorted((str(p.relative_to(folder)), p.stat().st_size) for p in folder.rglob("*") if p.is_file())


@pytest.mark.parametrize("damage", ["truncated", "missing"])
def test_an_unreadable_record_names_its_file_and_the_fix_and_the_run_stays_intact(trainer, reference, tmp_path,
                                                                                   damage, monkeypatch):
    run = tmp_path / "run"
    shutil.copytree(reference[0], run)
    checkpoints = files_of(run / "checkpoints")
    data_dir, folder, shard = damaged_copy(trainer.env["TFDS_DATA_DIR"], tmp_path, "train", damage)
    monkeypatch.setenv("TFDS_DATA_DIR", str(data_dir))
    with pytest.raises(SystemExit) as exit_info:  # the run goes on for more steps, on damaged data
        train.main([*CONFIG, f"--config.train.num_steps={2 * NUM_STEPS}", "--workdir", str(run)])
    message = str(exit_info.value.code)
    assert "\n" not in message and message.startswith("error: cannot read record 0 of 'synthetic/tiny' split 'train'")
    assert str(shard) in message and f"delete {folder}" in message
    assert files_of(run / "checkpoints") == checkpoints


def test_evaluation_of_an_unreadable_split_names_its_file(trainer, reference, tmp_path):
    data_dir, folder, shard = damaged_copy(trainer.env["TFDS_DATA_DIR"], tmp_path, "test", "truncated")
    with pytest.raises(SystemExit) as exit_info:
        evaluate.main(["--workdir", str(reference[0]), "--data-dir", str(data_dir), "--out", str(tmp_path / "out")])
    message = str(exit_info.value.code)
    assert "\n" not in message and message.startswith("error: cannot read record 0 of 'synthetic/tiny' split 'test'")
    assert str(shard) in message and f"delete {folder}" in message


def test_a_run_is_scored_on_another_prepared_dataset_and_refused_on_other_meshes(trainer, reference, tmp_path):
    from test_evaluate import make_run

    data_dir = trainer.env["TFDS_DATA_DIR"]
    # The reference run as if trained on Dex-YCB (not prepared here), scored on synthetic/tiny.
    run = tmp_path / "run"
    shutil.copytree(reference[0], run)
    config = json.loads((run / "config.json").read_text())
    config["data"].update(name="dexycb", gap=5, data_dir=str(tmp_path / "no_dexycb_here"))
    (run / "config.json").write_text(json.dumps(config))
    report = evaluate.main(["--workdir", str(run), "--dataset", "synthetic/tiny", "--data-dir", data_dir,
                            "--limit", "4", "--batch-size", "4", "--checkpoint", "latest"])
    assert report["dataset"] == "synthetic/tiny" and report["num_labelled"] == 4
    assert json.loads((run / "eval_synthetic_tiny_test.json").read_text())["overall"]["num_samples"] == 4
    # A run on a 48-vertex mesh cannot be scored on the built-in hand's 719-vertex meshes.
    small = make_run(tmp_path / "small")
    with pytest.raises(SystemExit, match=r"^error: the run's hand topology .* has 48 vertices but 'synthetic/tiny' "
                                         r"meshes have \d+"):
        evaluate.main(["--workdir", small, "--dataset", "synthetic/tiny", "--data-dir", data_dir])
