"""The evaluation table, report and plot from hand-made results."""

from __future__ import annotations

from temporal_ray.evaluate.report import error_bars, lm_eval_columns, markdown, plot, table


def results() -> dict:
    def winrate(rate, lc, w, t, loss, unparsed, model_len, ci=None):
        return {"win_rate": rate, "length_controlled_win_rate": lc, "wins": w, "ties": t,
                "losses": loss, "unparsed": unparsed, "mean_model_length": model_len,
                "mean_reference_length": 10.0, **(ci or {})}

    def row(name, method, k, rate=None, humaneval=None, lm=None):
        return {"name": name, "method": method, "iteration": k,
                "dpo_runs": k * (2 if method == "temporal" else 1), "path": f"/m/{name}",
                "answers": {"prompts": 8, "mean_tokens": 10.0 + k},
                "winrate": rate, "humaneval": humaneval, "lm_eval": lm}

    return {"settings": {"judge": "rule"}, "reference": "m0", "notes": ["2 prompts too long"],
            "checkpoints": [
                row("m0", "", 0, humaneval={"pass_at_1": 0.25}),
                row("self_rewarding/m1", "self_rewarding", 1,
                    winrate(0.625, 0.55, 4, 2, 2, 0, 12.5, {
                        "win_rate_ci": {"low": 0.5, "high": 0.75},
                        "length_controlled_win_rate_ci": {"low": 0.41, "high": 0.7}}),
                    {"pass_at_1": 0.5, "pass_at_10": 0.9},
                    {"gsm8k": {"exact_match,strict-match": 0.3, "exact_match_stderr": 0.1}}),
                row("temporal/m1", "temporal", 1, winrate(0.75, None, 5, 2, 1, 1, 9.0),
                    {"pass_at_1": 0.5}),
            ]}


def test_table_rows_by_hand():
    lines = table(results()).splitlines()
    assert lines[0].startswith("| model | DPO runs | win rate | LC win rate | W / T / L |")
    assert lines[0].endswith("| HumanEval pass@1 | HumanEval pass@10 | gsm8k exact_match |")
    assert lines[2] == "| M0 | 0 | reference |  |  |  | 10.0 | 0.250 | - | - |"
    # Intervals in brackets where the evaluation has them; an older one's rate stands alone.
    assert lines[3] == ("| Self-Rewarding M1 | 1 | 0.625 [0.500, 0.750] | "
                        "0.550 [0.410, 0.700] | 4 / 2 / 2 | 0 | 11.0 / 10.0 | 0.500 | 0.900 | "
                        "0.300 |")
    assert lines[4] == ("| Temporal M1 | 2 | 0.750 | - | 5 / 2 / 1 | 1 | 11.0 / 10.0 | "
                        "0.500 | - | - |")


def test_error_bars_span_the_intervals():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots()
    error_bars(ax, results()["checkpoints"], "win_rate", "red")
    (bars,) = ax.collections  # only the row with an interval gets a bar
    assert [seg.tolist() for seg in bars.get_segments()] == [[[1.0, 0.5], [1.0, 0.75]]]
    plt.close(fig)


def test_lm_eval_columns_pick_one_metric_per_task():
    rows = [{"lm_eval": {"arc_challenge": {"acc,none": 0.2, "acc_norm,none": 0.3},
                         "gsm8k": {"exact_match,strict-match": 0.1}}}, {"lm_eval": None}]
    assert lm_eval_columns(rows) == [("arc_challenge", "acc_norm,none"),
                                     ("gsm8k", "exact_match,strict-match")]


def test_markdown_and_plot(tmp_path):
    text = markdown(results())
    assert text.startswith("# Evaluation against m0")
    assert "- judge: rule" in text and "- 2 prompts too long" in text
    assert "![evaluation](report.png)" in text
    plot(results(), str(tmp_path / "report.png"))
    assert (tmp_path / "report.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
