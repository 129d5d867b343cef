"""Generation throughput: the generate stage through Ray Data actor pools against a plain loop.

What is measured: generated tokens per second of the `hf` engine on CPU, on the same tiny model
(`temporal_ray.miniature.tiny_model.build_tiny_model`), the same request rows and the same
sampling settings.

- Requests: `--prompts` synthetic prompts x `--samples` samples, one request row per sample
  (`generate.requests.candidate_requests`, each row with its own seed), `--max-new-tokens` new
  tokens at most, temperature 0.7, top-p 0.9, `--batch-size` rows a batch.
- Plain loop: one `generate.hf_engine.HFEngine` built in this process and called batch by batch
  on those rows, with 1 torch thread (one actor's one core); again with 2 threads on the first
  `--two-thread-batches` batches. Timed: the batch calls only (the model is loaded before).
- Two plain loops side by side: two processes, each a 1-thread plain loop on half the
  batches, started together once both have loaded the model; first start to last end. What
  two engines get from two cores without Ray: the ceiling for a pool of 2.
- Ray Data: `generate.stage.generate_candidates` (read the Parquet prompts, explode them into
  requests, actor pool of `HFEngine`s, write Parquet candidates) with
  `EngineConfig(actors=N, batch_size=..., batches_per_block=..., cpus_per_actor=1)`, N = 1
  and 2. Timed: the whole call, so Ray Data's planning, worker and actor start-up, model
  loading and writing count.
- Kept pools (`engine.keep_alive`): the kept pool of N = 1 and 2 engine actors is
  started once (`engines.kept_pool.KeptPools.start`, timed on its own), then the same call
  runs on it twice. The first call also pays the engines' first batches in fresh processes;
  the second is what every later stage costs when a run keeps its pool.
- Once the pool runs: Ray's own task timeline (`ray.timeline()`) gives when each engine task
  (one block of `--batches-per-block` batches) started and ended on its actor. The engines'
  window is the first task's start to the last task's end; tokens / window is the throughput
  once the pool runs, with everything Ray runs beside the engines in that time (the driver's
  executor, the read, postprocess and write tasks, raylet and GCS) on the same two cores.
  Start-up before the window and the write after it are the call's fixed cost. Per-batch
  overhead = the window / batches for 1 actor over the plain loop's time a batch (1 thread),
  minus 1. Busy = the share of the window each actor spent inside its tasks.
- Tokens: `response_tokens` of the candidate rows (Ray Data) and `num_generated_tokens` of the
  engine's output (plain loop), the same per-row count; the script checks they agree.
- Repeats: every path runs `--repeats` times (3), interleaved (plain loops, actor pools, kept
  pools, then again), with Ray running throughout, so a slow spell of the machine slows each
  path alike; the best run of each path counts, and the median is printed beside it. Every
  run goes to the results file.

Targets (printed, never asserted): 2 actors >= 1.6x the plain loop's tokens/s once the pool
runs; per-batch overhead of 1 actor < 10%. Results go to bench/results/generation.json.

    .venv/bin/python bench/generation.py [--prompts 256] [--samples 4] [--max-new-tokens 32]
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from temporal_ray.engines.kept_pool import KeptPools

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

SPEEDUP_TARGET = 1.6
OVERHEAD_TARGET = 10.0  # percent
RESULTS = Path(__file__).resolve().parent / "results" / "generation.json"
TOPICS = ("rivers", "prime numbers", "bread", "the moon", "trains", "bees", "chess", "rain")
TEMPERATURE, TOP_P, SEED = 0.7, 0.9, 0
ENGINE_TASKS = ("MapBatches(HFEngine)).submit", "PoolEngine.generate")
"""How Ray's timeline names an engine's tasks: a Ray Data actor pool's, a kept pool's."""


def make_prompts(count: int) -> list[dict[str, Any]]:
    return [{"prompt_id": f"p{i:04d}",
             "prompt": f"Write a short note about {TOPICS[i % len(TOPICS)]}, number {i}."}
            for i in range(count)]


def make_requests(prompts: list[dict[str, Any]], samples: int,
                  max_new_tokens: int) -> list[dict[str, Any]]:
    """The request rows the generate stage builds for `prompts` (same seeds, same sampling)."""
    from temporal_ray.core.requests import candidate_requests

    return [row for prompt in prompts for row in candidate_requests(
        prompt, role="policy", samples=samples, temperature=TEMPERATURE, top_p=TOP_P,
        max_tokens=max_new_tokens, seed=SEED)]


def plain_loop(model_path: str, requests: list[dict[str, Any]], batch_size: int,
               threads: int, loaded: Callable[[], None] | None = None) -> dict[str, Any]:
    """The engine called batch by batch in this process; the model load is not timed.
    `loaded` is called once the model is loaded, before the first batch."""
    import pandas as pd
    import torch

    from temporal_ray.engines.hf import HFEngine

    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        engine = HFEngine(model_path)
        if loaded:
            loaded()
        batch_tokens, batch_seconds = [], []
        first_start = time.time()
        for start in range(0, len(requests), batch_size):
            batch = pd.DataFrame(requests[start: start + batch_size])
            started = time.perf_counter()
            out = engine(batch)
            batch_seconds.append(time.perf_counter() - started)
            batch_tokens.append(int(out["num_generated_tokens"].sum()))
        last_end = time.time()
    finally:
        torch.set_num_threads(previous)
    seconds, tokens = sum(batch_seconds), sum(batch_tokens)
    return {"threads": threads, "seconds": seconds, "tokens": tokens,
            "tokens_per_second": tokens / seconds, "batches": len(batch_seconds),
            "seconds_per_batch": seconds / len(batch_seconds),
            "load_average": os.getloadavg()[0], "batch_tokens": batch_tokens,
            "first_start": first_start, "last_end": last_end}


def side_by_side(model_path: str, args: argparse.Namespace, batches: int) -> dict[str, Any]:
    """Two plain loops (1 thread each) in two processes at once, each on half the batches,
    started together once both have loaded the model: what two engines get from the two
    cores without Ray, the ceiling for a pool of 2."""
    import subprocess

    half = batches // 2 * args.batch_size
    children = [subprocess.Popen(
        [sys.executable, __file__, "--plain-loop-child", model_path, "--child-rows", rows,
         "--prompts", str(args.prompts), "--samples", str(args.samples),
         "--max-new-tokens", str(args.max_new_tokens), "--batch-size", str(args.batch_size)],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        for rows in (f"0:{half}", f"{half}:")]
    for child in children:  # each says "loaded" once its model is in memory
        assert child.stdout is not None
        while child.stdout.readline().strip() != "loaded":
            assert child.poll() is None, "a plain loop process ended before loading its model"
    for child in children:
        assert child.stdin is not None
        child.stdin.write("go\n")
        child.stdin.flush()
    loops = [json.loads(child.communicate()[0].strip().splitlines()[-1]) for child in children]
    window = max(r["last_end"] for r in loops) - min(r["first_start"] for r in loops)
    tokens = sum(r["tokens"] for r in loops)
    return {"seconds": window, "tokens": tokens, "tokens_per_second": tokens / window,
            "loops": [{k: v for k, v in r.items() if k != "batch_tokens"} for r in loops],
            "batch_tokens": [t for r in loops for t in r["batch_tokens"]],
            "load_average": os.getloadavg()[0]}


def plain_loop_child(args: argparse.Namespace) -> None:
    """One of side_by_side's processes: load, say so, wait for "go", run, print the result."""
    requests = make_requests(make_prompts(args.prompts), args.samples, args.max_new_tokens)
    start, _, end = args.child_rows.partition(":")
    rows = requests[int(start): int(end) if end else None]

    def loaded() -> None:
        print("loaded", flush=True)
        sys.stdin.readline()

    print(json.dumps(plain_loop(args.plain_loop_child, rows, args.batch_size, 1, loaded)),
          flush=True)


def engine_tasks(started: float, ended: float) -> list[dict[str, Any]]:
    """The engine tasks Ray's timeline holds between two wall-clock times (seconds)."""
    import ray

    tasks = []
    for event in ray.timeline():
        if event.get("ph") != "X" or not str(event.get("cat", "")).endswith(ENGINE_TASKS):
            continue
        begin = event["ts"] / 1e6
        end = begin + event["dur"] / 1e6
        if begin >= started and end <= ended:
            tasks.append({"actor": event["tid"], "start": begin, "end": end})
    return tasks


def settled_engine_tasks(started: float, ended: float, blocks: int) -> list[dict[str, Any]]:
    """Workers report task events to Ray every second or so: wait until all have come in."""
    deadline = time.time() + 30
    while True:
        tasks = engine_tasks(started, ended)
        if len(tasks) >= blocks or time.time() > deadline:
            return tasks
        time.sleep(0.5)


def engine_window(tasks: list[dict[str, Any]]) -> dict[str, Any]:
    """First engine task's start to the last one's end, and each actor's busy share of it."""
    first, last = min(t["start"] for t in tasks), max(t["end"] for t in tasks)
    window = last - first
    busy: dict[str, float] = {}
    for task in tasks:
        busy[task["actor"]] = busy.get(task["actor"], 0.0) + task["end"] - task["start"]
    return {"first_start": first, "last_end": last, "seconds": window, "tasks": len(tasks),
            "busy": sorted(round(b / window, 3) for b in busy.values())}


def ray_data(prompts_path: str, model_path: str, out_dir: str, samples: int,
             max_new_tokens: int, actors: int, batch_size: int, batches_per_block: int,
             pools: KeptPools, keep_alive: bool = False) -> dict[str, Any]:
    """One call of the generate stage through a Ray Data actor pool of `actors` engines, or
    with `keep_alive` through the kept pool of `actors` engines (already started)."""
    from temporal_ray.config import EngineConfig, GenerationConfig
    from temporal_ray.engines.pool import EnginePool
    from temporal_ray.stages.generate import generate_candidates
    from temporal_ray.storage.files import read_rows

    generation = GenerationConfig(samples=samples, max_new_tokens=max_new_tokens,
                                  temperature=TEMPERATURE, top_p=TOP_P, seed=SEED)
    engine = EngineConfig(actors=actors, batch_size=batch_size, cpus_per_actor=1,
                          batches_per_block=batches_per_block, keep_alive=keep_alive)
    wall_start, driver_cpu = time.time(), time.process_time()
    started = time.perf_counter()
    generate_candidates(prompts_path, {"policy": model_path}, generation,
                        EnginePool(engine, kept=pools), out_dir)
    seconds, driver_cpu = time.perf_counter() - started, time.process_time() - driver_cpu
    wall_end = time.time()
    rows = read_rows(out_dir, columns=["response_tokens"])
    tokens = sum(int(r["response_tokens"]) for r in rows)
    batches = -(-len(rows) // batch_size)
    window = engine_window(settled_engine_tasks(
        wall_start, wall_end, -(-len(rows) // engine.block_rows(len(rows)))))
    return {"actors": actors, "keep_alive": keep_alive, "seconds": seconds, "tokens": tokens,
            "rows": len(rows), "batches": batches, "tokens_per_second": tokens / seconds,
            "driver_cpu_seconds": driver_cpu, "load_average": os.getloadavg()[0],
            "engine_window": {**window, "first_start": window["first_start"] - wall_start,
                              "last_end": window["last_end"] - wall_start},
            "running_tokens_per_second": tokens / window["seconds"],
            "running_seconds_per_batch": window["seconds"] / batches,
            "fixed_seconds": seconds - window["seconds"]}


def versions() -> dict[str, str]:
    import ray
    import torch
    import transformers

    return {"python": sys.version.split()[0], "torch": torch.__version__,
            "transformers": transformers.__version__, "ray": ray.__version__}


def main() -> None:
    from temporal_ray.config import EngineConfig

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--prompts", type=int, default=256)
    parser.add_argument("--samples", type=int, default=4)
    parser.add_argument("--max-new-tokens", type=int, default=32)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--batches-per-block", type=int,
                        default=EngineConfig().batches_per_block,
                        help="engine.batches_per_block: batches an actor takes per task")
    parser.add_argument("--two-thread-batches", type=int, default=8,
                        help="batches of the plain loop's 2-thread variant")
    parser.add_argument("--repeats", type=int, default=3,
                        help="times every path runs, interleaved; the best run of each counts")
    parser.add_argument("--results", default=RESULTS.name,
                        help="file name under bench/results/ for this run's figures")
    parser.add_argument("--plain-loop-child", help=argparse.SUPPRESS)  # side_by_side's
    parser.add_argument("--child-rows", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.plain_loop_child:
        plain_loop_child(args)
        return

    import logging

    import ray
    import ray.data

    # ray.timeline() warns on every call that a later Ray will read it from the dashboard.
    logging.getLogger("ray._private.state").setLevel(logging.ERROR)

    from temporal_ray.engines.kept_pool import KeptPools
    from temporal_ray.miniature.tiny_model import build_tiny_model
    from temporal_ray.storage.files import write_rows

    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="bench-gen-") as tmp:
        work = Path(tmp)
        model_path = str(build_tiny_model(work / "model"))
        prompts = make_prompts(args.prompts)
        write_rows(prompts, str(work / "prompts" / "prompts.parquet"))
        write_rows(prompts[:4], str(work / "warm" / "prompts.parquet"))
        requests = make_requests(prompts, args.samples, args.max_new_tokens)

        # Two threads on the first batches only: two threads on two cores stall badly as soon
        # as anything else runs, and only the rate is compared.
        two_thread_rows = args.batch_size * args.two_thread_batches
        plain_runs: dict[int, list[dict[str, Any]]] = {1: [], 2: []}
        pair_runs: list[dict[str, Any]] = []
        call_runs: dict[str, list[dict[str, Any]]] = {}
        start_runs: dict[int, list[float]] = {1: [], 2: []}

        pools = KeptPools()
        ray.init(address="local", num_cpus=4, include_dashboard=False,
                 runtime_env={"env_vars": {"TOKENIZERS_PARALLELISM": "false",
                                           "HF_HUB_OFFLINE": "1"}})
        try:
            ray.data.DataContext.get_current().enable_progress_bars = False
            common = {"model_path": model_path, "samples": args.samples,
                      "max_new_tokens": args.max_new_tokens, "batch_size": args.batch_size,
                      "batches_per_block": args.batches_per_block, "pools": pools}
            # A first call warms Ray up (worker processes, imports); not reported.
            ray_data(str(work / "warm"), out_dir=str(work / "out-warm"), actors=1, **common)
            # Every path once per repeat, interleaved, so a slow spell of the machine slows
            # all of them; the best of the repeats counts for each.
            for repeat in range(args.repeats):
                for threads, rows in ((1, requests), (2, requests[:two_thread_rows])):
                    plain_runs[threads].append(
                        plain_loop(model_path, rows, args.batch_size, threads))
                    shown = {k: v for k, v in plain_runs[threads][-1].items()
                             if k != "batch_tokens"}
                    print(f"[bench] repeat {repeat}, plain loop: {shown}", flush=True)
                pair_runs.append(side_by_side(model_path, args, plain_runs[1][-1]["batches"]))
                print(f"[bench] repeat {repeat}, two plain loops side by side: "
                      f"{pair_runs[-1]['loops']}", flush=True)
                for keep_alive in (False, True):
                    for actors in (1, 2):
                        if keep_alive:  # started once (timed on its own), then the call
                            started = time.perf_counter()
                            pools.start(model_path, EngineConfig(
                                actors=actors, cpus_per_actor=1, keep_alive=True))
                            start_runs[actors].append(time.perf_counter() - started)
                        # A kept pool's first call also pays the engines' first batches in
                        # fresh processes; the second is what every later stage costs.
                        keys = ([f"kept_first_{actors}", f"kept_{actors}"] if keep_alive
                                else [str(actors)])
                        for key in keys:
                            call_runs.setdefault(key, []).append(ray_data(
                                str(work / "prompts"),
                                out_dir=str(work / f"out-{key}-{repeat}"),
                                actors=actors, keep_alive=keep_alive, **common))
                            print(f"[bench] repeat {repeat}, {key}: {call_runs[key][-1]}",
                                  flush=True)
                        pools.release()
        finally:
            ray.shutdown()
    load_after = os.getloadavg()
    report(args, requests, plain_runs, pair_runs, call_runs, start_runs, load_before,
           load_after)


def report(args: argparse.Namespace, requests: list[dict[str, Any]],
           plain_runs: dict[int, list[dict[str, Any]]], pair_runs: list[dict[str, Any]],
           call_runs: dict[str, list[dict[str, Any]]], start_runs: dict[int, list[float]],
           load_before: tuple[float, ...], load_after: tuple[float, ...]) -> None:
    plain = {threads: min(runs, key=lambda r: r["seconds"])
             for threads, runs in plain_runs.items()}
    calls = {key: min(runs, key=lambda r: r["seconds"]) for key, runs in call_runs.items()}
    running = {key: min(runs, key=lambda r: r["engine_window"]["seconds"])
               for key, runs in call_runs.items()}
    running_median = {key: statistics.median(r["running_tokens_per_second"] for r in runs)
                      for key, runs in call_runs.items()}
    pool_starts = {actors: min(runs) for actors, runs in start_runs.items()}
    pair = min(pair_runs, key=lambda r: r["seconds"])

    base = plain[1]
    base_median = statistics.median(r["tokens_per_second"] for r in plain_runs[1])

    def ratio(key: str) -> float:
        return running[key]["running_tokens_per_second"] / base["tokens_per_second"]

    def overhead(key: str) -> float:
        return 100 * (running[key]["running_seconds_per_batch"] / base["seconds_per_batch"] - 1)

    speedup, kept_speedup = ratio("2"), ratio("kept_2")
    median_speedup = running_median["2"] / base_median
    batch_overhead, kept_overhead = overhead("1"), overhead("kept_1")
    whole_speedup = calls["2"]["tokens_per_second"] / base["tokens_per_second"]
    kept_whole_speedup = calls["kept_2"]["tokens_per_second"] / base["tokens_per_second"]
    of_ceiling = running["2"]["running_tokens_per_second"] / pair["tokens_per_second"]
    same_tokens = (len({base["tokens"], pair["tokens"],
                        *(c["tokens"] for c in calls.values())}) == 1
                   and plain[2]["batch_tokens"] == base["batch_tokens"][:plain[2]["batches"]]
                   and pair["batch_tokens"] == base["batch_tokens"])
    busiest = max([load_before[0], load_after[0]]
                  + [r["load_average"] for runs in [*plain_runs.values(), *call_runs.values()]
                     for r in runs])

    print()
    print(f"Generation: {args.prompts} prompts x {args.samples} samples = {len(requests)} "
          f"requests, max_new_tokens {args.max_new_tokens}, batch {args.batch_size} "
          f"({base['batches']} batches), {args.batches_per_block} batches a block, "
          f"{os.cpu_count()} CPUs, best of {args.repeats} interleaved runs of each path")
    print(f"load average before/after: {load_before[0]:.1f} / {load_after[0]:.1f}, "
          f"highest seen {busiest:.1f}")
    if busiest > (os.cpu_count() or 1) + 3:  # our own actors and Ray make about 3
        print(f"WARNING: the load average reached {busiest:.1f} on {os.cpu_count()} CPUs, more "
              "than this run's own actors and Ray processes make: other processes probably "
              "competed for the CPUs and the figures are unreliable. Rerun on a quiet machine.")
    print(f"generated token counts identical on every path: {same_tokens}")
    print(f"{'path':<34} {'tokens':>7} {'whole call':>11} {'tokens/s':>9} "
          f"{'engines ran':>12} {'tokens/s':>9} {'busy':>12}")
    print(f"{'plain loop, 1 thread':<34} {base['tokens']:>7} {base['seconds']:>10.2f}s "
          f"{base['tokens_per_second']:>9.0f}")
    print(f"{'plain loop, 2 threads (' + str(plain[2]['batches']) + ' batches)':<34} "
          f"{plain[2]['tokens']:>7} {plain[2]['seconds']:>10.2f}s "
          f"{plain[2]['tokens_per_second']:>9.0f}")
    print(f"{'two plain loops side by side':<34} {pair['tokens']:>7} "
          f"{pair['seconds']:>10.2f}s {pair['tokens_per_second']:>9.0f}")
    labels = {"1": "Ray Data, 1 actor", "2": "Ray Data, 2 actors",
              "kept_first_1": "kept pool of 1, first call", "kept_1": "kept pool of 1, later",
              "kept_first_2": "kept pool of 2, first call", "kept_2": "kept pool of 2, later"}
    for key, label in labels.items():
        call, run = calls[key], running[key]
        busy = ", ".join(f"{b:.0%}" for b in run["engine_window"]["busy"])
        print(f"{label:<34} {call['tokens']:>7} {call['seconds']:>10.2f}s "
              f"{call['tokens_per_second']:>9.0f} {run['engine_window']['seconds']:>11.2f}s "
              f"{run['running_tokens_per_second']:>9.0f} {busy:>12}")
    for key, label in labels.items():
        print(f"{label}: fixed cost of a call {calls[key]['fixed_seconds']:.1f} s (start-up "
              f"{calls[key]['engine_window']['first_start']:.1f} s), then "
              f"{running[key]['running_seconds_per_batch']:.3f} s a batch; this process used "
              f"{calls[key]['driver_cpu_seconds']:.1f} s of CPU")
    print(f"kept pool of 1 / of 2 started once in {pool_starts[1]:.1f} s / "
          f"{pool_starts[2]:.1f} s")
    speedup_met = speedup >= SPEEDUP_TARGET
    kept_met = kept_speedup >= SPEEDUP_TARGET
    overhead_met = batch_overhead < OVERHEAD_TARGET
    print(f"2 actors / plain loop (1 thread), once the pool runs: {speedup:.2f}x (median of "
          f"the runs {median_speedup:.2f}x); target >= {SPEEDUP_TARGET}x: "
          f"{'met' if speedup_met else 'NOT met'}")
    print(f"two plain loops side by side / plain loop: "
          f"{pair['tokens_per_second'] / base['tokens_per_second']:.2f}x (what the two cores "
          f"give two engines without Ray); 2 actors once the pool runs reach "
          f"{of_ceiling:.0%} of it")
    print(f"kept pool of 2, a later call / plain loop (1 thread), once the pool runs: "
          f"{kept_speedup:.2f}x; "
          f"target >= {SPEEDUP_TARGET}x: {'met' if kept_met else 'NOT met'}")
    print(f"whole calls / plain loop: 2 actors {whole_speedup:.2f}x (start-up included), "
          f"kept pool of 2, a later call {kept_whole_speedup:.2f}x")
    print(f"2 actors / plain loop (2 threads), once the pool runs: "
          f"{running['2']['running_tokens_per_second'] / plain[2]['tokens_per_second']:.2f}x")
    print(f"1 actor per-batch overhead vs plain loop: {batch_overhead:+.1f}% "
          f"({running['1']['running_seconds_per_batch']:.3f} s vs "
          f"{base['seconds_per_batch']:.3f} s a batch); target < {OVERHEAD_TARGET:.0f}%: "
          f"{'met' if overhead_met else 'NOT met'}; kept pool of 1: {kept_overhead:+.1f}%")

    results = RESULTS.with_name(args.results)
    results.parent.mkdir(parents=True, exist_ok=True)
    results.write_text(json.dumps({
        "benchmark": "generation",
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "cpu_count": os.cpu_count(),
        "load_average_before_after": [load_before[0], load_after[0]],
        "load_average_highest": busiest,
        "versions": versions(),
        "settings": {"prompts": args.prompts, "samples": args.samples,
                     "requests": len(requests), "max_new_tokens": args.max_new_tokens,
                     "batch_size": args.batch_size, "batches": base["batches"],
                     "batches_per_block": args.batches_per_block,
                     "two_thread_batches": args.two_thread_batches,
                     "repeats": args.repeats, "temperature": TEMPERATURE, "top_p": TOP_P},
        "token_counts_identical": same_tokens,
        "plain_loop": {f"threads_{k}": v for k, v in plain.items()},
        "two_plain_loops_side_by_side": {k: v for k, v in pair.items() if k != "batch_tokens"},
        "speedup_two_plain_loops_side_by_side": pair["tokens_per_second"]
        / base["tokens_per_second"],
        "share_of_side_by_side_2_actors_running": of_ceiling,
        "ray_data_calls_fastest_whole": calls,
        "ray_data_calls_fastest_running": running,
        "kept_pool_start_seconds": {f"actors_{k}": v for k, v in pool_starts.items()},
        "all_runs": {"plain_loop": {f"threads_{k}": [{x: y for x, y in r.items()
                                                      if x != "batch_tokens"} for r in v]
                                    for k, v in plain_runs.items()},
                     "two_plain_loops_side_by_side": [
                         {k: v for k, v in r.items() if k != "batch_tokens"}
                         for r in pair_runs],
                     "ray_data_calls": call_runs,
                     "kept_pool_start_seconds": {f"actors_{k}": v
                                                 for k, v in start_runs.items()}},
        "speedup_2_actors_running": speedup,
        "speedup_2_actors_running_median": median_speedup,
        "speedup_kept_pool_2_running": kept_speedup,
        "speedup_2_actors_whole_call": whole_speedup,
        "speedup_kept_pool_2_whole_call": kept_whole_speedup,
        "speedup_target": SPEEDUP_TARGET,
        "speedup_target_met": speedup_met,
        "speedup_target_met_kept_pool": kept_met,
        "per_batch_overhead_percent": batch_overhead,
        "kept_pool_per_batch_overhead_percent": kept_overhead,
        "overhead_target_percent": OVERHEAD_TARGET,
        "overhead_target_met": overhead_met,
    }, indent=2) + "\n")
    print(f"wrote {results.name} under bench/results/")


if __name__ == "__main__":
    main()
