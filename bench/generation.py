"""Generation throughput: the generate stage through Ray Data actor pools against a plain loop.

What is measured: generated tokens per second of the `hf` engine on CPU, on the same tiny model
(`temporal_ray.tiny.build_tiny_model`), the same request rows and the same sampling settings.

- Requests: `--prompts` synthetic prompts x `--samples` samples, one request row per sample
  (`generate.requests.candidate_requests`, each row with its own seed), `--max-new-tokens` new
  tokens at most, temperature 0.7, top-p 0.9, `--batch-size` rows a batch.
- Plain loop: one `generate.hf_engine.HFEngine` built in this process and called batch by batch
  on those rows, with 1 torch thread (one actor's one core); again with 2 threads on the first
  `--two-thread-batches` batches. Timed: the batch calls only (the model is loaded before).
- Ray Data: `generate.stage.generate_candidates` (read the Parquet prompts, explode them into
  requests, actor pool of `HFEngine`s, write Parquet candidates) with
  `EngineConfig(actors=N, batch_size=..., cpus_per_actor=1)`, N = 1 and 2. Timed: the whole
  call, so Ray Data's planning, worker and actor start-up, model loading and writing count.
- Kept pools (`engine.keep_alive`): the kept pool of N = 1 and 2 engine actors is
  started once (`generate.kept_pool.start_kept_pool`, timed on its own), then the same calls
  run on it: what every stage after the first costs when a run keeps its pool.
- Tokens: `response_tokens` of the candidate rows (Ray Data) and `num_generated_tokens` of the
  engine's output (plain loop), the same per-row count; the script checks they agree.
- Repeats: every path runs `--repeats` times (3), interleaved (plain loops, actor pools, kept
  pools, then again), with Ray running throughout, so a slow spell of the machine slows each
  path alike; the best run of each path counts. Every run goes to the results file.
- End to end: tokens / seconds of the whole call against the plain loop.
- Once the pool runs: each pool size is also timed on a short call (`--short-batches` batches,
  one at least for each actor). (long - short) / (batches of long - batches of short) is the
  time of a batch once the pool runs, the fixed cost of a call (start-up, writing) cancelling
  out. Per-batch overhead = that time for 1 actor over the plain loop's (1 thread) - 1.

Targets (printed, never asserted): 2 actors >= 1.6x the plain loop's tokens/s; per-batch
overhead of 1 actor < 10%. Results go to bench/results/generation.json.

    .venv/bin/python bench/generation.py [--prompts 128] [--samples 4] [--max-new-tokens 32]
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

SPEEDUP_TARGET = 1.6
OVERHEAD_TARGET = 10.0  # percent
RESULTS = Path(__file__).resolve().parent / "results" / "generation.json"
TOPICS = ("rivers", "prime numbers", "bread", "the moon", "trains", "bees", "chess", "rain")


def make_prompts(count: int) -> list[dict[str, Any]]:
    return [{"prompt_id": f"p{i:04d}",
             "prompt": f"Write a short note about {TOPICS[i % len(TOPICS)]}, number {i}."}
            for i in range(count)]


def plain_loop(model_path: str, requests: list[dict[str, Any]], batch_size: int,
               threads: int) -> dict[str, Any]:
    """The engine called batch by batch in this process; the model load is not timed."""
    import pandas as pd
    import torch

    from temporal_ray.generate.hf_engine import HFEngine

    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        engine = HFEngine(model_path)
        batch_tokens, batch_seconds = [], []
        for start in range(0, len(requests), batch_size):
            batch = pd.DataFrame(requests[start: start + batch_size])
            started = time.perf_counter()
            out = engine(batch)
            batch_seconds.append(time.perf_counter() - started)
            batch_tokens.append(int(out["num_generated_tokens"].sum()))
    finally:
        torch.set_num_threads(previous)
    seconds, tokens = sum(batch_seconds), sum(batch_tokens)
    return {"threads": threads, "seconds": seconds, "tokens": tokens,
            "tokens_per_second": tokens / seconds, "batches": len(batch_seconds),
            "seconds_per_batch": seconds / len(batch_seconds),
            "load_average": os.getloadavg()[0], "batch_tokens": batch_tokens}


def ray_data(prompts_path: str, model_path: str, out_dir: str, samples: int,
             max_new_tokens: int, actors: int, batch_size: int,
             keep_alive: bool = False) -> dict[str, Any]:
    """One call of the generate stage through a Ray Data actor pool of `actors` engines, or
    with `keep_alive` through the kept pool of `actors` engines (already started)."""
    from temporal_ray.config import EngineConfig, GenerationConfig
    from temporal_ray.generate.stage import generate_candidates
    from temporal_ray.storage import read_rows

    generation = GenerationConfig(samples=samples, max_new_tokens=max_new_tokens,
                                  temperature=0.7, top_p=0.9, seed=0)
    engine = EngineConfig(actors=actors, batch_size=batch_size, cpus_per_actor=1,
                          keep_alive=keep_alive)
    started, driver_cpu = time.perf_counter(), time.process_time()
    generate_candidates(prompts_path, {"policy": model_path}, generation, engine, out_dir)
    seconds, driver_cpu = time.perf_counter() - started, time.process_time() - driver_cpu
    rows = read_rows(out_dir, columns=["response_tokens"])
    tokens = sum(int(r["response_tokens"]) for r in rows)
    return {"actors": actors, "keep_alive": keep_alive, "seconds": seconds, "tokens": tokens,
            "rows": len(rows),
            "batches": -(-len(rows) // batch_size), "tokens_per_second": tokens / seconds,
            "driver_cpu_seconds": driver_cpu, "load_average": os.getloadavg()[0]}


def steady(long: dict[str, Any], short: dict[str, Any]) -> dict[str, float]:
    """Seconds a batch and tokens/s once the pool runs: the difference of two calls."""
    seconds = long["seconds"] - short["seconds"]
    batches = long["batches"] - short["batches"]
    return {"seconds_per_batch": seconds / batches,
            "tokens_per_second": (long["tokens"] - short["tokens"]) / seconds,
            "fixed_seconds": short["seconds"] - short["batches"] * seconds / batches}


def versions() -> dict[str, str]:
    import ray
    import torch
    import transformers

    return {"python": sys.version.split()[0], "torch": torch.__version__,
            "transformers": transformers.__version__, "ray": ray.__version__}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--prompts", type=int, default=128)
    parser.add_argument("--samples", type=int, default=4)
    parser.add_argument("--max-new-tokens", type=int, default=32)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--short-batches", type=int, default=2,
                        help="batches of the short calls (at least one per actor)")
    parser.add_argument("--two-thread-batches", type=int, default=8,
                        help="batches of the plain loop's 2-thread variant")
    parser.add_argument("--repeats", type=int, default=3,
                        help="times every path runs, interleaved; the best run of each counts")
    args = parser.parse_args()

    import ray
    import ray.data

    from temporal_ray.config import EngineConfig
    from temporal_ray.generate.kept_pool import release_kept_pools, start_kept_pool
    from temporal_ray.generate.requests import candidate_requests
    from temporal_ray.storage import write_rows
    from temporal_ray.tiny import build_tiny_model

    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="bench-gen-") as tmp:
        work = Path(tmp)
        model_path = str(build_tiny_model(work / "model"))
        prompts = make_prompts(args.prompts)
        short_prompts = max(1, args.short_batches * args.batch_size // args.samples)
        write_rows(prompts, str(work / "long" / "prompts.parquet"))
        write_rows(prompts[:short_prompts], str(work / "short" / "prompts.parquet"))
        # The same request rows the stage builds (same seeds, same sampling parameters).
        requests = [row for prompt in prompts for row in candidate_requests(
            prompt, role="policy", samples=args.samples, temperature=0.7, top_p=0.9,
            max_tokens=args.max_new_tokens, seed=0)]

        # Two threads on the first batches only: two threads on two cores stall badly as soon
        # as anything else runs, and only the rate is compared.
        two_thread_rows = args.batch_size * args.two_thread_batches
        plain_runs: dict[int, list[dict[str, Any]]] = {1: [], 2: []}
        call_runs: dict[str, list[dict[str, Any]]] = {}
        start_runs: dict[int, list[float]] = {1: [], 2: []}

        ray.init(address="local", num_cpus=4, include_dashboard=False,
                 runtime_env={"env_vars": {"TOKENIZERS_PARALLELISM": "false",
                                           "HF_HUB_OFFLINE": "1"}})
        try:
            ray.data.DataContext.get_current().enable_progress_bars = False
            common = {"model_path": model_path, "samples": args.samples,
                      "max_new_tokens": args.max_new_tokens, "batch_size": args.batch_size}
            # A first call warms Ray up (worker processes, imports); not reported.
            ray_data(str(work / "short"), out_dir=str(work / "out-warm"), actors=1, **common)
            # Every path once per repeat, interleaved, so a slow spell of the machine slows
            # all of them; the best of the repeats counts for each.
            for repeat in range(args.repeats):
                for threads, rows in ((1, requests), (2, requests[:two_thread_rows])):
                    plain_runs[threads].append(
                        plain_loop(model_path, rows, args.batch_size, threads))
                    shown = {k: v for k, v in plain_runs[threads][-1].items()
                             if k != "batch_tokens"}
                    print(f"[bench] repeat {repeat}, plain loop: {shown}", flush=True)
                for keep_alive in (False, True):
                    for actors in (1, 2):
                        if keep_alive:  # started once (timed on its own), then the calls
                            started = time.perf_counter()
                            start_kept_pool(model_path, EngineConfig(
                                actors=actors, cpus_per_actor=1, keep_alive=True))
                            start_runs[actors].append(time.perf_counter() - started)
                        for size in ("short", "long"):
                            key = f"{'kept_' if keep_alive else ''}{size}_{actors}"
                            call_runs.setdefault(key, []).append(ray_data(
                                str(work / size), out_dir=str(work / f"out-{key}-{repeat}"),
                                actors=actors, keep_alive=keep_alive, **common))
                            print(f"[bench] repeat {repeat}, {key}: {call_runs[key][-1]}",
                                  flush=True)
                        release_kept_pools()
        finally:
            ray.shutdown()
    plain = {threads: min(runs, key=lambda r: r["seconds"])
             for threads, runs in plain_runs.items()}
    calls = {key: min(runs, key=lambda r: r["seconds"]) for key, runs in call_runs.items()}
    pool_starts = {actors: min(runs) for actors, runs in start_runs.items()}
    load_after = os.getloadavg()

    base = plain[1]
    pools = {actors: calls[f"long_{actors}"] for actors in (1, 2)}
    running = {actors: steady(calls[f"long_{actors}"], calls[f"short_{actors}"])
               for actors in (1, 2)}
    kept = {actors: calls[f"kept_long_{actors}"] for actors in (1, 2)}
    kept_running = {actors: steady(calls[f"kept_long_{actors}"], calls[f"kept_short_{actors}"])
                    for actors in (1, 2)}
    kept_speedup = kept[2]["tokens_per_second"] / base["tokens_per_second"]
    kept_overhead = 100 * (kept_running[1]["seconds_per_batch"] / base["seconds_per_batch"] - 1)
    speedup = pools[2]["tokens_per_second"] / base["tokens_per_second"]
    steady_speedup = running[2]["tokens_per_second"] / base["tokens_per_second"]
    batch_overhead = 100 * (running[1]["seconds_per_batch"] / base["seconds_per_batch"] - 1)
    end_to_end_overhead = 100 * (pools[1]["seconds"] / base["seconds"] - 1)
    same_tokens = (len({base["tokens"], *(c["tokens"] for c in [*pools.values(),
                                                                 *kept.values()])}) == 1
                   and plain[2]["batch_tokens"] == base["batch_tokens"][:plain[2]["batches"]])
    busiest = max([load_before[0], load_after[0]]
                  + [r["load_average"] for runs in [*plain_runs.values(), *call_runs.values()]
                     for r in runs])

    print()
    print(f"Generation: {args.prompts} prompts x {args.samples} samples = {len(requests)} "
          f"requests, max_new_tokens {args.max_new_tokens}, batch {args.batch_size} "
          f"({base['batches']} batches), {os.cpu_count()} CPUs, best of {args.repeats} "
          "interleaved runs of each path")
    print(f"load average before/after: {load_before[0]:.1f} / {load_after[0]:.1f}, "
          f"highest seen {busiest:.1f}")
    if busiest > (os.cpu_count() or 1) + 3:  # our own actors and Ray make about 3
        print(f"WARNING: the load average reached {busiest:.1f} on {os.cpu_count()} CPUs, more "
              "than this run's own actors and Ray processes make: other processes probably "
              "competed for the CPUs and the figures are unreliable. Rerun on a quiet machine.")
    print(f"generated token counts identical on every path: {same_tokens}")
    print(f"{'path':<36} {'tokens':>7} {'seconds':>8} {'tokens/s':>9} {'once running':>13}")
    rows = [("plain loop, 1 thread", base, None),
            (f"plain loop, 2 threads ({plain[2]['batches']} batches)", plain[2], None),
            ("Ray Data, 1 actor", pools[1], running[1]),
            ("Ray Data, 2 actors", pools[2], running[2]),
            ("Ray Data, kept pool of 1", kept[1], kept_running[1]),
            ("Ray Data, kept pool of 2", kept[2], kept_running[2])]
    for label, result, run in rows:
        once = f"{run['tokens_per_second']:>13.0f}" if run else f"{'':>13}"
        print(f"{label:<36} {result['tokens']:>7} {result['seconds']:>8.2f} "
              f"{result['tokens_per_second']:>9.0f} {once}")
    for actors in (1, 2):
        print(f"Ray Data, {actors} actor(s): fixed cost of a call about "
              f"{running[actors]['fixed_seconds']:.1f} s, then "
              f"{running[actors]['seconds_per_batch']:.3f} s a batch; this process (Ray "
              f"Data's executor) used {pools[actors]['driver_cpu_seconds']:.1f} s of CPU "
              f"in the full call")
    for actors in (1, 2):
        print(f"kept pool of {actors}: started once in {pool_starts[actors]:.1f} s, then a "
              f"call's fixed cost about {kept_running[actors]['fixed_seconds']:.1f} s and "
              f"{kept_running[actors]['seconds_per_batch']:.3f} s a batch")
    speedup_met = speedup >= SPEEDUP_TARGET
    kept_met = kept_speedup >= SPEEDUP_TARGET
    steady_met = steady_speedup >= SPEEDUP_TARGET
    overhead_met = batch_overhead < OVERHEAD_TARGET
    print(f"2 actors / plain loop (1 thread), end to end: {speedup:.2f}x; target >= "
          f"{SPEEDUP_TARGET}x: {'met' if speedup_met else 'NOT met'}")
    print(f"2 actors / plain loop (1 thread), once the pool runs: {steady_speedup:.2f}x; "
          f"target >= {SPEEDUP_TARGET}x: {'met' if steady_met else 'NOT met'}")
    print(f"kept pool of 2 / plain loop (1 thread), a whole stage call on the running pool: "
          f"{kept_speedup:.2f}x; target >= {SPEEDUP_TARGET}x: "
          f"{'met' if kept_met else 'NOT met'}")
    print(f"kept pool of 1, per-batch overhead vs plain loop: {kept_overhead:+.1f}%")
    print(f"2 actors / plain loop (2 threads): end to end "
          f"{pools[2]['tokens_per_second'] / plain[2]['tokens_per_second']:.2f}x, once the "
          f"pool runs {running[2]['tokens_per_second'] / plain[2]['tokens_per_second']:.2f}x")
    print(f"1 actor per-batch overhead vs plain loop: {batch_overhead:+.1f}% "
          f"({running[1]['seconds_per_batch']:.3f} s vs {base['seconds_per_batch']:.3f} s a "
          f"batch); target < {OVERHEAD_TARGET:.0f}%: {'met' if overhead_met else 'NOT met'}")
    print(f"1 actor end-to-end overhead (start-up included): {end_to_end_overhead:+.1f}%")

    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps({
        "benchmark": "generation",
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "cpu_count": os.cpu_count(),
        "load_average_before_after": [load_before[0], load_after[0]],
        "load_average_highest": busiest,
        "versions": versions(),
        "settings": {"prompts": args.prompts, "samples": args.samples,
                     "requests": len(requests), "max_new_tokens": args.max_new_tokens,
                     "batch_size": args.batch_size, "batches": base["batches"],
                     "short_batches": args.short_batches,
                     "two_thread_batches": args.two_thread_batches,
                     "repeats": args.repeats,
                     "temperature": 0.7, "top_p": 0.9},
        "token_counts_identical": same_tokens,
        "plain_loop": {f"threads_{k}": v for k, v in plain.items()},
        "ray_data_calls": calls,
        "all_runs": {"plain_loop": {f"threads_{k}": [{x: y for x, y in r.items()
                                                      if x != "batch_tokens"} for r in v]
                                    for k, v in plain_runs.items()},
                     "ray_data_calls": call_runs,
                     "kept_pool_start_seconds": {f"actors_{k}": v
                                                 for k, v in start_runs.items()}},
        "ray_data_once_running": {f"actors_{k}": v for k, v in running.items()},
        "kept_pool_start_seconds": {f"actors_{k}": v for k, v in pool_starts.items()},
        "kept_pool_once_running": {f"actors_{k}": v for k, v in kept_running.items()},
        "speedup_kept_pool_2_vs_plain": kept_speedup,
        "speedup_target_met_kept_pool": kept_met,
        "kept_pool_per_batch_overhead_percent": kept_overhead,
        "speedup_2_actors_vs_plain": speedup,
        "speedup_2_actors_vs_plain_once_running": steady_speedup,
        "speedup_target": SPEEDUP_TARGET,
        "speedup_target_met": speedup_met,
        "speedup_target_met_once_running": steady_met,
        "per_batch_overhead_percent": batch_overhead,
        "end_to_end_overhead_percent": end_to_end_overhead,
        "overhead_target_percent": OVERHEAD_TARGET,
        "overhead_target_met": overhead_met,
    }, indent=2) + "\n")
    print(f"wrote {RESULTS.name} under bench/results/")


if __name__ == "__main__":
    main()
