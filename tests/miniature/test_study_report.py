"""study.md and study.png from the summary of three hand-made seeds (conftest.fake_seed)."""

from __future__ import annotations

from temporal_ray.miniature.study_report import figure, interval_text, markdown, plot
from temporal_ray.miniature.study_summary import CHECKPOINT_METRICS, ITERATION_METRICS, summarise


def test_markdown_has_every_table_and_the_verdicts(seed_results):
    text = markdown(summarise(seed_results, [0, 1, 2]))
    for section in ("# The paper in miniature: 3 seeds", "## The paper's claims",
                    "## Final checkpoints, paired by seed", "## Checkpoints", "## Iterations",
                    "## Compute per method", "study.png", "| M0 (SFT) | 0 | 3 | 0.300 [",
                    "| Self-Rewarding M4 | 4 |", "| Temporal M2 | 4 |",
                    "| Self-Rewarding | 3 | 3 |", "| Temporal | 1 | 3 |",
                    "Temporal M2 (4 DPO runs) minus Self-Rewarding M4 (4 DPO runs)",
                    "| held-out accuracy | 0.200 [", "| generated_tokens |", "| 101 |"):
        assert section in text, section
    assert text.count("| reproduced |") == 3


def test_one_seed_reads_as_a_mean_without_an_interval(seed_results):
    text = markdown(summarise(seed_results[:1], [0]))
    assert "| M0 (SFT) | 0 | 1 | 0.200 (n=1) |" in text
    assert text.count("| inconclusive |") == 3
    assert interval_text({"mean": None, "low": None, "high": None, "n": 0}) == "-"


def test_plot_is_a_png(seed_results):
    assert plot(summarise(seed_results, [0, 1, 2]))[:4] == b"\x89PNG"
    assert plot(summarise(seed_results[:1], [0]))[:4] == b"\x89PNG"


def test_every_measure_has_a_panel(seed_results):
    fig = figure(summarise(seed_results, [0, 1, 2]))
    titles = [ax.get_title() for ax in fig.axes if ax.get_visible()]
    assert titles == [m.label for m in CHECKPOINT_METRICS + ITERATION_METRICS]
