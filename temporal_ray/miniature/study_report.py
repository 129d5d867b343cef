"""The study's report: study.md (tables of means with 95% intervals over seeds, the paired
comparison, the paper's claims with a verdict each) and study.png (the same with error bars).

In:  the dict study_summary.summarise returns (study.json).
Out: markdown text, and PNG bytes (the caller publishes both atomically). Decides nothing: the
     verdicts are the summary's.
"""

from __future__ import annotations

import io
from typing import TYPE_CHECKING, Any

from temporal_ray.analysis.style import METHOD_STYLE, fmt, method_label
from temporal_ray.miniature.study_summary import CHECKPOINT_METRICS, ITERATION_METRICS

if TYPE_CHECKING:
    from matplotlib.figure import Figure


def interval_text(interval: dict[str, Any], spec: str = ".3f") -> str:
    """`mean [low, high]`; the mean alone where one seed gives no interval."""
    if interval["mean"] is None:
        return "-"
    if interval["low"] is None:
        return f"{fmt(interval['mean'], spec)} (n=1)"
    return (f"{fmt(interval['mean'], spec)} [{fmt(interval['low'], spec)}, "
            f"{fmt(interval['high'], spec)}]")


def _checkpoint_name(row: dict[str, Any]) -> str:
    return "M0 (SFT)" if row["method"] == "m0" else f"{method_label(row['method'])} M{row['index']}"


def checkpoint_table(summary: dict[str, Any]) -> str:
    lines = ["| model | DPO runs | seeds | "
             + " | ".join(m.label for m in CHECKPOINT_METRICS) + " |",
             "|---|---:|---:|" + "---:|" * len(CHECKPOINT_METRICS)]
    for row in summary["checkpoints"]:
        cells = [interval_text(row["metrics"][m.key]) for m in CHECKPOINT_METRICS]
        lines.append(f"| {_checkpoint_name(row)} | {row['compute']} | {row['seeds']} | "
                     + " | ".join(cells) + " |")
    return "\n".join(lines)


def iteration_table(summary: dict[str, Any]) -> str:
    lines = ["| method | iteration | seeds | "
             + " | ".join(m.label for m in ITERATION_METRICS) + " |",
             "|---|---:|---:|" + "---:|" * len(ITERATION_METRICS)]
    for row in summary["iterations"]:
        cells = [interval_text(row["metrics"][m.key], m.digits) for m in ITERATION_METRICS]
        lines.append(f"| {method_label(row['method'])} | {row['iteration']} | {row['seeds']} | "
                     + " | ".join(cells) + " |")
    return "\n".join(lines)


def comparison_table(summary: dict[str, Any]) -> str:
    comparison = summary["comparison"]
    if "temporal" not in comparison:
        return "No seed has a final checkpoint of both methods."
    head = (f"Temporal M{comparison['temporal_index']} ({comparison['temporal']} DPO runs) "
            f"minus Self-Rewarding M{comparison['self_rewarding_index']} "
            f"({comparison['self_rewarding']} DPO runs), paired by seed:")
    lines = ["| measure | Temporal - Self-Rewarding |", "|---|---:|"]
    lines += [f"| {m.label} | {interval_text(comparison['metrics'][m.key])} |"
              for m in CHECKPOINT_METRICS]
    return head + "\n\n" + "\n".join(lines)


def claims_table(summary: dict[str, Any]) -> str:
    lines = ["| claim | statement | measured (mean [95% interval]) | claimed sign | verdict |",
             "|---|---|---|---|---|"]
    for claim in summary["claims"]:
        for k, evidence in enumerate(claim["evidence"]):
            first = k == 0
            sign = "> 0" if evidence["direction"] > 0 else "< 0"
            lines.append(f"| {'(' + claim['claim'] + ')' if first else ''} | "
                         f"{claim['statement'] if first else ''} | {evidence['label']}: "
                         f"{interval_text(evidence, '.4f')} | {sign} | "
                         f"{claim['verdict'] if first else ''} |")
    return "\n".join(lines)


def compute_table(summary: dict[str, Any]) -> str:
    compute = summary.get("compute") or {}
    if not compute:
        return "These results.json files hold no compute counts."
    keys = sorted({key for counts in compute.values() for key in counts})
    lines = ["| method | " + " | ".join(keys) + " |", "|---|" + "---:|" * len(keys)]
    for method, counts in compute.items():
        cells = [fmt(counts[k]["mean"], ",.0f") if k in counts else "-" for k in keys]
        lines.append(f"| {method_label(method)} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def markdown(summary: dict[str, Any], image: str = "study.png") -> str:
    settings = summary.get("settings", {})
    setting_lines = "\n".join(f"- {key}: {value}" for key, value in settings.items()
                              if key not in ("title", "domain"))
    base = summary.get("form_only_judge", {})
    return "\n\n".join([
        f"# {settings.get('title', 'Comparison')}: {len(summary['seeds'])} seeds",
        f"Seeds {', '.join(map(str, summary['seeds']))}: each its own data, base model, SFT, "
        "DPO and sampling (every seed field of the config shifted by 1000 x seed). Every "
        "figure is the mean over seeds with its 95% percentile bootstrap interval "
        "(10,000 resamples of the seeds); one seed gives no interval.\n" + setting_lines,
        "## The paper's claims\nA claim is *reproduced* only when every interval it rests on "
        "lies wholly on the claimed side of 0, *not reproduced* when one lies wholly on the "
        "other side, and *inconclusive* otherwise. A change over iterations needs two or more "
        "iterations of the method; \"-\" marks a measure no seed could give.",
        claims_table(summary),
        "## Final checkpoints, paired by seed\n" + comparison_table(summary),
        f"![means and 95% intervals over seeds]({image})",
        "## Checkpoints\nThe form-only baseline judge (never checks correctness) scores "
        f"agreement {interval_text(base.get('agreement', {'mean': None}))} and correct-vs-"
        f"wrong AUC {interval_text(base.get('correct_vs_wrong_auc', {'mean': None}))}.",
        checkpoint_table(summary),
        "## Iterations\nThe pairs each iteration trained on (Temporal: the future-guided "
        "pairs), judged by M_i.",
        iteration_table(summary),
        "## Compute per method (mean over seeds)",
        compute_table(summary),
    ]) + "\n"


def _series(rows: list[dict[str, Any]], key: str, x: str) -> dict[str, list[tuple]]:
    """Per method, (x, mean, low error, high error) of the rows with a mean; M0 in each."""
    series: dict[str, list[tuple]] = {}
    for row in rows:
        interval = row["metrics"][key]
        if interval["mean"] is None:
            continue
        mean, low, high = interval["mean"], interval["low"], interval["high"]
        point = (row[x], mean, mean - (low if low is not None else mean),
                 (high if high is not None else mean) - mean)
        methods = list(METHOD_STYLE) if row["method"] == "m0" else [row["method"]]
        for method in methods:
            series.setdefault(method, []).append(point)
    return series


def plot(summary: dict[str, Any]) -> bytes:
    """study.png: checkpoints against compute and iteration measurements, error bars = 95%."""
    import matplotlib.pyplot as plt

    fig = figure(summary)
    out = io.BytesIO()
    fig.savefig(out, format="png", dpi=100)
    plt.close(fig)
    return out.getvalue()


def figure(summary: dict[str, Any]) -> Figure:
    """One panel per measure of the study's tables."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = ([("checkpoints", m, "compute") for m in CHECKPOINT_METRICS]
              + [("iterations", m, "iteration") for m in ITERATION_METRICS])
    columns = 5
    rows = -(-len(panels) // columns)  # every measure gets a panel, however many there are
    fig, axes = plt.subplots(rows, columns, figsize=(4.4 * columns, 4 * rows), squeeze=False)
    for ax in axes.flat[len(panels):]:
        ax.set_visible(False)
    for ax, (kind, metric, x) in zip(axes.flat, panels, strict=False):
        for method, points in _series(summary[kind], metric.key, x).items():
            xs, means, below, above = zip(*sorted(points))
            ax.errorbar(xs, means, yerr=[below, above], capsize=3, label=method_label(method),
                        **METHOD_STYLE.get(method, {}))
        ax.set_title(metric.label, fontsize=10)
        ax.set_xlabel("DPO runs (compute)" if kind == "checkpoints" else "iteration")
        ax.grid(alpha=0.3)
        ax.xaxis.get_major_locator().set_params(integer=True)
    axes.flat[0].legend()
    fig.suptitle(f"{summary.get('settings', {}).get('title', 'Comparison')}: mean and 95% "
                 f"interval over {len(summary['seeds'])} seeds")
    fig.tight_layout()
    return fig
