"""The stages of one iteration, each run once and published atomically under iter_<i>/<name>.

`IterationStages` is what a method's iteration function calls: generate, judge, pairs, dpo.
Each call returns the path of the finished stage's output; when that stage already finished in
an earlier attempt (same run directory), it returns at once without redoing the work. The
manifest of every stage carries the counts that the run summary prints.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from typing import Any

from temporal_ray.config import Config
from temporal_ray.core.judging import OVER_CONTEXT, judge_counts
from temporal_ray.core.pairs import PairSet, pair_counts
from temporal_ray.core.requests import derive_seed
from temporal_ray.core.roles import Role
from temporal_ray.engines.kept_pool import kept_pool_use, pool_calls, release_kept_pools
from temporal_ray.stages.dpo import train_dpo
from temporal_ray.stages.generate import generate_candidates
from temporal_ray.stages.judge import judge_candidates
from temporal_ray.storage.files import read_dataset, read_rows, resolve, write_rows
from temporal_ray.storage.run_dir import RunDir


class NoPairsError(RuntimeError):
    """A pair stage kept no pair: DPO would have nothing to learn from."""


class JudgeFailureError(RuntimeError):
    """Too few candidates got a valid score from the judge."""


class StopAfterStage(Exception):  # noqa: N818 (control flow, not an error)
    """Raised once the stage named by `until` has finished (`temporal-ray run --until`)."""


class IterationStages:
    def __init__(self, cfg: Config, run: RunDir, iteration: int, until: str | None = None):
        self.cfg = cfg
        self.run = run
        self.iteration = iteration
        self.until = until
        self.records: list[dict[str, Any]] = []

    def _stage(self, name: str, produce: Callable[[str], dict[str, Any]],
               **manifest: Any) -> str:
        stage = f"iter_{self.iteration}/{name}"
        result = self.run.run_stage(stage, produce,
                                    config_hash=self.cfg.hash(*self.cfg.run_sections()),
                                    **manifest)
        self.records.append({**result.manifest, "reused": result.reused})
        if stage == self.until:
            raise StopAfterStage(stage)
        return result.path

    def prompts(self, rows: list[dict[str, str]]) -> str:
        def produce(tmp: str) -> dict[str, Any]:
            write_rows(rows, f"{tmp}/data/prompts.parquet")
            return {"rows": len(rows)}
        return self._stage("prompts", produce, kind="prompts") + "/data"

    def generate(self, role: Role, model: str, prompts: str) -> str:
        """Sample K responses per prompt from `model` playing `role`."""
        return self.generate_together({role: model}, prompts)[0]

    def generate_together(self, models: dict[Role, str], prompts: str) -> list[str]:
        """Sample K responses per prompt from each role's model; one stage per role. With
        LoRA on one base, the roles still to do share one pass of one pool (the base loaded
        once, each request naming its adapter) when their pools are configured alike."""
        generation = self.cfg.generation.model_copy(
            update={"seed": derive_seed(self.cfg.generation.seed, self.iteration)})
        lora_rank = self.one_base_lora_rank()
        todo = [role for role in models
                if self.run.finished(f"iter_{self.iteration}/candidates_{role.value}") is None]
        engines = {role: self.cfg.engine_for(role) for role in models}
        shared, shared_seconds, shared_pool = None, None, None
        if lora_rank is not None and len(todo) > 1 and \
                all(engines[role] == engines[todo[0]] for role in todo):
            shared = self.run.uri_of(self.run.path(f"iter_{self.iteration}", ".shared_pass"))
            self.run.fs.delete_dir_contents(self.run.path(f"iter_{self.iteration}",
                                                          ".shared_pass"), missing_dir_ok=True)
            started, kept_before = time.time(), pool_calls()
            generate_candidates(prompts, {role.value: models[role] for role in todo},
                                generation, engines[todo[0]], shared, lora_rank)
            shared_seconds = round(time.time() - started, 2)
            shared_pool = kept_pool_use(kept_before)

        def stage(role: Role) -> str:
            def produce(tmp: str) -> dict[str, Any]:
                kept = shared_pool
                if shared is not None:  # this role's rows of the shared pass
                    from ray.data.expressions import col

                    read_dataset(shared).filter(expr=col("role") == role.value) \
                        .write_parquet(f"{tmp}/data")
                else:
                    kept_before = pool_calls()
                    generate_candidates(prompts, {role.value: models[role]}, generation,
                                        engines[role], f"{tmp}/data", lora_rank)
                    kept = kept_pool_use(kept_before)
                rows = read_rows(f"{tmp}/data", ["response_tokens"])
                tokens = [r["response_tokens"] for r in rows]
                return {"rows": len(rows), "mean_response_tokens": _mean(tokens),
                        "kept_pool": kept}
            return self._stage(f"candidates_{role.value}", produce, kind="generate",
                               role=role.value, model=models[role],
                               actors=engines[role].pool_size,
                               shared_pass=[r.value for r in todo] if shared else None,
                               shared_pass_seconds=shared_seconds) + "/data"

        paths = [stage(role) for role in models]
        if shared is not None:
            self.run.fs.delete_dir(self.run.path(f"iter_{self.iteration}", ".shared_pass"))
        return paths

    def one_base_lora_rank(self) -> int | None:
        """The adapters' rank when every model of the run is M0 plus an adapter, else None."""
        lora = self.cfg.dpo.lora
        return lora.rank if lora.enabled and lora.base == "initial" else None

    def judge(self, name: str, candidates: list[str], judge_model: str) -> str:
        """Score candidates with the configured judge: `judge_model` (the present model), a
        fixed judge model or endpoint when judge.model is set, or a rule."""
        judge = self.cfg.judge
        judge_model = judge.model or judge_model
        engine = judge.engine or self.cfg.engine
        seed = derive_seed(self.cfg.generation.seed, self.iteration, name)

        def produce(tmp: str) -> dict[str, Any]:
            kept_before = pool_calls()
            judge_candidates(candidates, judge_model, judge, engine, seed, f"{tmp}/data",
                             self.one_base_lora_rank())
            return {**judge_counts(read_rows(f"{tmp}/data"),
                                   judge.score_pattern, judge.min_score, judge.max_score),
                    "kept_pool": kept_pool_use(kept_before)}
        path = self._stage(name, produce, kind="judge", judge=judge.kind,
                           judge_model=judge_model) + "/data"
        check_judged_share(self.records[-1], path, judge.min_valid_share)
        return path

    def pairs(self, name: str, build: Callable[[], PairSet]) -> str:
        """Build DPO pairs with a strategy from pairs.py and store them."""
        def produce(tmp: str) -> dict[str, Any]:
            result = build()
            if not result.pairs:
                raise NoPairsError(
                    f"iteration {self.iteration}, {name}: no pair kept "
                    f"(dropped: {dict(result.dropped) or 'no scored candidates'}). "
                    "Check the judge: with too few distinct scores every prompt is a tie.")
            write_rows(result.pairs, f"{tmp}/data/pairs.parquet")
            return pair_counts(result)
        return self._stage(name, produce, kind="pairs") + "/data/pairs.parquet"

    def dpo(self, name: str, pairs: str, start_model: str) -> str:
        """DPO-train `start_model` (also the reference) on `pairs`; returns the new model."""
        # The Ray Train run keeps the checkpoints a crashed attempt resumes from; its name
        # follows the exact pairs file, so redone pairs never resume a stale run.
        fs, pairs_file = resolve(pairs)
        pairs_id = derive_seed(pairs, fs.get_file_info(pairs_file).mtime_ns)
        train_name = f"iter_{self.iteration}_{name}_{pairs_id:08x}"

        def produce(tmp: str) -> dict[str, Any]:
            release_kept_pools()  # the DPO workers need the CPUs/GPUs kept pools hold
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
    rows = read_rows(path, ["prompt_id", "prompt", "role", "sample_index", "response", "score"])
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


def _mean(values: list[float]) -> float:
    return statistics.fmean(values) if values else float("nan")
