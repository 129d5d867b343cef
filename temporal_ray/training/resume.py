"""Checkpoints inside one training run, so a killed worker (or driver) costs minutes, not the run.

Every `checkpoint_every` optimizer steps each rank writes its DeepSpeed shard (model, optimizer,
scheduler), its own extra state (DPO: its reference log-probs) and the loop position into a
local directory and reports it
with `ray.train.report`; Ray Train merges the ranks' files into one checkpoint in the run's
storage. After a restart (FailureConfig, or the same command run again), `restore` loads the
latest one and the loop continues from the next micro-batch.
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass
class LoopState:
    """Where the training loop is: the next micro-batch to run, and what it has measured."""

    epoch: int = 0
    position: int = 0
    history: list[dict[str, float]] = field(default_factory=list)


def save(engine: Any, state: LoopState, rank_state: dict, rank: int, metrics: dict,
         frozen_base: bool = False) -> None:
    """Write this rank's part of a checkpoint and report it (a barrier over all ranks).
    With a frozen base (LoRA) only the trainable weights are saved: the base reloads as is."""
    import ray.train
    import torch

    with tempfile.TemporaryDirectory() as directory:
        engine.save_checkpoint(directory, tag="state", client_state={"loop": asdict(state)},
                               exclude_frozen_parameters=frozen_base)
        torch.save(rank_state, os.path.join(directory, f"rank{rank}.pt"))
        ray.train.report(metrics, checkpoint=ray.train.Checkpoint.from_directory(directory))


def restore(engine: Any, rank: int, frozen_base: bool = False) -> tuple[LoopState, dict] | None:
    """Load the latest checkpoint of this run, if there is one."""
    import ray.train
    import torch

    checkpoint = ray.train.get_checkpoint()
    if checkpoint is None:
        return None
    with checkpoint.as_directory() as directory:
        _, client_state = engine.load_checkpoint(directory, tag="state",
                                                 load_module_strict=not frozen_base)
        rank_state = torch.load(os.path.join(directory, f"rank{rank}.pt"))
    return LoopState(**client_state["loop"]), rank_state
