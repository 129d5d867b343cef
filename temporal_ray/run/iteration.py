"""The stages of one iteration, each run once and published atomically under iter_<i>/<name>.

`IterationStages` is what a method's iteration function calls: generate, judge, pairs, dpo.
Each call returns the path of the finished stage's output; when that stage already finished in
an earlier attempt (same run directory), it returns at once without redoing the work. The
manifest of every stage carries the counts of the line the stage prints as it finishes.
"""

from __future__ import annotations

import gc
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from pyarrow.fs import FileType

from temporal_ray.config import Config, EngineConfig, GenerationConfig
from temporal_ray.core.judging import OVER_CONTEXT
from temporal_ray.core.pairs import (
    PairSet,
    PhaseOne,
    pair_counts,
    phase_one_from,
    selection_rows,
)
from temporal_ray.core.requests import derive_seed
from temporal_ray.core.roles import Role
from temporal_ray.core.rows import PAIRING_COLUMNS
from temporal_ray.engines.kept_pool import KeptPools
from temporal_ray.engines.pool import EnginePool
from temporal_ray.run.cluster_nodes import NodeTimeline
from temporal_ray.run.report import format_stage
from temporal_ray.stages.dpo import train_dpo
from temporal_ray.stages.generate import (
    can_share_a_pass,
    candidate_counts,
    generate_candidates,
    role_rows,
)
from temporal_ray.stages.judge import judge_candidates
from temporal_ray.storage.files import read_rows, resolve, write_rows
from temporal_ray.storage.run_dir import RunDir
from temporal_ray.storage.write_failure import stop_on_write_failure
from temporal_ray.terminal import echo
from temporal_ray.tracking import Tracker
from temporal_ray.training.launch import job_resources


class NoPairsError(RuntimeError):
    """A pair stage kept no pair: DPO would have nothing to learn from."""


class JudgeFailureError(RuntimeError):
    """Too few candidates got a valid score from the judge."""


class StopAfterStage(Exception):  # noqa: N818 (control flow, not an error)
    """Raised once the stage named by `until` has finished (`temporal-ray run --until`)."""


PROMPTS = "prompts"
"""The first stage of every iteration: its prompt chunk (the driver's, before the method's)."""
SELECTIONS = "selections.parquet"
"""Beside a phase-1 pair stage's data: each prompt's selection, which phase 2 starts from."""
SHARED_PASS = ".shared_pass"
"""Scratch directory of an iteration: the candidates of a pass that several roles share."""


@dataclass(frozen=True)
class SharedPass:
    path: str
    seconds: float
    kept_pool: str | None
    """Whether the pass ran on a kept pool it started or found (`KeptPools.use_since`)."""


class IterationStages:
    """The stages of iteration `iteration` of a run: what a method's iteration calls."""

    def __init__(self, cfg: Config, run: RunDir, iteration: int, pools: KeptPools,
                 until: str | None = None, tracker: Tracker | None = None,
                 nodes: NodeTimeline | None = None):
        self.cfg = cfg
        self.run = run
        self.iteration = iteration
        self.pools = pools
        """The driver's kept pools (engine.keep_alive), released before each DPO stage."""
        self.until = until
        self.tracker = tracker or Tracker.off()
        """Every stage, finished now or before, is logged as it is passed (once: a stage
        logged before is not logged again)."""
        self.nodes = nodes or NodeTimeline()
        """The run's node counts, sampled as each stage ends (an autoscaled cluster's nodes
        come and go with the stages)."""
        self.records: list[dict[str, Any]] = []

    def _stage(self, name: str, produce: Callable[[str], dict[str, Any]],
               **manifest: Any) -> str:
        stage = f"iter_{self.iteration}/{name}"
        result = self.run.run_stage(stage, produce,
                                    config_hash=self.cfg.hash(*self.cfg.run_sections()),
                                    **manifest)
        if not result.reused:
            # A finished stage's Ray Data datasets hold their blocks in reference cycles, which
            # only a full collection frees; the driver may not make one for the whole of DPO.
            # A node holding a block's primary copy is never idle, so an autoscaler would keep
            # every generation node up through training.
            gc.collect()
        self.records.append({**result.manifest, "reused": result.reused})
        echo(format_stage(self.records[-1]))
        self.tracker.log_stage(stage, result.manifest, result.path)
        self.nodes.sample(stage)
        if stage == self.until:
            raise StopAfterStage(stage)
        return result.path

    def pool_for(self, engine: EngineConfig) -> EnginePool:
        """A pool on `engine`; with LoRA on one base (every model of the run is M0 plus an
        adapter) it serves the adapters too."""
        lora = self.cfg.dpo.lora
        one_base = lora.enabled and lora.base == "initial"
        return EnginePool(engine, lora.rank if one_base else None, self.pools)

    def prompts(self, rows: list[dict[str, str]]) -> str:
        def produce(tmp: str) -> dict[str, Any]:
            write_rows(rows, f"{tmp}/data/prompts.parquet")
            return {"rows": len(rows)}
        return self._stage(PROMPTS, produce, kind="prompts") + "/data"

    def generate(self, role: Role, model: str, prompts: str) -> str:
        """Sample K responses per prompt from `model` playing `role`."""
        return self.generate_together({role: model}, prompts)[0]

    def generate_together(self, models: dict[Role, str], prompts: str) -> list[str]:
        """Sample K responses per prompt from each role's model; one stage per role. With
        LoRA on one base, the roles still to do share one pass of one pool (the base loaded
        once, each request naming its adapter) when their pools are configured alike."""
        generation = self.cfg.generation.model_copy(
            update={"seed": derive_seed(self.cfg.generation.seed, self.iteration)})
        pools = {role: self.pool_for(self.cfg.engine_for(role)) for role in models}
        todo = [role for role in models
                if self.run.reusable(f"iter_{self.iteration}/candidates_{role.value}") is None]
        shared = None
        if can_share_a_pass({role.value: pools[role] for role in todo}):
            shared = self._shared_pass({role: models[role] for role in todo}, prompts,
                                       generation, pools[todo[0]])

        def stage(role: Role) -> str:
            def produce(tmp: str) -> dict[str, Any]:
                if shared is not None:
                    role_rows(shared.path, role.value, f"{tmp}/data")
                    kept = shared.kept_pool
                else:
                    before = self.pools.calls()
                    generate_candidates(prompts, {role.value: models[role]}, generation,
                                        pools[role], f"{tmp}/data")
                    kept = self.pools.use_since(before)
                return {**candidate_counts(f"{tmp}/data"), "kept_pool": kept}
            return self._stage(f"candidates_{role.value}", produce, kind="generate",
                               role=role.value, model=models[role],
                               actors=pools[role].engine.pool_size,
                               shared_pass=[r.value for r in todo] if shared else None,
                               shared_pass_seconds=shared.seconds if shared else None) + "/data"

        paths = [stage(role) for role in models]
        if shared is not None:
            self.run.fs.delete_dir(self.run.path(f"iter_{self.iteration}", SHARED_PASS))
        return paths

    def _shared_pass(self, models: dict[Role, str], prompts: str,
                     generation: GenerationConfig, pool: EnginePool) -> SharedPass:
        """Every role's candidates in one pass, into a scratch directory of the iteration
        that each role's stage then takes its rows from."""
        scratch = self.run.path(f"iter_{self.iteration}", SHARED_PASS)
        self.run.fs.delete_dir_contents(scratch, missing_dir_ok=True)
        started, before = time.time(), self.pools.calls()
        try:
            generate_candidates(prompts, {role.value: model for role, model in models.items()},
                                generation, pool, self.run.uri_of(scratch))
        except Exception as err:
            roles = ", ".join(role.value for role in models)
            stop_on_write_failure(err, f"iteration {self.iteration}, generate ({roles} in one "
                                  "pass)", self.run.uri_of(scratch),
                                  lambda: self.run.fs.delete_dir_contents(scratch))
            raise
        return SharedPass(self.run.uri_of(scratch), round(time.time() - started, 2),
                          self.pools.use_since(before))

    def judge(self, name: str, candidates: list[str], judge_model: str) -> str:
        """Score candidates with the configured judge: `judge_model` (the present model), a
        fixed judge model or endpoint when judge.model is set, or a rule."""
        judge = self.cfg.judge
        judge_model = judge.model or judge_model
        engine = judge.engine or self.cfg.engine
        seed = derive_seed(self.cfg.generation.seed, self.iteration, name)

        def produce(tmp: str) -> dict[str, Any]:
            before = self.pools.calls()
            counts = judge_candidates(candidates, judge_model, judge, self.pool_for(engine),
                                      seed, f"{tmp}/data")
            return {**counts, "kept_pool": self.pools.use_since(before)}
        path = self._stage(name, produce, kind="judge", judge=judge.kind,
                           judge_model=judge_model) + "/data"
        check_judged_share(self.records[-1], path, judge.min_valid_share)
        return path

    def pairs(self, name: str, build: Callable[[], PairSet | PhaseOne]) -> str:
        """Build DPO pairs with a strategy from core/pairs.py and store them; phase 1 of the
        temporal method also stores its per-prompt selections, which phase 2 starts from."""
        def produce(tmp: str) -> dict[str, Any]:
            built = build()
            result = built.d1 if isinstance(built, PhaseOne) else built
            if not result.pairs:
                raise NoPairsError(
                    f"iteration {self.iteration}, {name}: no pair kept "
                    f"(dropped: {dict(result.dropped) or 'no scored candidates'}). "
                    "Check the judge: with too few distinct scores every prompt is a tie.")
            write_rows(result.pairs, f"{tmp}/data/pairs.parquet")
            if isinstance(built, PhaseOne):
                write_rows(selection_rows(built), f"{tmp}/{SELECTIONS}")
            return pair_counts(result)
        return self._stage(name, produce, kind="pairs") + "/data/pairs.parquet"

    def phase_one(self, name: str) -> PhaseOne:
        """Phase 1 as its finished pair stage `name` stored it."""
        stage = self.run.finished(f"iter_{self.iteration}/{name}")
        fs, path = resolve(f"{stage.path}/{SELECTIONS}")
        if fs.get_file_info(path).type == FileType.NotFound:
            raise FileNotFoundError(
                f"{stage.path} holds no {SELECTIONS} (written by an earlier version): redo "
                f"the stage with `temporal-ray run CONFIG --redo iter_{self.iteration}/{name}`")
        return phase_one_from(read_rows(f"{stage.path}/{SELECTIONS}"),
                              stage.manifest["dropped"])

    def dpo(self, name: str, pairs: str, start_model: str) -> str:
        """DPO-train `start_model` (also the reference) on `pairs`; returns the new model."""
        # The Ray Train run keeps the checkpoints a crashed attempt resumes from; its name
        # follows the exact pairs file, so redone pairs never resume a stale run.
        fs, pairs_file = resolve(pairs)
        pairs_id = derive_seed(pairs, fs.get_file_info(pairs_file).mtime_ns)
        train_name = f"iter_{self.iteration}_{name}_{pairs_id:08x}"

        def produce(tmp: str) -> dict[str, Any]:
            # The kept pool stays for the next iteration if the DPO workers fit beside it.
            self.pools.make_room(job_resources(self.cfg.dpo))
            metrics = train_dpo(pairs, start_model, tmp, self.cfg.dpo,
                                storage_path=self.run.uri_of(self.run.path("ray_train")),
                                name=train_name)
            return {k: v for k, v in metrics.items() if k != "history"}
        path = self._stage(name, produce, kind="dpo", start_model=start_model)
        # The model is published: its checkpoints (optimizer states included) can go.
        self.run.fs.delete_dir_contents(self.run.path("ray_train", train_name),
                                        missing_dir_ok=True)
        return path


def read_scored(path: str, role: Role | None = None) -> list[dict[str, Any]]:
    """Scored candidate rows of a judge stage, optionally of one role."""
    rows = read_rows(path, PAIRING_COLUMNS)
    return [r for r in rows if role is None or r["role"] == role.value]


def check_judged_share(record: dict[str, Any], path: str, min_share: float) -> None:
    """Stop loudly when the judge scored too few candidates of some role, with examples."""
    for role, counts in record["roles"].items():
        share = counts["scored"] / counts["candidates"] if counts["candidates"] else 0.0
        if share >= min_share:
            continue
        unscored = [r for r in read_rows(path, ["role", "score", "judgements"])
                    if r["role"] == role and r["score"] is None][:3]
        examples = "\n".join(f"  ...{(r['judgements'] or [''])[0][-200:]!r}" for r in unscored)
        raise JudgeFailureError(
            f"{record['stage']}: the judge scored {counts['scored']} of {counts['candidates']} "
            f"{role} candidates ({share:.0%} < judge.min_valid_share {min_share:.0%}); "
            f"{counts['no_score']} judgements had no score, {counts['out_of_range']} were out "
            f"of range, {counts.get(OVER_CONTEXT, 0)} candidates were too long for the judge's "
            f"context. Examples of judge outputs:\n{examples}\nCheck judge.score_pattern, "
            "judge.max_new_tokens, generation.max_new_tokens against the judge's context, and "
            "whether M0 was trained on judge (EFT) data.")
