"""The generation bench's figures: best and median runs, the printed table and the results file.

`bench/generation.py` measures and fills a `Runs`; `report` turns it into the printed lines and
bench/results/generation.json (or `--results`).
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import statistics
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

SPEEDUP_TARGET = 1.6
OVERHEAD_TARGET = 10.0  # percent
RESULTS = Path(__file__).resolve().parent / "results" / "generation.json"
LABELS = {"1": "Ray Data, 1 actor", "2": "Ray Data, 2 actors",
          "kept_first_1": "kept pool of 1, first call", "kept_1": "kept pool of 1, later",
          "kept_first_2": "kept pool of 2, first call", "kept_2": "kept pool of 2, later"}
"""The Ray Data calls, by their key in `Runs.calls`, in the order the table prints them."""


@dataclass
class Runs:
    """Every run of every path, as the bench measured them."""

    load_before: tuple[float, ...]
    plain: dict[int, list[dict[str, Any]]] = field(default_factory=lambda: {1: [], 2: []})
    """Plain loop runs by torch threads."""
    pairs: list[dict[str, Any]] = field(default_factory=list)
    """Two plain loops side by side."""
    calls: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    """Ray Data calls by path: "1", "2", "kept_first_1", "kept_1", ..."""
    starts: dict[int, list[float]] = field(default_factory=lambda: {1: [], 2: []})
    """Seconds to start a kept pool, by actors."""
    load_after: tuple[float, ...] = ()


@dataclass
class Summary:
    """The best run of each path and the ratios the targets are judged on."""

    plain: dict[int, dict[str, Any]]
    calls: dict[str, dict[str, Any]]
    """Fastest whole call of each path."""
    running: dict[str, dict[str, Any]]
    """Shortest engines' window of each path."""
    pool_starts: dict[int, float]
    pair: dict[str, Any]
    speedup: float
    median_speedup: float
    kept_speedup: float
    batch_overhead: float
    kept_overhead: float
    whole_speedup: float
    kept_whole_speedup: float
    of_ceiling: float
    same_tokens: bool
    busiest: float

    @property
    def base(self) -> dict[str, Any]:
        """The 1-thread plain loop every ratio is against."""
        return self.plain[1]

    @property
    def speedup_met(self) -> bool:
        return self.speedup >= SPEEDUP_TARGET

    @property
    def kept_met(self) -> bool:
        return self.kept_speedup >= SPEEDUP_TARGET

    @property
    def overhead_met(self) -> bool:
        return self.batch_overhead < OVERHEAD_TARGET


def summarise(runs: Runs) -> Summary:
    """Best of the repeats for each path (the median too for the pool of 2)."""
    plain = {threads: min(rs, key=lambda r: r["seconds"]) for threads, rs in runs.plain.items()}
    calls = {key: min(rs, key=lambda r: r["seconds"]) for key, rs in runs.calls.items()}
    running = {key: min(rs, key=lambda r: r["engine_window"]["seconds"])
               for key, rs in runs.calls.items()}
    running_median = {key: statistics.median(r["running_tokens_per_second"] for r in rs)
                      for key, rs in runs.calls.items()}
    pair = min(runs.pairs, key=lambda r: r["seconds"])
    base = plain[1]
    base_median = statistics.median(r["tokens_per_second"] for r in runs.plain[1])

    def ratio(key: str) -> float:
        return running[key]["running_tokens_per_second"] / base["tokens_per_second"]

    def overhead(key: str) -> float:
        return 100 * (running[key]["running_seconds_per_batch"] / base["seconds_per_batch"] - 1)

    # Same per-row seeds on every path, so every path must generate the same tokens.
    same_tokens = (len({base["tokens"], pair["tokens"],
                        *(c["tokens"] for c in calls.values())}) == 1
                   and plain[2]["batch_tokens"] == base["batch_tokens"][:plain[2]["batches"]]
                   and pair["batch_tokens"] == base["batch_tokens"])
    busiest = max([runs.load_before[0], runs.load_after[0]]
                  + [r["load_average"] for rs in [*runs.plain.values(), *runs.calls.values()]
                     for r in rs])
    return Summary(
        plain=plain, calls=calls, running=running,
        pool_starts={actors: min(rs) for actors, rs in runs.starts.items()}, pair=pair,
        speedup=ratio("2"), median_speedup=running_median["2"] / base_median,
        kept_speedup=ratio("kept_2"), batch_overhead=overhead("1"),
        kept_overhead=overhead("kept_1"),
        whole_speedup=calls["2"]["tokens_per_second"] / base["tokens_per_second"],
        kept_whole_speedup=calls["kept_2"]["tokens_per_second"] / base["tokens_per_second"],
        of_ceiling=running["2"]["running_tokens_per_second"] / pair["tokens_per_second"],
        same_tokens=same_tokens, busiest=busiest)


def print_header(args: argparse.Namespace, requests: list[dict[str, Any]], runs: Runs,
                 s: Summary) -> None:
    print()
    print(f"Generation: {args.prompts} prompts x {args.samples} samples = {len(requests)} "
          f"requests, max_new_tokens {args.max_new_tokens}, batch {args.batch_size} "
          f"({s.base['batches']} batches), {args.batches_per_block} batches a block, "
          f"{os.cpu_count()} CPUs, best of {args.repeats} interleaved runs of each path")
    print(f"load average before/after: {runs.load_before[0]:.1f} / {runs.load_after[0]:.1f}, "
          f"highest seen {s.busiest:.1f}")
    if s.busiest > (os.cpu_count() or 1) + 3:  # our own actors and Ray make about 3
        print(f"WARNING: the load average reached {s.busiest:.1f} on {os.cpu_count()} CPUs, "
              "more than this run's own actors and Ray processes make: other processes "
              "probably competed for the CPUs and the figures are unreliable. Rerun on a "
              "quiet machine.")
    print(f"generated token counts identical on every path: {s.same_tokens}")


def print_table(s: Summary) -> None:
    """One row a path, then each Ray Data call's fixed cost and time a batch."""
    base, plain, pair = s.base, s.plain, s.pair
    print(f"{'path':<34} {'tokens':>7} {'whole call':>11} {'tokens/s':>9} "
          f"{'engines ran':>12} {'tokens/s':>9} {'busy':>12}")
    print(f"{'plain loop, 1 thread':<34} {base['tokens']:>7} {base['seconds']:>10.2f}s "
          f"{base['tokens_per_second']:>9.0f}")
    print(f"{'plain loop, 2 threads (' + str(plain[2]['batches']) + ' batches)':<34} "
          f"{plain[2]['tokens']:>7} {plain[2]['seconds']:>10.2f}s "
          f"{plain[2]['tokens_per_second']:>9.0f}")
    print(f"{'two plain loops side by side':<34} {pair['tokens']:>7} "
          f"{pair['seconds']:>10.2f}s {pair['tokens_per_second']:>9.0f}")
    for key, label in LABELS.items():
        call, run = s.calls[key], s.running[key]
        busy = ", ".join(f"{b:.0%}" for b in run["engine_window"]["busy"])
        print(f"{label:<34} {call['tokens']:>7} {call['seconds']:>10.2f}s "
              f"{call['tokens_per_second']:>9.0f} {run['engine_window']['seconds']:>11.2f}s "
              f"{run['running_tokens_per_second']:>9.0f} {busy:>12}")
    for key, label in LABELS.items():
        print(f"{label}: fixed cost of a call {s.calls[key]['fixed_seconds']:.1f} s (start-up "
              f"{s.calls[key]['engine_window']['first_start']:.1f} s), then "
              f"{s.running[key]['running_seconds_per_batch']:.3f} s a batch; this process used "
              f"{s.calls[key]['driver_cpu_seconds']:.1f} s of CPU")
    print(f"kept pool of 1 / of 2 started once in {s.pool_starts[1]:.1f} s / "
          f"{s.pool_starts[2]:.1f} s")


def print_ratios(s: Summary) -> None:
    """The ratios against the plain loop, and whether the targets were met."""
    base = s.base
    print(f"2 actors / plain loop (1 thread), once the pool runs: {s.speedup:.2f}x (median of "
          f"the runs {s.median_speedup:.2f}x); target >= {SPEEDUP_TARGET}x: "
          f"{'met' if s.speedup_met else 'NOT met'}")
    print(f"two plain loops side by side / plain loop: "
          f"{s.pair['tokens_per_second'] / base['tokens_per_second']:.2f}x (what the two cores "
          f"give two engines without Ray); 2 actors once the pool runs reach "
          f"{s.of_ceiling:.0%} of it")
    print(f"kept pool of 2, a later call / plain loop (1 thread), once the pool runs: "
          f"{s.kept_speedup:.2f}x; "
          f"target >= {SPEEDUP_TARGET}x: {'met' if s.kept_met else 'NOT met'}")
    print(f"whole calls / plain loop: 2 actors {s.whole_speedup:.2f}x (start-up included), "
          f"kept pool of 2, a later call {s.kept_whole_speedup:.2f}x")
    print(f"2 actors / plain loop (2 threads), once the pool runs: "
          f"{s.running['2']['running_tokens_per_second'] / s.plain[2]['tokens_per_second']:.2f}x")
    print(f"1 actor per-batch overhead vs plain loop: {s.batch_overhead:+.1f}% "
          f"({s.running['1']['running_seconds_per_batch']:.3f} s vs "
          f"{base['seconds_per_batch']:.3f} s a batch); target < {OVERHEAD_TARGET:.0f}%: "
          f"{'met' if s.overhead_met else 'NOT met'}; kept pool of 1: {s.kept_overhead:+.1f}%")


def without_batch_tokens(run: dict[str, Any]) -> dict[str, Any]:
    """A run without its per-batch token counts, which only the token check needs."""
    return {k: v for k, v in run.items() if k != "batch_tokens"}


def all_runs(runs: Runs) -> dict[str, Any]:
    return {"plain_loop": {f"threads_{k}": [without_batch_tokens(r) for r in v]
                           for k, v in runs.plain.items()},
            "two_plain_loops_side_by_side": [without_batch_tokens(r) for r in runs.pairs],
            "ray_data_calls": runs.calls,
            "kept_pool_start_seconds": {f"actors_{k}": v for k, v in runs.starts.items()}}


def results_dict(args: argparse.Namespace, requests: list[dict[str, Any]], runs: Runs,
                 s: Summary, sampling: dict[str, float]) -> dict[str, Any]:
    """What bench/results/ keeps of a run: settings, the best runs, every run, the ratios."""
    return {
        "benchmark": "generation",
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "cpu_count": os.cpu_count(),
        "load_average_before_after": [runs.load_before[0], runs.load_after[0]],
        "load_average_highest": s.busiest,
        "versions": versions(),
        "settings": {"prompts": args.prompts, "samples": args.samples,
                     "requests": len(requests), "max_new_tokens": args.max_new_tokens,
                     "batch_size": args.batch_size, "batches": s.base["batches"],
                     "batches_per_block": args.batches_per_block,
                     "two_thread_batches": args.two_thread_batches,
                     "repeats": args.repeats, **sampling},
        "token_counts_identical": s.same_tokens,
        "plain_loop": {f"threads_{k}": v for k, v in s.plain.items()},
        "two_plain_loops_side_by_side": without_batch_tokens(s.pair),
        "speedup_two_plain_loops_side_by_side": s.pair["tokens_per_second"]
        / s.base["tokens_per_second"],
        "share_of_side_by_side_2_actors_running": s.of_ceiling,
        "ray_data_calls_fastest_whole": s.calls,
        "ray_data_calls_fastest_running": s.running,
        "kept_pool_start_seconds": {f"actors_{k}": v for k, v in s.pool_starts.items()},
        "all_runs": all_runs(runs),
        "speedup_2_actors_running": s.speedup,
        "speedup_2_actors_running_median": s.median_speedup,
        "speedup_kept_pool_2_running": s.kept_speedup,
        "speedup_2_actors_whole_call": s.whole_speedup,
        "speedup_kept_pool_2_whole_call": s.kept_whole_speedup,
        "speedup_target": SPEEDUP_TARGET,
        "speedup_target_met": s.speedup_met,
        "speedup_target_met_kept_pool": s.kept_met,
        "per_batch_overhead_percent": s.batch_overhead,
        "kept_pool_per_batch_overhead_percent": s.kept_overhead,
        "overhead_target_percent": OVERHEAD_TARGET,
        "overhead_target_met": s.overhead_met,
    }


def versions() -> dict[str, str]:
    import ray
    import torch
    import transformers

    return {"python": sys.version.split()[0], "torch": torch.__version__,
            "transformers": transformers.__version__, "ray": ray.__version__}


def report(args: argparse.Namespace, requests: list[dict[str, Any]], runs: Runs,
           sampling: dict[str, float]) -> None:
    """Print the figures and write them under bench/results/ (`sampling`: the settings the
    requests were made with, kept with the figures)."""
    s = summarise(runs)
    print_header(args, requests, runs, s)
    print_table(s)
    print_ratios(s)
    results = RESULTS.with_name(args.results)
    results.parent.mkdir(parents=True, exist_ok=True)
    results.write_text(json.dumps(results_dict(args, requests, runs, s, sampling),
                                  indent=2) + "\n")
    print(f"wrote {results.name} under bench/results/")
