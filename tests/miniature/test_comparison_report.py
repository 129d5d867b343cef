"""The comparison report from hand-made results: tables, findings from the numbers, a PNG."""

from __future__ import annotations

import pytest

from temporal_ray.miniature.report import (
    compute_table,
    findings,
    markdown,
    plot,
    terminal_summary,
)


def _iteration(method: str, i: int, gap: float, cosine: float) -> dict:
    return {"method": method, "iteration": i, "count": 10, "dropped": {"tie": 2},
            "chosen_roles": {"present": 7, "future": 3}, "mean_chosen_score": 4.0,
            "mean_rejected_score": 4.0 - gap, "mean_gap": gap,
            "cosine": cosine, "dpo_reward_margin": 0.05, "dpo_mean_grad_norm": 1.5}


def _checkpoint(method: str, k: int, per_step: int, accuracy: float) -> dict:
    return {"method": method, "index": k, "compute": k * per_step, "model": f"/m/{method}{k}",
            "answers": {"answers": 4, "accuracy": accuracy, "clean_accuracy": accuracy / 2,
                        "qualities": {"off_topic": 1}, "mean_answer_tokens": 3.0},
            "judge": {"agreement": 0.5, "spearman": 0.7, "unparsed_share": 0.0}}


@pytest.fixture
def results() -> dict:
    return {
        "settings": {"title": "Test report", "iterations": "self_rewarding 2, temporal 1"},
        "iterations": [_iteration("self_rewarding", 0, 2.0, 0.5),
                       _iteration("self_rewarding", 1, 0.5, 0.75),
                       _iteration("temporal", 0, 3.0, 0.25)],
        "checkpoints": [_checkpoint("self_rewarding", 0, 1, 0.25),
                        _checkpoint("self_rewarding", 1, 1, 0.3),
                        _checkpoint("self_rewarding", 2, 1, 0.35),
                        _checkpoint("temporal", 0, 2, 0.25),
                        _checkpoint("temporal", 1, 2, 0.5)],
        "compute": {"self_rewarding": _compute(1, dpo_runs=2),
                    "temporal": _compute(2, dpo_runs=2)},
    }


def _compute(scale: int, dpo_runs: int) -> dict:
    counts = {"generated_prompt_tokens": 1000, "generated_tokens": 400 * scale,
              "judge_prompt_tokens": 5000, "judge_generated_tokens": 100,
              "dpo_forward_tokens": 2000, "dpo_backward_tokens": 600,
              "reference_forward_tokens": 1000}
    return {**counts, "total_tokens": sum(counts.values()) - 600, "dpo_runs": dpo_runs,
            "iterations": 2 // scale, "stages_without_counts": []}


def test_findings_state_the_measured_figures(results):
    lines = findings(results)
    assert lines[0] == ("Self-Rewarding: the chosen-rejected judge-score gap went from 2.00 in "
                        "iteration 0 to 0.50 in iteration 1 (0.25x the first); the feature "
                        "cosine from 0.5000 to 0.7500.")
    assert lines[1].startswith("Temporal: the chosen-rejected judge-score gap went from 3.00")
    assert "(" not in lines[1].split(";")[0]  # one iteration: no ratio
    assert lines[2] == ("Self-Rewarding M2 (2 DPO runs): held-out accuracy 0.350 against M0's "
                        "0.250; judge agreement 0.500 against M0's 0.500.")
    assert lines[3].startswith("Temporal M1 (2 DPO runs): held-out accuracy 0.500")


def test_markdown_has_every_section_and_m0_once(results):
    text = markdown(results)
    for heading in ("# Test report", "## Findings", "## Checkpoints", "## Iterations",
                    "![measurements per iteration](report.png)"):
        assert heading in text
    assert text.count("| M0 (SFT) |") == 1
    assert "| Self-Rewarding M2 | 2 | 0.350 | 0.175 | 0.250 | 3.0 |" in text
    assert ("| Temporal | 0 | 10 | tie 2 | future 3, present 7 | 4.00 | 1.00 | 3.00 | 0.2500 | "
            "0.0500 | 1.500 |") in text
    assert "Findings" not in terminal_summary(results)


def test_plot_writes_a_png(results, tmp_path):
    path = tmp_path / "report.png"
    plot(results, str(path))
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert path.stat().st_size > 20_000  # eight panels, not an empty canvas


def test_compute_table_puts_the_methods_side_by_side(results):
    table = compute_table(results["compute"])
    assert table.splitlines()[0] == ("| tokens | Self-Rewarding | Temporal | "
                                     "Temporal / Self-Rewarding |")
    assert "| generation: sampled tokens | 400 | 800 | 2.00 |" in table
    assert "| judge: prompt tokens | 5,000 | 5,000 | 1.00 |" in table
    assert "| all forward tokens (backward not added) | 9,500 | 9,900 | 1.04 |" in table
    assert "| DPO runs | 2 | 2 | - |" in table


def test_report_says_what_compute_counts_and_leaves_out(results):
    text = markdown(results)
    assert "## Compute per method" in text and "| DPO runs | 2 | 2 | - |" in text
    assert "evaluation, not training, and are not counted" in text
    assert terminal_summary(results).splitlines()[-1] == (
        "compute, all forward tokens (measured): Self-Rewarding 9,500, Temporal 9,900 (1.04x)")
    # Results of a run before compute was counted: no section, no line.
    del results["compute"]
    assert "Compute per method" not in markdown(results)
    assert "compute" not in terminal_summary(results)
