"""The comparison report: per method, iteration and checkpoint, what method.md says to measure.

In:  `results` = {"iterations": [...], "checkpoints": [...], "settings": {...}}, where
     - an iteration row is a collapse manifest (analysis/collapse.py) with `method` and `iteration`:
       pairs kept and dropped, chosen/rejected judge scores and their gap, the chosen-vs-
       rejected feature cosine under M_i, and the DPO run's reward margin and gradient norm;
     - a checkpoint row is {method, index (k of M_k), compute (DPO runs behind it), answers,
       judge}: the ground-truth checks of ground_truth.py;
     - optionally `compute`: per method, its measured tokens (run/compute.py).
Out: report.md with its tables, a findings paragraph computed from the numbers, and
     report.png; `terminal_summary` for the console. Nothing here decides who wins: the
     findings state the measured figures only.
"""

from __future__ import annotations

from typing import Any

from temporal_ray.analysis.style import METHOD_STYLE, by_method, fmt, method_label
from temporal_ray.run.compute import compute_ratios


def checkpoint_table(checkpoints: list[dict[str, Any]]) -> str:
    """Markdown: one row per checkpoint (M0 once, then each method's M_k)."""
    lines = ["| model | DPO runs | held-out accuracy | clean answers | off-topic answers | "
             "mean answer tokens | judge agreement | single judgements agreeing | judge Spearman | "
             "judge correct-vs-wrong AUC | judge unparsed |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    seen_m0 = False
    for row in checkpoints:
        if row["index"] == 0:
            if seen_m0:
                continue
            seen_m0, name = True, "M0 (SFT)"
        else:
            name = f"{method_label(row['method'])} M{row['index']}"
        a, j = row["answers"], row["judge"]
        off_topic = a.get("qualities", {}).get("off_topic", 0) / a["answers"]
        lines.append(f"| {name} | {row['compute']} | {fmt(a['accuracy'])} | "
                     f"{fmt(a['clean_accuracy'])} | {fmt(off_topic)} | "
                     f"{fmt(a['mean_answer_tokens'], '.1f')} | "
                     f"{fmt(j['agreement'])} | {fmt(j.get('single_agreement'))} | "
                     f"{fmt(j['spearman'])} | "
                     f"{fmt(j.get('correct_vs_wrong_auc'))} | {fmt(j['unparsed_share'])} |")
    return "\n".join(lines)


def form_only_line(results: dict[str, Any]) -> str:
    """The judge baseline the table's judge columns must beat (ground_truth.form_only_judge)."""
    base = results.get("form_only_judge")
    if not base:
        return ""
    return (f"A judge that reads only the form (off topic 0, a bare answer 5, more words 4, "
            f"never checking correctness) scores agreement {fmt(base['agreement'])}, Spearman "
            f"{fmt(base['spearman'])} and correct-vs-wrong AUC "
            f"{fmt(base['correct_vs_wrong_auc'])} on the same answers.")


def iteration_table(iterations: list[dict[str, Any]]) -> str:
    """Markdown: one row per method and iteration, about the pairs that iteration trained on."""
    lines = ["| method | iteration | pairs kept | dropped | chosen from | chosen score | "
             "rejected score | gap | chosen-rejected cosine | DPO reward margin | "
             "DPO grad norm |",
             "|---|---:|---:|---|---|---:|---:|---:|---:|---:|---:|"]
    for row in iterations:
        dropped = ", ".join(f"{k} {v}" for k, v in row["dropped"].items() if v) or "none"
        chosen_from = ", ".join(f"{k} {v}" for k, v in sorted(
            row.get("chosen_roles", {}).items())) or "-"
        lines.append(f"| {method_label(row['method'])} | {row['iteration']} | {row['count']} | "
                     f"{dropped} | {chosen_from} | {fmt(row['mean_chosen_score'], '.2f')} | "
                     f"{fmt(row['mean_rejected_score'], '.2f')} | {fmt(row['mean_gap'], '.2f')} | "
                     f"{fmt(row['cosine'], '.4f')} | {fmt(row['dpo_reward_margin'], '.4f')} | "
                     f"{fmt(row['dpo_mean_grad_norm'], '.3f')} |")
    return "\n".join(lines)


COMPUTE_ROWS = {
    "generated_prompt_tokens": "generation: prompt tokens",
    "generated_tokens": "generation: sampled tokens",
    "judge_prompt_tokens": "judge: prompt tokens",
    "judge_generated_tokens": "judge: generated tokens",
    "dpo_forward_tokens": "DPO: policy forward tokens",
    "dpo_backward_tokens": "DPO: backward (loss) tokens",
    "reference_forward_tokens": "DPO: reference forward tokens",
    "total_tokens": "all forward tokens (backward not added)",
}


def compute_table(compute: dict[str, dict[str, Any]]) -> str:
    """Markdown: the methods' measured tokens side by side, and each against the first."""
    methods = list(compute)
    base = methods[0]
    ratios = compute_ratios(compute, base)
    others = methods[1:]
    lines = ["| tokens | " + " | ".join(method_label(m) for m in methods) + "".join(
                 f" | {method_label(m)} / {method_label(base)}" for m in others) + " |",
             "|---" + "|---:" * (len(methods) + len(others)) + "|"]
    for key, label in COMPUTE_ROWS.items():
        lines.append(f"| {label} | " + " | ".join(f"{compute[m][key]:,}" for m in methods)
                     + "".join(f" | {fmt(ratios[m][key], '.2f')}" for m in others) + " |")
    lines.append("| DPO runs | " + " | ".join(str(compute[m]["dpo_runs"]) for m in methods)
                 + " | -" * len(others) + " |")
    return "\n".join(lines)


def compute_line(compute: dict[str, dict[str, Any]]) -> str:
    """One line for the terminal: each method's forward tokens, against the first."""
    base = next(iter(compute))
    ratios = compute_ratios(compute, base)
    parts = [f"{method_label(m)} {c['total_tokens']:,}"
             + (f" ({fmt(ratios[m]['total_tokens'], '.2f')}x)" if m in ratios else "")
             for m, c in compute.items()]
    return "compute, all forward tokens (measured): " + ", ".join(parts)


def compute_section(results: dict[str, Any]) -> list[str]:
    """The report's "Compute per method" section, or nothing for results without counts."""
    compute = results.get("compute")
    if not compute:
        return []
    missing = [s for c in compute.values() for s in c.get("stages_without_counts", [])]
    return ["## Compute per method\nTokens counted by the stages of each method's own "
            "iterations, as the engines and the DPO workers counted them: generation and "
            "judging (prompt tokens once per request, so a prompt's K samples count K times), "
            "the DPO policy's training forward passes over chosen and rejected (prompt and "
            "response, no padding, every epoch), the response tokens the loss reads (the "
            "backward pass's), and the reference model's forward passes. The SFT of M0 is "
            "shared and not counted; the ground-truth checks (held-out answers and judge "
            "agreement) are evaluation, not training, and are not counted either."
            + (f" Short: {len(missing)} stages were written before stages counted tokens "
               f"({', '.join(missing)})." if missing else ""),
            compute_table(compute)]


def findings(results: dict[str, Any]) -> list[str]:
    """Plain statements of the measured figures: the gap's first and last value per method,
    and each method's final accuracy against M0. No claim beyond the numbers."""
    lines = []
    for method, rows in by_method(results["iterations"]).items():
        rows = sorted(rows, key=lambda r: r["iteration"])
        first, last = rows[0], rows[-1]
        change = ""
        if first["mean_gap"] and last["mean_gap"] is not None and len(rows) > 1:
            change = f" ({last['mean_gap'] / first['mean_gap']:.2f}x the first)"
        lines.append(
            f"{method_label(method)}: the chosen-rejected judge-score gap went from "
            f"{fmt(first['mean_gap'], '.2f')} in iteration {first['iteration']} to "
            f"{fmt(last['mean_gap'], '.2f')} in iteration {last['iteration']}{change}; the "
            f"feature cosine from {fmt(first['cosine'], '.4f')} to {fmt(last['cosine'], '.4f')}.")
    m0 = next((c for c in results["checkpoints"] if c["index"] == 0), None)
    for method, rows in by_method(results["checkpoints"]).items():
        final = max(rows, key=lambda r: r["index"])
        if m0 is not None and final["index"] > 0:
            lines.append(
                f"{method_label(method)} M{final['index']} ({final['compute']} DPO runs): held-out "
                f"accuracy {fmt(final['answers']['accuracy'])} against M0's "
                f"{fmt(m0['answers']['accuracy'])}; judge agreement "
                f"{fmt(final['judge']['agreement'])} against M0's {fmt(m0['judge']['agreement'])}.")
    return lines


def plot(results: dict[str, Any], path: str) -> None:
    """report.png: checkpoints against compute (DPO runs), pair measurements per iteration."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = [
        ("checkpoints", lambda r: r["answers"]["accuracy"], "held-out accuracy"),
        ("checkpoints", lambda r: r["judge"]["agreement"], "judge agreement with truth"),
        ("checkpoints", lambda r: r["judge"].get("correct_vs_wrong_auc"),
         "judge correct-vs-wrong AUC"),
        ("iterations", lambda r: r["mean_gap"], "chosen - rejected score gap"),
        ("iterations", lambda r: r["cosine"], "chosen-rejected feature cosine"),
        ("iterations", lambda r: r["mean_chosen_score"], "mean chosen score"),
        ("iterations", lambda r: r["mean_rejected_score"], "mean rejected score"),
        ("iterations", lambda r: r["dpo_reward_margin"], "DPO implicit reward margin"),
        ("iterations", lambda r: r["dpo_mean_grad_norm"], "DPO mean grad norm"),
    ]
    fig, axes = plt.subplots(3, 3, figsize=(14, 10))
    for ax, (kind, value, title) in zip(axes.flat, panels):
        for method, rows in by_method(results[kind]).items():
            if kind == "checkpoints":
                points = sorted((r["compute"], value(r)) for r in rows)
            else:
                points = sorted((r["iteration"], value(r)) for r in rows)
            points = [(x, y) for x, y in points if y is not None]
            if points:
                ax.plot(*zip(*points), label=method_label(method), **METHOD_STYLE.get(method, {}))
        ax.set_title(title, fontsize=10)
        ax.set_xlabel("DPO runs (compute)" if kind == "checkpoints" else "iteration")
        ax.grid(alpha=0.3)
        ax.xaxis.get_major_locator().set_params(integer=True)
    axes.flat[0].legend()
    fig.suptitle(results["settings"].get("title", "Self-Rewarding vs Temporal Self-Rewarding"))
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def markdown(results: dict[str, Any], image: str = "report.png") -> str:
    settings = results["settings"]
    setting_lines = "\n".join(f"- {key}: {value}" for key, value in settings.items()
                              if key != "title")
    return "\n\n".join([
        f"# {settings.get('title', 'Comparison report')}",
        setting_lines,
        "## Findings (computed from the tables below)",
        "\n".join(f"- {line}" for line in findings(results)),
        f"![measurements per iteration]({image})",
        "## Checkpoints\nHeld-out accuracy: greedy answers graded exactly (correct = clean or "
        "with extra words). Judge agreement: share of answers of known quality whose averaged "
        "judge score is the rubric's (an unparsed judgement counts as a miss); single "
        "judgements agreeing: the same over each of the J judgements (J samples that split, "
        "a 5 and a 2, average to no rubric score). "
        "Correct-vs-wrong AUC: among the on-topic answers, the chance that a correct one "
        "scores above a wrong one (0.5: the judge does not check correctness). "
        + form_only_line(results),
        checkpoint_table(results["checkpoints"]),
        "## Iterations\nThe pairs each iteration trained on (Temporal: the future-guided pairs "
        "D2), judged by M_i; cosine of chosen vs rejected last-layer features under M_i, "
        "mean-pooled over response tokens; the DPO run's reward margin after training and its "
        "mean gradient norm.",
        iteration_table(results["iterations"]),
        *compute_section(results),
    ]) + "\n"


def terminal_summary(results: dict[str, Any]) -> str:
    compute = results.get("compute")
    return "\n".join([checkpoint_table(results["checkpoints"]), "",
                      iteration_table(results["iterations"]), "",
                      *findings(results), *([compute_line(compute)] if compute else [])])
