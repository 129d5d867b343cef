"""The training skeleton that SFT and DPO share, run inside each Ray Train worker.

One worker = one rank. A recipe (`dpo_recipe.DPORecipe`, `sft_recipe.SFTRecipe`) sets up its
data and DeepSpeed engine with the helpers here (`join_group`, `prepare`) and fills in its
loss; `TrainingLoop` drives it through the steps every run takes:
  1. resume from the run's latest in-run checkpoint (`training.resume`), or else take the
     recipe's first measurements (DPO: after its reference pass) as history[0],
  2. epochs of shuffled micro-batches, one optimizer step per gradient accumulation boundary:
     its measurements averaged over ranks (its tokens summed, and their rate), logged by
     rank 0, a checkpoint every `checkpoint_every` steps,
  3. a final evaluation, the recipe's side files, the export of the trained model
     (`training.export`), metrics.json from rank 0 (uploaded when the output is remote), and a
     last barrier.
`Phases` times each of these (and the set-up's imports, process group, data, model load and
deepspeed.initialize) into metrics.json's `phases`; on a small model nearly all of a stage's
time is start-up, and this shows which part.
Imports of torch, deepspeed and ray.train stay inside the functions: the driver never needs them.
"""

from __future__ import annotations

import json
import math
import os
import random
import signal
import sys
import tempfile
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from temporal_ray.storage.progress import ProgressWriter, remove_progress
from temporal_ray.training import resume
from temporal_ray.training.resume import LoopState

if TYPE_CHECKING:
    import torch

    from temporal_ray.config import TrainingConfig


@dataclass
class Place:
    """Where this worker stands in the group."""

    rank: int
    world: int
    device: Any


@dataclass
class Setup:
    """What a recipe's set-up leaves for the loop: its place, its share of the data, its engine."""

    cfg: TrainingConfig
    place: Place
    tokenizer: Any
    engine: Any
    mine: list[int]
    """This rank's example indices."""
    micro_batches: list[list[int]]
    total_steps: int
    base: str
    """The local directory the weights were built from (an adapter applies to it)."""
    base_uri: str | None = None
    """Where an exported adapter says its base lives (None: `base`)."""

    @property
    def pad_id(self) -> int:
        return self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else 0


@dataclass
class Outcome:
    """What the loop measured, for the recipe's metrics.json."""

    history: list[dict[str, float]]
    """One entry per optimizer step (history[0], the start, left out)."""
    before: dict[str, float]
    after: dict[str, float]
    started: float
    """When set-up ended (time.time())."""
    reference_seconds: float
    """From set-up to the first training step (resume or reference pass, history[0])."""
    train_seconds: float

    def seconds(self) -> float:
        """Since set-up ended, until now."""
        return time.time() - self.started


class Phases:
    """Seconds per phase of one worker's run, in order: metrics.json's `phases`, so a slow
    stage shows where its time went (a restarted run's: its last attempt's)."""

    def __init__(self) -> None:
        self.started = time.time()
        """When the worker's loop began (the driver takes Ray Train's start-up from it)."""
        self.seconds: dict[str, float] = {}
        self._last = self.started

    def mark(self, name: str) -> None:
        """Phase `name` ended now: it took the time since the previous mark."""
        now = time.time()
        self.seconds[name] = round(self.seconds.get(name, 0.0) + now - self._last, 3)
        self._last = now


class Recipe(Protocol):
    """The steps that make a loop SFT or DPO; `TrainingLoop` calls them in order."""

    kind: str
    """sft or dpo: what the progress record (storage/progress.py) names."""

    def setup(self, phases: Phases) -> Setup:
        """Join the group, read and tokenize the data, build the engine (marking `phases`)."""

    def begin(self) -> dict[str, float]:
        """A fresh run's measurements before any update (history[0])."""

    def resume(self, state: LoopState, rank_state: dict) -> None:
        """Take back this rank's own state from a checkpoint."""

    def loss(self, number: int) -> tuple[torch.Tensor, Any]:
        """Micro-batch `number`'s loss, and what `measure` reads once the optimizer stepped."""

    def measure(self, outputs: Any) -> dict[str, float]: ...

    def micro_batch_tokens(self, number: int) -> int:
        """Input tokens of micro-batch `number` (no padding): a step's tokens/s counts them."""

    def history_entry(self, means: dict[str, float], step: int, epoch: int,
                      grad_norm: float, lr: float) -> dict[str, float]: ...

    def step_line(self, entry: dict[str, float], total_steps: int) -> str: ...

    def rank_state(self) -> dict:
        """What this rank's part of a checkpoint keeps beside the engine."""

    def evaluate(self) -> dict[str, float]: ...

    def save_extras(self, output_dir: str) -> None:
        """Files beside the model that every rank writes."""

    def metrics(self, outcome: Outcome) -> dict[str, Any]: ...


def join_group(cfg: TrainingConfig, phases: Phases) -> Place:
    """This worker's place; seeds torch and joins the process group."""
    import deepspeed
    import ray.train
    import torch
    import transformers  # noqa: F401  (its import is the phase's largest part)

    phases.mark("imports")

    context = ray.train.get_context()
    place = Place(context.get_world_rank(), context.get_world_size(),
                  ray.train.torch.get_device())
    torch.manual_seed(cfg.seed)
    deepspeed.init_distributed(dist_backend="nccl" if cfg.use_gpu else "gloo")
    phases.mark("process_group")
    return place


def prepare(cfg: TrainingConfig, place: Place, tokenizer: Any, lengths: list[int], base: str,
            phases: Phases, adapter: str | None = None, base_uri: str | None = None) -> Setup:
    """This rank's share of the examples in micro-batches, and the policy's engine built from
    `base` (with `adapter` loaded, if given)."""
    from temporal_ray.core.batching import bucket_by_length, random_micro_batches, shard_indices
    from temporal_ray.training.deepspeed_setup import build_engine, deepspeed_config, load_model

    per_rank_step = cfg.batch_size // place.world
    mine = shard_indices(len(lengths), place.rank, place.world, per_rank_step)
    # Examples of similar length share a micro-batch, so little compute goes to padding; or,
    # without buckets, every micro-batch is a random sample of the whole mix.
    micro_batches = (bucket_by_length(mine, lengths, cfg.micro_batch_size)
                     if cfg.length_buckets
                     else random_micro_batches(mine, cfg.micro_batch_size, cfg.seed + place.rank))
    total_steps = len(mine) // per_rank_step * cfg.epochs
    ds_config = deepspeed_config(cfg, place.world)
    phases.mark("data")
    model = load_model(base, cfg, ds_config, adapter)
    phases.mark("model_load")
    engine = build_engine(model, cfg, ds_config, total_steps)
    phases.mark("deepspeed_initialize")
    return Setup(cfg, place, tokenizer, engine, mine, micro_batches, total_steps, base,
                 base_uri)


def mean_over_ranks(values: dict[str, float], place: Place) -> dict[str, float]:
    """Each value averaged over the group, in one all-reduce."""
    import torch
    import torch.distributed as dist

    tensor = torch.tensor(list(values.values()), dtype=torch.float64, device=place.device)
    dist.all_reduce(tensor)
    return dict(zip(values, (tensor / place.world).tolist()))


def sum_over_ranks(values: dict[str, int], place: Place) -> dict[str, int]:
    """Each count summed over the group, in one all-reduce."""
    import torch
    import torch.distributed as dist

    tensor = torch.tensor(list(values.values()), dtype=torch.int64, device=place.device)
    dist.all_reduce(tensor)
    return dict(zip(values, (int(v) for v in tensor.tolist())))


class TrainingLoop:
    """Drives one recipe through a run; see the module docstring for the steps."""

    def __init__(self, recipe: Recipe, output_dir: str,
                 fail_once_at_step: int | None = None, kill_once_in_export: bool = False
                 ) -> None:
        self.recipe = recipe
        self.output_dir = output_dir
        self.fail_once_at_step = fail_once_at_step
        self.kill_once_in_export = kill_once_in_export
        self.built: Setup  # what the recipe set up, once `run` has called it
        self.phases = Phases()
        self.step_started = 0.0
        """When the current optimizer step's first micro-batch began (for tokens/s)."""
        self.progress: ProgressWriter | None = None
        """Rank 0's progress record in the output directory, from the first training step."""

    def run(self) -> None:
        import torch.distributed as dist

        self.built = self.recipe.setup(self.phases)
        self.phases.mark("setup")  # what the recipe's set-up did after its engine
        started = time.time()
        state = self.start()
        train_started = time.time()  # after the reference pass: throughput counts training only
        self.step_started = train_started
        if self.built.place.rank == 0:
            self.progress = ProgressWriter(self.output_dir, self.recipe.kind,
                                           self.built.total_steps, len(state.history) - 1)
        window: list[dict[str, float]] = []
        while state.epoch < self.built.cfg.epochs:
            window = self.epoch(state, window)
            state.epoch, state.position = state.epoch + 1, 0
        train_seconds = time.time() - train_started
        self.phases.mark("train")
        after = self.recipe.evaluate()
        self.phases.mark("evaluate")
        self.finish(Outcome(state.history[1:], state.history[0], after, started,
                            train_started - started, train_seconds))
        dist.barrier()

    def start(self) -> LoopState:
        """A restarted run takes its weights, place in the data and rank state from its
        checkpoint; a fresh one measures where it starts."""
        restored = resume.restore(self.built.engine, self.built.place.rank,
                                  frozen_base=self.built.cfg.lora.enabled)
        if restored is None:
            state = LoopState(history=[{"step": 0, **self.recipe.begin()}])
            self.phases.mark("begin")
            return state
        state, rank_state = restored
        self.recipe.resume(state, rank_state)
        self.phases.mark("resume")
        return state

    def epoch(self, state: LoopState,
              window: list[dict[str, float]]) -> list[dict[str, float]]:
        """The rest of epoch `state.epoch`; returns the measurements of an unfinished step."""
        engine = self.built.engine
        engine.train()
        order = list(range(len(self.built.micro_batches)))
        random.Random(self.built.cfg.seed + state.epoch).shuffle(order)
        while state.position < len(order):
            number = order[state.position]
            state.position += 1
            loss, outputs = self.recipe.loss(number)
            engine.backward(loss)
            boundary = engine.is_gradient_accumulation_boundary()
            lr = float(engine.get_lr()[0])  # the rate this step applies
            engine.step()
            window.append({**self.recipe.measure(outputs),
                           "tokens": float(self.recipe.micro_batch_tokens(number))})
            if boundary:
                self.end_step(state, window, lr)
                window = []
        return window

    def end_step(self, state: LoopState, window: list[dict[str, float]],
                 lr: float) -> None:
        """An optimizer step is done: record it, log it, checkpoint if due."""
        means = mean_over_ranks({k: mean([w[k] for w in window]) for k in window[0]},
                                self.built.place)
        # Every rank ran as many micro-batches: the mean times them all is the step's sum.
        tokens = round(means.pop("tokens") * len(window) * self.built.place.world)
        entry = self.recipe.history_entry(
            means, step=len(state.history), epoch=state.epoch,
            grad_norm=float(self.built.engine.get_global_grad_norm() or 0.0), lr=lr)
        now = time.time()
        entry.update(tokens=tokens, tokens_per_s=tokens / max(now - self.step_started, 1e-9))
        self.step_started = now
        state.history.append(entry)
        if self.progress is not None:  # rank 0
            log(self.recipe.step_line(entry, self.built.total_steps))  # shown with --verbose
            self.progress.step(entry["step"])
        if entry["step"] == self.fail_once_at_step:
            _fail_once(self.output_dir)
        every = self.built.cfg.checkpoint_every
        if every and entry["step"] % every == 0:
            self.phases.mark("train")
            self.checkpoint(state, entry["step"])
            self.phases.mark("checkpoints")
            self.step_started = time.time()  # a checkpoint's time is no step's

    def checkpoint(self, state: LoopState, step: int) -> None:
        # Saved as the place of the next micro-batch: after an epoch's last, the next epoch.
        at_end = state.position == len(self.built.micro_batches)
        saved = LoopState(state.epoch + at_end, 0 if at_end else state.position, state.history)
        resume.save(self.built.engine, saved, self.recipe.rank_state(), self.built.place.rank,
                    {"step": step}, frozen_base=self.built.cfg.lora.enabled)

    def finish(self, outcome: Outcome) -> None:
        """Side files, the exported model, and rank 0's metrics.json."""
        from temporal_ray.storage.files import upload_dir
        from temporal_ray.training.export import save_trained

        s, out = self.built, self.output_dir
        self.recipe.save_extras(out)
        self.phases.mark("extras")
        local_out = out if "://" not in out else tempfile.mkdtemp()
        save_trained(s.engine, s.tokenizer, local_out, s.base, s.cfg.zero_stage,
                     s.cfg.lora.enabled, s.place.rank, base_uri=s.base_uri,
                     after_weights=(lambda: _kill_once(out)) if self.kill_once_in_export
                     else None)
        self.phases.mark("export")
        if s.place.rank != 0:
            return
        remove_progress(out)  # the stage's directory is published as it is
        metrics = {**self.recipe.metrics(outcome), "phases": self.phases.seconds,
                   "worker_started": self.phases.started}
        with open(os.path.join(local_out, "metrics.json"), "w") as f:
            json.dump(metrics, f, indent=2)
        if local_out != out:
            upload_dir(local_out, out)


def _first_time(output_dir: str, marker: str) -> bool:
    """True the first time any rank asks for this marker in this output directory (an
    exclusive create: one rank, one attempt, however often Ray Train restarts the group)."""
    os.makedirs(output_dir, exist_ok=True)
    try:
        os.close(os.open(os.path.join(output_dir, marker), os.O_CREAT | os.O_EXCL))
    except FileExistsError:
        return False
    return True


def _fail_once(output_dir: str) -> None:
    """The test hook: raise the first time any rank gets here for this output directory."""
    if _first_time(output_dir, ".fault_injected"):
        raise RuntimeError(f"injected fault (test hook) in {output_dir}")


def _kill_once(output_dir: str) -> None:
    """The test hook of a crash mid-export: SIGKILL this worker's process the first time it
    gets here for this output directory (no exception, no clean-up: what a lost node does)."""
    if _first_time(output_dir, ".killed_in_export"):
        os.kill(os.getpid(), signal.SIGKILL)


def log(message: str) -> None:
    # Straight to stdout: Ray Train's patched print() would log each line twice here.
    sys.stdout.write(message + "\n")
    sys.stdout.flush()


def mean(values: list[float]) -> float:
    return sum(values) / len(values) if values else math.nan
