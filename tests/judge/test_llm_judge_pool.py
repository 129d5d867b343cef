"""The llm judge through a real Ray Data actor pool: J sampled judgements per candidate,
grouped back to one scored row each. The tiny random model cannot follow the rubric, so this
checks the plumbing and the accounting, not the verdicts."""

import pytest

from temporal_ray.config import EngineConfig, JudgeConfig
from temporal_ray.judge.parse import parse_judgement
from temporal_ray.judge.stage import judge_candidates
from temporal_ray.storage import read_rows, write_rows

pytestmark = pytest.mark.slow


def test_llm_judge_scores_every_candidate_once(tiny_model, ray_cluster, tmp_path):
    candidates = [{"prompt_id": f"p{i}", "prompt": "Name a fruit.", "role": role,
                   "sample_index": s, "response": f"A banana, answer {i}.", "prompt_tokens": 5,
                   "response_tokens": 4}
                  for i in range(3) for role in ("present", "past") for s in range(2)]
    write_rows(candidates, str(tmp_path / "candidates" / "c.parquet"))
    judge = JudgeConfig(kind="llm", samples=2, max_new_tokens=8)
    judge_candidates([str(tmp_path / "candidates")], tiny_model, judge,
                     EngineConfig(actors=2, batch_size=4), seed=0,
                     out_dir=str(tmp_path / "scores"))

    rows = read_rows(str(tmp_path / "scores"))
    keys = sorted((r["role"], r["prompt_id"], r["sample_index"]) for r in rows)
    assert keys == sorted((c["role"], c["prompt_id"], c["sample_index"]) for c in candidates)
    for row in rows:
        assert len(row["judgements"]) == 2
        parsed = [parse_judgement(t, judge.score_pattern).score for t in row["judgements"]]
        assert row["judge_scores"] == parsed
        assert row["valid_judgements"] == sum(s is not None for s in parsed)
        valid = [s for s in parsed if s is not None]
        assert row["score"] == (sum(valid) / len(valid) if valid else None)
