"""The evaluation report: one row per checkpoint, one line per method over compute.

In:  `results` = {"settings": {...}, "reference": name, "checkpoints": [row, ...],
     "notes": [...]}, a row being {name, method, iteration, dpo_runs, answers, winrate,
     humaneval, lm_eval} as driver.py writes them (winrate: winrate.win_rate's dict, None for
     the reference itself; humaneval: {pass_at_1, problems, outcomes} or None; lm_eval:
     {task: {metric: value}} or None).
Out: a Markdown table, report.md (settings, table, notes, the plot), and report.png:
     win rate and length-controlled win rate, mean answer length and HumanEval pass@1,
     each against the DPO runs behind the checkpoint.
"""

from __future__ import annotations

from typing import Any

from temporal_ray.analysis.style import METHOD_STYLE, by_method, fmt, method_label


def _name(row: dict[str, Any]) -> str:
    if row["iteration"] == 0 and not row["method"]:
        return "M0"
    return f"{method_label(row['method'])} M{row['iteration']}" if row["method"] else row["name"]


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
    extra = lm_eval_columns(rows)
    head = ["model", "DPO runs", "win rate", "LC win rate", "W / T / L", "unparsed",
            "answer tokens (model / ref)", "HumanEval pass@1",
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
            cells = [fmt(w["win_rate"]), fmt(w["length_controlled_win_rate"]),
                     f"{w['wins']} / {w['ties']} / {w['losses']}", str(w["unparsed"]),
                     f"{tokens} / {fmt(reference_tokens, '.1f')}"]
        cells.append(fmt(he["pass_at_1"]) if he else "-")
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
            "its per-prompt term).\n\n"
            + (f"{notes}\n\n" if notes else "") + f"![evaluation]({image})\n")


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
        ("win rate vs reference", rate("win_rate")),
        ("length-controlled win rate", rate("length_controlled_win_rate")),
        ("mean answer tokens", lambda r: r["answers"]["mean_tokens"]),
    ]
    if any(r.get("humaneval") for r in rows):
        panels.append(("HumanEval pass@1", lambda r: (r.get("humaneval") or {}).get(
            "pass_at_1")))
    fig, axes = plt.subplots(1, len(panels), figsize=(4.2 * len(panels), 3.6))
    for ax, (title, value) in zip(axes, panels):
        for method, method_rows in by_method([r for r in rows if r["method"]]).items():
            points = sorted((r["dpo_runs"], value(r)) for r in m0 + method_rows)
            points = [(x, y) for x, y in points if y is not None]
            if points:
                ax.plot(*zip(*points), label=method_label(method), **METHOD_STYLE.get(method, {}))
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
