"""Orbax checkpoints of the train state together with the data iterator state.

Layout under `<workdir>/checkpoints/`: `latest/<step>/` (the last `keep` saves, for resume) and
`best/<step>/` (the single best by the evaluation score, lower is better). Each step directory
holds the items `state` (the train-state pytree) and `data` (the grain iterator state as JSON).
The experiment config is written once as `<workdir>/config.json` so evaluate/benchmark/demo can
rebuild the model from the directory alone.

Orbax writes a step into `<step>.orbax-checkpoint-tmp-*` and renames it when complete, so a kill
during a write leaves the previous steps usable. The training process opens its checkpoints with
`repair=True`: it removes such unfinished writes and sets aside (renames to `<step>.incomplete`)
a step directory that lacks orbax's completion files (copied in part, say), saying so; resuming
then starts from the newest complete step.
"""

from __future__ import annotations

import os
import re
import shutil
from typing import Any

import jax
import orbax.checkpoint as ocp


class Checkpoints:
    """Latest-N and best-1 checkpoint managers for one work directory."""

    def __init__(self, workdir: str, keep: int = 3, repair: bool = False) -> None:
        root = os.path.abspath(os.path.join(workdir, "checkpoints"))
        item_names = ("state", "data")
        if repair and jax.process_index() == 0:
            for kind in ("latest", "best"):
                _set_aside_incomplete(os.path.join(root, kind), item_names)
        self.latest = ocp.CheckpointManager(
            os.path.join(root, "latest"),
            item_names=item_names,
            options=ocp.CheckpointManagerOptions(max_to_keep=keep, create=True),
        )
        self.best = ocp.CheckpointManager(
            os.path.join(root, "best"),
            item_names=item_names,
            options=ocp.CheckpointManagerOptions(
                max_to_keep=1, create=True, best_fn=lambda m: m["score"], best_mode="min"
            ),
        )

    def latest_step(self) -> int | None:
        return self.latest.latest_step()

    def save(self, step: int, state: Any, data_state: dict[str, Any] | None) -> None:
        self.latest.save(step, args=self._args(state, data_state))

    def save_best(self, step: int, state: Any, score: float) -> bool:
        """Saves when `score` beats the best so far; returns whether it did."""
        self.best.wait_until_finished()  # metrics of an async save are readable only after it
        best_step = self.best.best_step()
        if best_step is not None:
            best_metrics = self.best.metrics(best_step)
            if best_metrics is not None and score >= best_metrics["score"]:
                return False
        self.best.save(step, args=self._args(state, None), metrics={"score": float(score)})
        return True

    def restore(self, abstract_state: Any, step: int | None = None, best: bool = False
                ) -> tuple[Any, dict[str, Any] | None]:
        """Restores (state, data_state) from the given or newest step of `latest` (or `best`)."""
        manager = self.best if best else self.latest
        step = (manager.best_step() if best else manager.latest_step()) if step is None else step
        if step is None:
            kind = "best" if best else "latest"
            raise FileNotFoundError(f"no {kind} checkpoint in {manager.directory}")
        restored = manager.restore(
            step,
            args=ocp.args.Composite(
                state=ocp.args.StandardRestore(abstract_state), data=ocp.args.JsonRestore()
            ),
        )
        data_state = restored["data"] or None
        return restored["state"], data_state

    def restore_variables(self, best: bool = True) -> tuple[dict[str, Any], int]:
        """({"params", "batch_stats"}, step) of the best checkpoint (or the latest when there is no
        best one, or `best` is False), read without a template: evaluation, demo and benchmark
        need the model only, whatever optimiser trained it. Only those two subtrees are read
        (the optimiser moments, twice the size of the weights for Adam, stay on disk)."""
        manager = self.best if best and self.best.latest_step() is not None else self.latest
        step = manager.latest_step()
        if step is None:
            raise FileNotFoundError(f"no checkpoint in {os.path.dirname(str(manager.directory))}")
        # The managers bind "state" to the standard handler, which has no partial restore; the
        # pytree handler reads the same files.
        state_dir = os.path.join(str(manager.directory), str(step), "state")
        device = jax.sharding.SingleDeviceSharding(jax.local_devices()[0])
        with ocp.Checkpointer(ocp.PyTreeCheckpointHandler()) as reader:
            tree = reader.metadata(state_dir).item_metadata.tree
            wanted = {key: tree[key] for key in ("params", "batch_stats")}
            restore_args = jax.tree.map(lambda _: ocp.ArrayRestoreArgs(sharding=device), wanted)
            variables = reader.restore(state_dir, args=ocp.args.PyTreeRestore(
                item=wanted, restore_args=restore_args, partial_restore=True))
        return {"params": variables["params"], "batch_stats": variables["batch_stats"]}, int(step)

    def wait(self) -> None:
        self.latest.wait_until_finished()
        self.best.wait_until_finished()

    def close(self) -> None:
        self.latest.close()
        self.best.close()

    @staticmethod
    def _args(state: Any, data_state: dict[str, Any] | None) -> ocp.args.Composite:
        return ocp.args.Composite(
            state=ocp.args.StandardSave(state), data=ocp.args.JsonSave(data_state or {})
        )


_COMPLETE_MARKER = "_CHECKPOINT_METADATA"  # written by orbax when it finalises a step


def _set_aside_incomplete(directory: str, item_names: tuple[str, ...]) -> None:
    """Removes unfinished orbax writes in `directory` and renames step folders that lack the
    completion files to `<step>.incomplete` (orbax then ignores them), printing what it did."""
    if not os.path.isdir(directory):
        return
    for name in sorted(os.listdir(directory)):
        path = os.path.join(directory, name)
        if re.fullmatch(r"\d+\.orbax-checkpoint-tmp.*", name):
            shutil.rmtree(path, ignore_errors=True)
            print(f"checkpoints: removed {path}, a write the previous run did not finish", flush=True)
        elif name.isdigit() and os.path.isdir(path):
            complete = os.path.exists(os.path.join(path, _COMPLETE_MARKER)) and all(
                os.path.isdir(os.path.join(path, item)) for item in item_names)
            if not complete:
                target = f"{path}.incomplete"
                while os.path.exists(target):
                    target += "_"
                os.rename(path, target)
                print(f"checkpoints: step {name} in {directory} is incomplete (the run was killed while writing "
                      f"it?): moved to {target}; resuming from an older step", flush=True)
