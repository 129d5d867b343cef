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
runs; per-batch overhead of 1 actor < 10%. Results go to bench/results/generation.json
(printed and written by bench/generation_report.py).

bench/generation_vllm.py runs the vllm engine beside the hf engine and the plain loop, on the
same requests and options (engine start-up apart from tokens/s once running, on the tiny model
and a larger Llama).

    .venv/bin/python bench/generation.py [--prompts 256] [--samples 4] [--max-new-tokens 32]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from generation_report import RESULTS, Runs, report

if TYPE_CHECKING:
    from temporal_ray.engines.kept_pool import KeptPools

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

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
               threads: int, loaded: Callable[[], None] | None = None,
               dtype: str | None = None) -> dict[str, Any]:
    """The engine called batch by batch in this process; the model load is not timed.
    `loaded` is called once the model is loaded, before the first batch. `dtype`: cast the
    model to it (the engine loads float32 on CPUs)."""
    import pandas as pd
    import torch

    from temporal_ray.engines.hf import HFEngine

    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        engine = HFEngine(model_path)
        if dtype:
            engine.model.to(getattr(torch, dtype))
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


def engine_tasks(started: float, ended: float,
                 names: tuple[str, ...] = ENGINE_TASKS) -> list[dict[str, Any]]:
    """The engine tasks (named as `names` end) Ray's timeline holds between two wall-clock
    times (seconds)."""
    import ray

    tasks = []
    for event in ray.timeline():
        if event.get("ph") != "X" or not str(event.get("cat", "")).endswith(names):
            continue
        begin = event["ts"] / 1e6
        end = begin + event["dur"] / 1e6
        if begin >= started and end <= ended:
            tasks.append({"actor": event["tid"], "start": begin, "end": end})
    return tasks


def settled_engine_tasks(started: float, ended: float, blocks: int,
                         names: tuple[str, ...] = ENGINE_TASKS) -> list[dict[str, Any]]:
    """Workers report task events to Ray every second or so: wait until all have come in."""
    deadline = time.time() + 30
    while True:
        tasks = engine_tasks(started, ended, names)
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


def base_parser() -> argparse.ArgumentParser:
    """The options of the requests and the repeats, which bench/generation_vllm.py shares."""
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
    return parser


def parse_args() -> argparse.Namespace:
    parser = base_parser()
    parser.add_argument("--plain-loop-child", help=argparse.SUPPRESS)  # side_by_side's
    parser.add_argument("--child-rows", help=argparse.SUPPRESS)
    return parser.parse_args()


def plain_paths(args: argparse.Namespace, repeat: int, model_path: str,
                requests: list[dict[str, Any]], runs: Runs) -> None:
    """One repeat of the plain loops: 1 thread, 2 threads, two 1-thread loops side by side."""
    # Two threads on the first batches only: two threads on two cores stall badly as soon
    # as anything else runs, and only the rate is compared.
    two_thread_rows = args.batch_size * args.two_thread_batches
    for threads, rows in ((1, requests), (2, requests[:two_thread_rows])):
        runs.plain[threads].append(plain_loop(model_path, rows, args.batch_size, threads))
        shown = {k: v for k, v in runs.plain[threads][-1].items() if k != "batch_tokens"}
        print(f"[bench] repeat {repeat}, plain loop: {shown}", flush=True)
    runs.pairs.append(side_by_side(model_path, args, runs.plain[1][-1]["batches"]))
    print(f"[bench] repeat {repeat}, two plain loops side by side: "
          f"{runs.pairs[-1]['loops']}", flush=True)


def pool_paths(repeat: int, work: Path, pools: KeptPools, common: dict[str, Any],
               runs: Runs) -> None:
    """One repeat of the Ray Data calls: actor pools of 1 and 2, then kept pools of 1 and 2."""
    from temporal_ray.config import EngineConfig

    for keep_alive in (False, True):
        for actors in (1, 2):
            if keep_alive:  # started once (timed on its own), then the call
                started = time.perf_counter()
                pools.start(common["model_path"], EngineConfig(
                    actors=actors, cpus_per_actor=1, keep_alive=True))
                runs.starts[actors].append(time.perf_counter() - started)
            # A kept pool's first call also pays the engines' first batches in fresh
            # processes; the second is what every later stage costs.
            keys = [f"kept_first_{actors}", f"kept_{actors}"] if keep_alive else [str(actors)]
            for key in keys:
                runs.calls.setdefault(key, []).append(ray_data(
                    str(work / "prompts"), out_dir=str(work / f"out-{key}-{repeat}"),
                    actors=actors, keep_alive=keep_alive, **common))
                print(f"[bench] repeat {repeat}, {key}: {runs.calls[key][-1]}", flush=True)
            pools.release()


def measure(args: argparse.Namespace) -> tuple[list[dict[str, Any]], Runs]:
    """Every path `--repeats` times on a fresh tiny model, with Ray running throughout."""
    import logging

    import ray
    import ray.data

    # ray.timeline() warns on every call that a later Ray will read it from the dashboard.
    logging.getLogger("ray._private.state").setLevel(logging.ERROR)

    from temporal_ray.engines.kept_pool import KeptPools
    from temporal_ray.miniature.tiny_model import build_tiny_model
    from temporal_ray.storage.files import write_rows

    runs = Runs(load_before=os.getloadavg())
    with tempfile.TemporaryDirectory(prefix="bench-gen-") as tmp:
        work = Path(tmp)
        model_path = str(build_tiny_model(work / "model"))
        prompts = make_prompts(args.prompts)
        write_rows(prompts, str(work / "prompts" / "prompts.parquet"))
        write_rows(prompts[:4], str(work / "warm" / "prompts.parquet"))
        requests = make_requests(prompts, args.samples, args.max_new_tokens)
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
                plain_paths(args, repeat, model_path, requests, runs)
                pool_paths(repeat, work, pools, common, runs)
        finally:
            ray.shutdown()
    runs.load_after = os.getloadavg()
    return requests, runs


def main() -> None:
    args = parse_args()
    if args.plain_loop_child:
        plain_loop_child(args)
        return
    requests, runs = measure(args)
    report(args, requests, runs, {"temperature": TEMPERATURE, "top_p": TOP_P})


if __name__ == "__main__":
    main()
