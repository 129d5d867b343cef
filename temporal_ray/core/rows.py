"""The rows that flow between stages, each contract written once.

    prompts -> PromptRow -> (engine) -> CandidateRow -> (judge) -> ScoredRow -> PairRow

Stages read and write them as Parquet rows (plain dicts at run time); these TypedDicts name the
columns for readers and type checkers, and the column lists below are derived from them, so a
stage that picks a row's own columns uses the same list as the stage that wrote them. Pure.
"""

from __future__ import annotations

from typing import TypedDict


class PromptRow(TypedDict):
    prompt_id: str
    prompt: str
    system: str
    """The system prompt the prompt came with ("" for none): every chat built from the
    prompt starts with it (`chat_messages`)."""


class CandidateRow(TypedDict):
    """One sampled response: (prompt, role, sample) is its key."""

    prompt_id: str
    prompt: str
    system: str
    role: str
    """Whose sample: past, present or future (core/roles.py)."""
    sample_index: int
    response: str
    prompt_tokens: int
    response_tokens: int


class ScoredRow(CandidateRow, total=False):
    """A candidate with the judge's verdict (stages/judge.py)."""

    score: float | None
    """The mean of the valid judgements; None when no judgement gave one."""
    judgements: list[str]
    """The raw judge texts, J per candidate, in judge order (none for a rule judge)."""
    judge_scores: list[float | None]
    valid_judgements: int
    over_context: bool
    """The judge prompt did not fit the judge's context: not sent, so no score."""
    judge_truncated: bool
    """The judge saw the response cut to fit its context (judge.overlong 'truncate')."""


class PairRow(TypedDict):
    """One DPO pair (core/pairs.py)."""

    prompt_id: str
    prompt: str
    system: str
    chosen: str
    rejected: str
    chosen_score: float
    rejected_score: float
    chosen_role: str
    rejected_role: str


CANDIDATE_COLUMNS: list[str] = list(CandidateRow.__annotations__)
CANDIDATE_KEY: list[str] = ["role", "prompt_id", "sample_index"]
"""What identifies a candidate: a judge's J judgements of it share this key."""
PAIRING_COLUMNS: list[str] = ["prompt_id", "prompt", "system", "role", "sample_index",
                              "response", "score"]
"""What the pair strategies read of a scored candidate."""
PAIR_COLUMNS: list[str] = list(PairRow.__annotations__)
ENGINE_COLUMNS: list[str] = ["generated_text", "num_input_tokens", "num_generated_tokens"]
"""What every engine adds to a request row (Ray Data LLM's vLLM stage writes these)."""


def chat_messages(prompt: str, system: str = "") -> list[dict[str, str]]:
    """The conversation a prompt opens: its system prompt, if any, then the user's turn. The
    engines, the DPO and SFT tokenisers and the feature encoder all build it here, so a model
    sees a prompt the same way wherever it meets it."""
    user = [{"role": "user", "content": prompt}]
    return [{"role": "system", "content": system}, *user] if system else user
