"""What a run prints: one block per iteration, a header as it starts and one line per stage as
the stage finishes, from the stage's manifest."""

from __future__ import annotations

import math
from typing import Any


def _num(value: Any, fmt: str = ".2f") -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    return format(value, fmt)


def describe_stage(record: dict[str, Any]) -> str:
    kept = record.get("kept_pool")
    text = _describe(record)
    return f"{text} [kept pool {kept}]" if kept else text


def _describe(record: dict[str, Any]) -> str:
    kind = record.get("kind")
    if kind == "prompts":
        return f"{record['rows']} prompts"
    if kind == "generate":
        shared = record.get("shared_pass")
        return (f"{record['rows']} candidates from {record['role']}, "
                f"{_num(record['mean_response_tokens'], '.1f')} tokens on average"
                + (f" (one pool with {' and '.join(r for r in shared if r != record['role'])}:"
                   f" {record['shared_pass_seconds']:.1f} s)" if shared else ""))
    if kind == "judge":
        parts = []
        order = ["present", "past", "future"]
        for role, r in sorted(record["roles"].items(),
                              key=lambda item: order.index(item[0]) if item[0] in order else 9):
            failed = r["no_score"] + r["out_of_range"]
            too_long = r.get("over_context", 0)
            parts.append(f"{role} {r['scored']}/{r['candidates']} scored, "
                         f"mean {_num(r['mean_score'])}"
                         + (f", {failed} judgements unparsed" if failed else "")
                         + (f", {too_long} over the judge's context" if too_long else "")
                         + (f", {r['judge_truncated']} shown truncated"
                            if r.get("judge_truncated") else ""))
        return f"{record['judge']} judge: " + "; ".join(parts)
    if kind == "pairs":
        dropped = ", ".join(f"{k} {v}" for k, v in record["dropped"].items() if v) or "none"
        return (f"{record['pairs']} pairs kept, dropped: {dropped}; chosen "
                f"{_num(record['mean_chosen_score'])} vs rejected "
                f"{_num(record['mean_rejected_score'])}, gap {_num(record['score_gap'])}")
    if kind == "dpo":
        return (f"DPO on {record['pairs']} pairs, {record['optimizer_steps']} steps: loss "
                f"{_num(record['loss_before'], '.4f')} -> {_num(record['loss_after'], '.4f')}, "
                f"margin {_num(record['margin_after'], '+.3f')}, accuracy "
                f"{_num(record['accuracy_after'])}, grad norm {_num(record['mean_grad_norm'])}")
    return ""


def describe_engines(counts: dict[str, int]) -> str:
    """The run's engine starts (this session's; a resumed run counts from its restart)."""
    loads = counts["weight_loads"]
    return (f"engines started: {counts['engine_starts']}"
            + (f"; new weights loaded into running engines {loads} times" if loads else ""))


def describe_compute(compute: dict[str, Any]) -> str:
    """A method's measured compute (run/compute.py) in one line."""
    def n(key: str) -> str:
        return f"{compute[key]:,}"
    missing = compute.get("stages_without_counts")
    return (f"compute in tokens: generated {n('generated_tokens')} "
            f"(prompts {n('generated_prompt_tokens')}), judge {n('judge_generated_tokens')} "
            f"(prompts {n('judge_prompt_tokens')}), DPO forward {n('dpo_forward_tokens')}, "
            f"backward {n('dpo_backward_tokens')}, reference {n('reference_forward_tokens')}"
            f" over {compute['dpo_runs']} DPO runs"
            + (f"; {len(missing)} stages without counts" if missing else ""))


def iteration_header(iteration: int, method: str) -> str:
    return f"iteration {iteration} ({method})"


def format_stage(record: dict[str, Any]) -> str:
    """A stage's line under its iteration's header: name, what it made, seconds."""
    name = record["stage"].split("/", 1)[-1]
    took = "  done before" if record.get("reused") else f"{record['seconds']:7.1f} s"
    return f"  {name:<20} {describe_stage(record):<104} {took}"
