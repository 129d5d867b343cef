"""The llm judge through a real Ray Data actor pool: J sampled judgements per candidate,
grouped back to one scored row each; a candidate too long for the judge's context is kept,
unscored and flagged. The tiny random model cannot follow the rubric, so this
checks the plumbing and the accounting, not the verdicts."""

import pytest

from temporal_ray.config import EngineConfig, JudgeConfig
from temporal_ray.core.judging import parse_judgement
from temporal_ray.engines.pool import EnginePool
from temporal_ray.miniature.recipe import TOY_JUDGE_TEMPLATE
from temporal_ray.stages.judge import judge_candidates
from temporal_ray.storage.files import read_rows, write_rows

pytestmark = pytest.mark.slow


def test_llm_judge_scores_every_candidate_once(tiny_model, ray_cluster, tmp_path):
    candidates = [{"prompt_id": f"p{i}", "prompt": "Name a fruit.", "system": "", "role": role,
                   "sample_index": s, "response": f"A banana, answer {i}.", "prompt_tokens": 5,
                   "response_tokens": 4}
                  for i in range(3) for role in ("present", "past") for s in range(2)]
    # A response too long for the judge's context (512 tokens) is not sent, and is counted.
    long = {**candidates[0], "prompt_id": "p_long", "response": "banana " * 600}
    candidates.append(long)
    write_rows(candidates, str(tmp_path / "candidates" / "c.parquet"))
    # The short judge prompt: the additive rubric alone is longer than the tiny model's
    # 512-token context, so with it every request would be (rightly) left unsent.
    judge = JudgeConfig(kind="llm", samples=2, max_new_tokens=8,
                        prompt_template=TOY_JUDGE_TEMPLATE)
    counts = judge_candidates([str(tmp_path / "candidates")], tiny_model, judge,
                              EnginePool(EngineConfig(actors=2, batch_size=4)), seed=0,
                              out_dir=str(tmp_path / "scores"))
    # The judge's tokens, as the engine counted them: 12 candidates x 2 judgements sent (the
    # long one was not), each a rubric prompt and at most max_new_tokens generated.
    sent = (len(candidates) - 1) * judge.samples
    assert sent * 20 < counts["judge_prompt_tokens"] < sent * 512
    assert 0 < counts["judge_generated_tokens"] <= sent * judge.max_new_tokens

    rows = read_rows(str(tmp_path / "scores"))
    keys = sorted((r["role"], r["prompt_id"], r["sample_index"]) for r in rows)
    assert keys == sorted((c["role"], c["prompt_id"], c["sample_index"]) for c in candidates)
    (too_long,) = [r for r in rows if r["prompt_id"] == "p_long"]
    assert too_long["over_context"] and too_long["score"] is None
    assert too_long["judgements"] == [] and too_long["response"] == long["response"]
    rows = [r for r in rows if r["prompt_id"] != "p_long"]
    for row in rows:
        assert row["over_context"] is False
        assert len(row["judgements"]) == 2
        parsed = [parse_judgement(t, judge.score_pattern).score for t in row["judgements"]]
        assert row["judge_scores"] == parsed
        assert row["valid_judgements"] == sum(s is not None for s in parsed)
        valid = [s for s in parsed if s is not None]
        assert row["score"] == (sum(valid) / len(valid) if valid else None)


def test_truncate_shows_the_judge_the_head_of_a_long_response(tiny_model, ray_cluster,
                                                              tmp_path):
    """judge.overlong=truncate: the too-long candidate is judged on its response cut to fit
    (flagged); its own response in the stage stays whole; a short one is untouched."""
    long = {"prompt_id": "p_long", "prompt": "Name a fruit.", "system": "", "role": "present",
            "sample_index": 0, "response": "banana " * 600, "prompt_tokens": 5,
            "response_tokens": 600}
    short = {**long, "prompt_id": "p_short", "response": "A banana."}
    write_rows([long, short], str(tmp_path / "candidates" / "c.parquet"))
    judge = JudgeConfig(kind="llm", samples=1, max_new_tokens=8, overlong="truncate",
                        prompt_template=TOY_JUDGE_TEMPLATE)
    judge_candidates([str(tmp_path / "candidates")], tiny_model, judge,
                     EnginePool(EngineConfig(actors=1, batch_size=4)), seed=0,
                     out_dir=str(tmp_path / "scores"))
    rows = {r["prompt_id"]: r for r in read_rows(str(tmp_path / "scores"))}
    assert rows["p_long"]["judge_truncated"] and not rows["p_long"]["over_context"]
    assert len(rows["p_long"]["judgements"]) == 1
    assert rows["p_long"]["response"] == long["response"]
    assert not rows["p_short"]["judge_truncated"]
