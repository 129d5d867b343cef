"""The evaluation report: one row per checkpoint, one line per method over compute.

In:  `results` = {"settings": {...}, "reference": name, "checkpoints": [row, ...],
     "notes": [...]}, a row being {name, method, iteration, dpo_runs, answers, winrate,
     humaneval, lm_eval} as driver.py writes them (winrate: winrate.win_rate's dict with
     `<rate>_ci` = {low, high} (verdicts.py; absent in evaluations made before it), None for
     the reference itself; humaneval: {pass_at_1, pass_at_<k>..., problems, outcomes} or
     None; lm_eval: {task: {metric: value}} or None).
Out: a Markdown table (rates as "0.625 [0.500, 0.750]": the 95% interval in brackets),
     report.md (settings, table, notes, the plot), and report.png: win rate and
     length-controlled win rate with their intervals as error bars, mean answer length and
     HumanEval pass@1, each against the DPO runs behind the checkpoint.
"""

from __future__ import annotations

from typing import Any

from temporal_ray.analysis.style import METHOD_STYLE, by_method, fmt, method_label


def _name(row: dict[str, Any]) -> str:
    if row["iteration"] == 0 and not row["method"]:
        return "M0"
    return f"{method_label(row['method'])} M{row['iteration']}" if row["method"] else row["name"]


def with_interval(winrate: dict[str, Any], key: str) -> str:
    """A rate and its interval, "0.625 [0.500, 0.750]"; the rate alone without one."""
    bounds = winrate.get(f"{key}_ci") or {}
    if bounds.get("low") is None or winrate[key] is None:
        return fmt(winrate[key])
    return f"{fmt(winrate[key])} [{fmt(bounds['low'])}, {fmt(bounds['high'])}]"


def pass_at_k_columns(rows: list[dict[str, Any]]) -> list[str]:
    """The pass@k keys beyond pass@1 that some checkpoint has (sampled HumanEval)."""
    keys = {key for row in rows for key in (row.get("humaneval") or {})
            if key.startswith("pass_at_") and key != "pass_at_1"}
    return sorted(keys, key=lambda key: int(key.rsplit("_", 1)[1]))


def lm_eval_columns(rows: list[dict[str, Any]]) -> list[tuple[str, str]]:
    """(task, metric) pairs shown in the table: each task's main accuracy-like metric."""
    columns: dict[str, str] = {}
    for row in rows:
        for task, metrics in (row.get("lm_eval") or {}).items():
            for metric in ("acc_norm,none", "acc,none", "exact_match,strict-match",
                           "exact_match,flexible-extract", "mc2,none"):
                if metric in metrics:
                    columns.setdefault(task, metric)
                    break
    return sorted(columns.items())


def table(results: dict[str, Any]) -> str:
    """Markdown: one row per checkpoint against the reference."""
    rows = results["checkpoints"]
    extra, passes = lm_eval_columns(rows), pass_at_k_columns(rows)
    head = ["model", "DPO runs", "win rate", "LC win rate", "W / T / L", "unparsed",
            "answer tokens (model / ref)", "HumanEval pass@1",
            *[f"HumanEval pass@{key.rsplit('_', 1)[1]}" for key in passes],
            *[f"{task} {metric.split(',')[0]}" for task, metric in extra]]
    lines = ["| " + " | ".join(head) + " |",
             "|---|" + "---:|" * (len(head) - 1)]
    reference_tokens = next((r["answers"]["mean_tokens"] for r in rows
                             if r["name"] == results["reference"]), None)
    for row in rows:
        w, he = row.get("winrate"), row.get("humaneval")
        tokens = fmt(row["answers"]["mean_tokens"], ".1f")
        if w is None:
            cells = ["reference", "", "", "", tokens]
        else:
            # Mean lengths over every answer; the length control uses the judged prompts'.
            cells = [with_interval(w, "win_rate"), with_interval(w, "length_controlled_win_rate"),
                     f"{w['wins']} / {w['ties']} / {w['losses']}", str(w["unparsed"]),
                     f"{tokens} / {fmt(reference_tokens, '.1f')}"]
        cells += [fmt(he.get(key)) if he else "-" for key in ("pass_at_1", *passes)]
        for task, metric in extra:
            cells.append(fmt((row.get("lm_eval") or {}).get(task, {}).get(metric)))
        lines.append(f"| {_name(row)} | {row['dpo_runs']} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def markdown(results: dict[str, Any], image: str = "report.png") -> str:
    settings = "\n".join(f"- {key}: {value}" for key, value in results["settings"].items())
    notes = "\n".join(f"- {note}" for note in results.get("notes", []))
    return (f"# Evaluation against {results['reference']}\n\n{settings}\n\n{table(results)}\n\n"
            "Win rate: the share of held-out prompts where the judge preferred the model's "
            "answer, each prompt judged in both orders (ties count half). LC: the win rate "
            "predicted for answers of equal length (AlpacaEval 2.0's length control, without "
            "its per-prompt term). In brackets: the 95% bootstrap interval over prompts. "
            "pass@k: the unbiased estimator of Chen et al. (2021).\n\n"
            + (f"{notes}\n\n" if notes else "") + f"![evaluation]({image})\n")


def error_bars(ax: Any, rows: list[dict[str, Any]], key: str, color: Any) -> None:
    """The 95% interval of each row's `key` rate (winrate's `<key>_ci`) as an error bar."""
    bars = [(r["dpo_runs"], r["winrate"][key], r["winrate"][f"{key}_ci"]) for r in rows
            if (r.get("winrate") or {}).get(key) is not None
            and ((r["winrate"].get(f"{key}_ci") or {}).get("low") is not None)]
    if bars:
        # A percentile interval may, rarely, leave out the full-sample estimate: clip at 0.
        below = [max(y - ci["low"], 0.0) for _, y, ci in bars]
        above = [max(ci["high"] - y, 0.0) for _, y, ci in bars]
        ax.errorbar([x for x, _, _ in bars], [y for _, y, _ in bars], yerr=[below, above],
                    fmt="none", ecolor=color, elinewidth=1, capsize=3)


def plot(results: dict[str, Any], path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = results["checkpoints"]
    m0 = [r for r in rows if not r["method"]]
    reference = results["reference"]

    def rate(key: str):
        # The reference against itself is even by definition: each line starts there.
        return lambda r: 0.5 if r["name"] == reference else (r.get("winrate") or {}).get(key)

    panels = [
        ("win rate vs reference", rate("win_rate"), "win_rate"),
        ("length-controlled win rate", rate("length_controlled_win_rate"),
         "length_controlled_win_rate"),
        ("mean answer tokens", lambda r: r["answers"]["mean_tokens"], None),
    ]
    if any(r.get("humaneval") for r in rows):
        panels.append(("HumanEval pass@1", lambda r: (r.get("humaneval") or {}).get(
            "pass_at_1"), None))
    fig, axes = plt.subplots(1, len(panels), figsize=(4.2 * len(panels), 3.6))
    for ax, (title, value, interval) in zip(axes, panels):
        for method, method_rows in by_method([r for r in rows if r["method"]]).items():
            points = sorted((r["dpo_runs"], value(r)) for r in m0 + method_rows)
            points = [(x, y) for x, y in points if y is not None]
            if points:
                (line,) = ax.plot(*zip(*points), label=method_label(method),
                                  **METHOD_STYLE.get(method, {}))
                if interval:
                    error_bars(ax, method_rows, interval, line.get_color())
        if "win rate" in title:
            ax.axhline(0.5, color="grey", lw=0.8, ls="--")
            ax.set_ylim(-0.02, 1.02)
        ax.set_title(title, fontsize=10)
        ax.set_xlabel("DPO runs (compute)")
        ax.grid(alpha=0.3)
        ax.xaxis.get_major_locator().set_params(integer=True)
    if axes[0].get_legend_handles_labels()[0]:
        axes[0].legend()
    fig.suptitle(f"Checkpoints against {results['reference']}")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
