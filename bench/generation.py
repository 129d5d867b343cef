"""Generation throughput: the generate stage through Ray Data actor pools against a plain loop.

What is measured: generated tokens per second of the `hf` engine on CPU, on the same tiny model
(`temporal_ray.tiny.build_tiny_model`), the same prompts and the same sampling settings.

- Requests: `--prompts` synthetic prompts x `--samples` samples, one request row per sample
  (`generate.requests.candidate_requests`, each row with its own seed), `--max-new-tokens` new
  tokens at most, temperature 0.7, top-p 0.9.
- Plain loop: one `generate.hf_engine.HFEngine` built in this process, called batch by batch
  (`--batch-size` rows) on those request rows, with 1 torch thread (one actor's one core) and
  again with 2 threads. Timed: the batch calls only (the model is loaded before).
- Ray Data: `generate.stage.generate_candidates` (read Parquet prompts, explode into requests,
  actor pool of `HFEngine`s, write Parquet candidates) with `EngineConfig(actors=N,
  batch_size=..., cpus_per_actor=1)`, N = 1 and 2. Timed: the whole call, so actor start-up,
  model loading, planning and writing count.
- Tokens: the `response_tokens` column of the candidate rows (Ray Data) and
  `num_generated_tokens` of the engine's output (plain loop): the same per-row count.
- Per-batch overhead of the Ray Data path: the same call is also timed on one batch of
  requests; (whole - one batch) / (batches - 1) is the time of a batch once the pool runs, so
  the fixed start-up cost drops out. Its excess over a plain-loop batch (1 thread), in percent,
  is the per-batch overhead. The end-to-end overhead (start-up included) is printed too.

Targets (printed, never asserted): 2 actors >= 1.6x the plain loop's tokens/s; per-batch
overhead of 1 actor < 10%. Results go to bench/results/generation.json.

    .venv/bin/python bench/generation.py [--prompts 64] [--samples 4] [--max-new-tokens 32]
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
        tokens, batch_seconds = 0, []
        for start in range(0, len(requests), batch_size):
            batch = pd.DataFrame(requests[start: start + batch_size])
            started = time.perf_counter()
            out = engine(batch)
            batch_seconds.append(time.perf_counter() - started)
            tokens += int(out["num_generated_tokens"].sum())
    finally:
        torch.set_num_threads(previous)
    seconds = sum(batch_seconds)
    return {"threads": threads, "seconds": seconds, "tokens": tokens,
            "tokens_per_second": tokens / seconds, "batches": len(batch_seconds),
            "seconds_per_batch": seconds / len(batch_seconds)}


def ray_data(prompts_path: str, model_path: str, out_dir: str, samples: int,
             max_new_tokens: int, actors: int, batch_size: int) -> dict[str, Any]:
    """One call of the generate stage through a Ray Data actor pool of `actors` engines."""
    from temporal_ray.config import EngineConfig, GenerationConfig
    from temporal_ray.generate.stage import generate_candidates
    from temporal_ray.storage import read_rows

    generation = GenerationConfig(samples=samples, max_new_tokens=max_new_tokens,
                                  temperature=0.7, top_p=0.9, seed=0)
    engine = EngineConfig(actors=actors, batch_size=batch_size, cpus_per_actor=1)
    started = time.perf_counter()
    generate_candidates(prompts_path, model_path, "policy", generation, engine, out_dir)
    seconds = time.perf_counter() - started
    rows = read_rows(out_dir, columns=["response_tokens"])
    tokens = sum(int(r["response_tokens"]) for r in rows)
    return {"actors": actors, "seconds": seconds, "tokens": tokens, "rows": len(rows),
            "tokens_per_second": tokens / seconds}


def versions() -> dict[str, str]:
    import ray
    import torch
    import transformers

    return {"python": sys.version.split()[0], "torch": torch.__version__,
            "transformers": transformers.__version__, "ray": ray.__version__}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--prompts", type=int, default=64)
    parser.add_argument("--samples", type=int, default=4)
    parser.add_argument("--max-new-tokens", type=int, default=32)
    parser.add_argument("--batch-size", type=int, default=16)
    args = parser.parse_args()

    import ray
    import ray.data

    from temporal_ray.generate.requests import candidate_requests
    from temporal_ray.storage import write_rows
    from temporal_ray.tiny import build_tiny_model

    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="bench-gen-") as tmp:
        work = Path(tmp)
        model_path = str(build_tiny_model(work / "model"))
        prompts = make_prompts(args.prompts)
        write_rows(prompts, str(work / "prompts" / "prompts.parquet"))
        # One batch of requests, for the fixed start-up cost of the Ray Data path.
        one_batch = max(1, args.batch_size // args.samples)
        write_rows(prompts[:one_batch], str(work / "prompts-one" / "prompts.parquet"))
        # The same request rows the stage builds (same seeds, same sampling parameters).
        requests = [row for prompt in prompts for row in candidate_requests(
            prompt, role="policy", samples=args.samples, temperature=0.7, top_p=0.9,
            max_tokens=args.max_new_tokens, seed=0)]

        plain = {threads: plain_loop(model_path, requests, args.batch_size, threads)
                 for threads in (1, 2)}
        for result in plain.values():
            print(f"[bench] plain loop: {result}", flush=True)

        ray.init(address="local", num_cpus=4, include_dashboard=False,
                 runtime_env={"env_vars": {"TOKENIZERS_PARALLELISM": "false",
                                           "HF_HUB_OFFLINE": "1"}})
        try:
            ray.data.DataContext.get_current().enable_progress_bars = False
            common = {"model_path": model_path, "samples": args.samples,
                      "max_new_tokens": args.max_new_tokens, "batch_size": args.batch_size}
            # A first short call warms Ray Data up (worker processes, imports); not reported.
            ray_data(str(work / "prompts-one"), out_dir=str(work / "out-warm"), actors=1,
                     **common)
            single = ray_data(str(work / "prompts-one"), out_dir=str(work / "out-one"),
                              actors=1, **common)
            print(f"[bench] Ray Data, one batch: {single}", flush=True)
            pools = {}
            for actors in (1, 2):
                pools[actors] = ray_data(str(work / "prompts"),
                                         out_dir=str(work / f"out-{actors}"), actors=actors,
                                         **common)
                print(f"[bench] Ray Data: {pools[actors]}", flush=True)
        finally:
            ray.shutdown()
    load_after = os.getloadavg()

    base = plain[1]
    batches = base["batches"]
    speedup = pools[2]["tokens_per_second"] / base["tokens_per_second"]
    end_to_end_overhead = 100 * (pools[1]["seconds"] / base["seconds"] - 1)
    steady_batch = (pools[1]["seconds"] - single["seconds"]) / max(batches - 1, 1)
    batch_overhead = 100 * (steady_batch / base["seconds_per_batch"] - 1)
    # The fixed cost of a call (start-up, planning, writing): one batch's call less a batch.
    fixed = max(single["seconds"] - steady_batch, 0.0)
    steady_speedup = (pools[2]["tokens"] / max(pools[2]["seconds"] - fixed, 1e-9)
                      / base["tokens_per_second"])
    same_tokens = len({base["tokens"], plain[2]["tokens"], pools[1]["tokens"],
                       pools[2]["tokens"]}) == 1

    print()
    print(f"Generation: {args.prompts} prompts x {args.samples} samples = {len(requests)} "
          f"requests, max_new_tokens {args.max_new_tokens}, batch {args.batch_size} "
          f"({batches} batches), {os.cpu_count()} CPUs")
    print(f"load average before/after: {load_before[0]:.1f} / {load_after[0]:.1f}")
    print(f"generated token counts identical on every path: {same_tokens}")
    print(f"{'path':<32} {'tokens':>7} {'seconds':>8} {'tokens/s':>9}")
    rows = [("plain loop, 1 thread", base), ("plain loop, 2 threads", plain[2]),
            ("Ray Data, 1 actor", pools[1]), ("Ray Data, 2 actors", pools[2])]
    for label, result in rows:
        print(f"{label:<32} {result['tokens']:>7} {result['seconds']:>8.2f} "
              f"{result['tokens_per_second']:>9.0f}")
    speedup_met = speedup >= SPEEDUP_TARGET
    overhead_met = batch_overhead < OVERHEAD_TARGET
    print(f"2 actors / plain loop (1 thread): {speedup:.2f}x; target >= {SPEEDUP_TARGET}x: "
          f"{'met' if speedup_met else 'NOT met'}")
    print(f"2 actors / plain loop (2 threads): "
          f"{pools[2]['tokens_per_second'] / plain[2]['tokens_per_second']:.2f}x")
    print(f"1 actor per-batch overhead vs plain loop: {batch_overhead:+.1f}% "
          f"({steady_batch:.3f} s vs {base['seconds_per_batch']:.3f} s a batch); "
          f"target < {OVERHEAD_TARGET:.0f}%: {'met' if overhead_met else 'NOT met'}")
    print(f"1 actor end-to-end overhead (start-up included): {end_to_end_overhead:+.1f}% "
          f"(fixed cost about {fixed:.1f} s a call)")
    print(f"2 actors / plain loop (1 thread) with that fixed cost left out: "
          f"{steady_speedup:.2f}x")

    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps({
        "benchmark": "generation",
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "cpu_count": os.cpu_count(),
        "load_average_before_after": [load_before[0], load_after[0]],
        "versions": versions(),
        "settings": {"prompts": args.prompts, "samples": args.samples,
                     "requests": len(requests), "max_new_tokens": args.max_new_tokens,
                     "batch_size": args.batch_size, "batches": batches,
                     "temperature": 0.7, "top_p": 0.9},
        "token_counts_identical": same_tokens,
        "plain_loop": {f"threads_{k}": v for k, v in plain.items()},
        "ray_data": {"one_batch": single, **{f"actors_{k}": v for k, v in pools.items()}},
        "speedup_2_actors_vs_plain": speedup,
        "speedup_target": SPEEDUP_TARGET,
        "speedup_target_met": speedup_met,
        "per_batch_seconds_1_actor": steady_batch,
        "per_batch_overhead_percent": batch_overhead,
        "end_to_end_overhead_percent": end_to_end_overhead,
        "fixed_seconds_per_call": fixed,
        "speedup_2_actors_vs_plain_without_fixed_cost": steady_speedup,
        "overhead_target_percent": OVERHEAD_TARGET,
        "overhead_target_met": overhead_met,
    }, indent=2) + "\n")
    print(f"wrote {RESULTS.name} under bench/results/")


if __name__ == "__main__":
    main()
