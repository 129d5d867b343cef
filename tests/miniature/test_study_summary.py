"""The study's summary over seeds, on three hand-made seeds (conftest.fake_seed)."""

from __future__ import annotations

import json

import pytest

from temporal_ray.analysis.bootstrap import Interval
from temporal_ray.miniature.study_summary import summarise, verdict


def _bracketed(interval: dict) -> None:
    assert interval["low"] <= interval["mean"] <= interval["high"]


def test_checkpoints_have_means_and_ordered_intervals(seed_results):
    summary = summarise(seed_results, [0, 1, 2])
    rows = {(r["method"], r["index"]): r for r in summary["checkpoints"]}
    # M0 once, then each method's checkpoints.
    assert list(rows) == [("m0", 0), *(("self_rewarding", k) for k in range(1, 5)),
                          ("temporal", 1), ("temporal", 2)]
    m0 = rows["m0", 0]["metrics"]
    assert m0["accuracy"]["mean"] == pytest.approx(0.3) and m0["accuracy"]["n"] == 3
    assert rows["temporal", 2]["compute"] == rows["self_rewarding", 4]["compute"] == 4
    assert rows["temporal", 2]["metrics"]["accuracy"]["mean"] == pytest.approx(0.6)
    assert rows["temporal", 2]["metrics"]["judge_agreement"]["mean"] == pytest.approx(0.6)
    for row in summary["checkpoints"]:
        assert set(row["metrics"]) == {"accuracy", "judge_agreement", "judge_single_agreement",
                                       "judge_spearman", "judge_auc"}
        for interval in row["metrics"].values():
            _bracketed(interval)


def test_iterations_have_every_pair_measurement(seed_results):
    summary = summarise(seed_results, [0, 1, 2])
    rows = {(r["method"], r["iteration"]): r["metrics"] for r in summary["iterations"]}
    assert len(rows) == 6
    last = rows["self_rewarding", 3]
    assert last["gap"]["mean"] == pytest.approx(0.9)  # 1 - 0.1 s over s = 0, 1, 2
    assert last["cosine"]["mean"] == pytest.approx(0.65)
    assert last["dpo_reward_margin"]["mean"] == pytest.approx(0.09)
    assert last["dpo_grad_norm"] == {"mean": 4.0, "low": 4.0, "high": 4.0, "n": 3}
    for metrics in rows.values():
        for interval in metrics.values():
            _bracketed(interval)


def test_paired_comparison_and_claims(seed_results):
    summary = summarise(seed_results, [0, 1, 2])
    comparison = summary["comparison"]
    assert (comparison["temporal"], comparison["self_rewarding"]) == (4, 4)
    accuracy = comparison["metrics"]["accuracy"]  # 0.1 + 0.1 s: 0.1, 0.2, 0.3
    assert accuracy["mean"] == pytest.approx(0.2)
    assert 0.1 - 1e-9 <= accuracy["low"] <= 0.2 <= accuracy["high"] <= 0.3 + 1e-9
    assert comparison["metrics"]["judge_agreement"]["mean"] == pytest.approx(0.6 - 0.42)
    changes = summary["changes"]
    assert changes["self_rewarding"]["gap"]["mean"] == pytest.approx(-1.1)
    assert changes["self_rewarding"]["cosine"]["mean"] == pytest.approx(0.15)
    assert changes["temporal"]["gap"]["mean"] == pytest.approx(0.0)
    claims = {c["claim"]: c for c in summary["claims"]}
    assert [claims[k]["verdict"] for k in "abc"] == ["reproduced"] * 3
    # (b): Temporal keeps all its gap, Self-Rewarding (1 - 0.1 s) / 2 of it.
    assert claims["b"]["evidence"][0]["mean"] == pytest.approx(0.55)


def test_one_seed_is_inconclusive_and_the_summary_is_json(seed_results):
    summary = summarise(seed_results[:1], [0])
    assert {c["verdict"] for c in summary["claims"]} == {"inconclusive"}
    m0 = summary["checkpoints"][0]["metrics"]["accuracy"]
    assert m0 == {"mean": pytest.approx(0.2), "low": None, "high": None, "n": 1}
    json.dumps(summary, allow_nan=False)


def test_compute_means_read_numeric_keys_only_and_are_optional(seed_results):
    compute = summarise(seed_results, [0, 1, 2])["compute"]
    assert compute["self_rewarding"]["generated_tokens"]["mean"] == pytest.approx(101)
    assert "note" not in compute["self_rewarding"]
    for results in seed_results:
        del results["compute"]
    assert summarise(seed_results, [0, 1, 2])["compute"] == {}


def test_verdict_needs_every_interval_on_its_side():
    above, below, across = (Interval(1, 0.5, 1.5, 3), Interval(-1, -1.5, -0.5, 3),
                            Interval(0, -1, 1, 3))
    assert verdict([(above, +1), (below, -1)]) == "reproduced"
    assert verdict([(above, +1), (across, -1)]) == "inconclusive"
    assert verdict([(above, -1), (across, +1)]) == "not reproduced"
