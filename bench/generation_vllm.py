"""Generation throughput of the `vllm` engine beside the `hf` one.

The same request rows as the rest of the bench (`generation.make_requests`: one row per sample,
each with its own seed, temperature 0.7, top-p 0.9), on two models built on the spot with the
shipped tokenizer: the tiny model (`build_tiny_model`'s defaults) and a larger Llama of the same
shape family (`--larger-hidden`, `--larger-layers`: 24.65M parameters by default).

- Engine against engine, in this process, no Ray: the plain loop (an `HFEngine` called batch by
  batch, `--batch-size` rows, 1 torch thread: one hf actor's core) against vLLM's offline engine
  (`vllm.LLM` with our engine arguments, `engines.vllm.vllm_engine_kwargs` of an
  `EngineConfig(kind="vllm", dtype=...)`), which takes every request at once and batches them
  itself. vLLM's CPU build binds its worker to one core and keeps the other for its scheduler
  process. Per model and dtype (`--vllm-dtypes`): the engine starts once (timed: start-up),
  then the plain loop and vLLM run `--repeats` times, interleaved. With bfloat16 the plain loop
  casts the model to bfloat16 too. Timed: the generate calls only.
- Every vLLM engine here takes the project's CPU arguments, chunked prefill off among them
  (vLLM's CPU build otherwise fails seeded requests at this size; engines/vllm.py).
- The whole stage through Ray Data: `generate_candidates` with `engine.kind` hf (1 actor,
  float32, its only dtype) and vllm (1 engine per dtype), `--batch-size` rows a batch,
  `--stage-repeats` times, interleaved. Timed: the whole call, engine start-up
  included; Ray's task timeline gives the engines' window (first engine task's start to the
  last one's end), the call once the engine runs.

Target (printed, never asserted): vLLM >= 3x the hf engine's tokens/s once running on the
larger model. Results go to bench/results/generation_vllm.json (or `--vllm-results`).
"""

from __future__ import annotations

import argparse
import gc
import json
import math
import os
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from generation import (
    SEED,
    TEMPERATURE,
    TOP_P,
    base_parser,
    engine_tasks,
    make_prompts,
    make_requests,
    plain_loop,
    settled_engine_tasks,
)
from generation_report import RESULTS, versions

VLLM_TARGET = 3.0
STAGE_TASKS = {"hf": "MapBatches(HFEngine)).submit",
               "vllm": "MapBatches(vLLMEngineStageUDF)).submit"}
"""How Ray's timeline names each engine's tasks in a Ray Data stage."""


def build_models(work: Path, args: argparse.Namespace) -> dict[str, dict[str, Any]]:
    """The models `--models` names, each with its parameter count."""
    from safetensors import safe_open

    from temporal_ray.miniature.tiny_model import build_tiny_model

    sizes: dict[str, dict[str, int]] = {
        "tiny": {}, "larger": {"hidden_size": args.larger_hidden,
                               "num_layers": args.larger_layers}}
    models = {}
    for name in args.models.split(","):
        path = build_tiny_model(work / name, **sizes[name])
        with safe_open(str(path / "model.safetensors"), "pt") as weights:
            params = sum(math.prod(weights.get_slice(k).get_shape()) for k in weights.keys())
        models[name] = {"path": str(path), "parameters": params, **sizes[name]}
        print(f"[bench] model {name}: {params / 1e6:.2f}M parameters", flush=True)
    return models


def vllm_kwargs(dtype: str) -> dict[str, Any]:
    """Our vLLM engine arguments on this device (eager, 1 GiB KV cache, chunked prefill off),
    with `dtype`."""
    from temporal_ray.config import EngineConfig
    from temporal_ray.engines.vllm import vllm_engine_kwargs

    return vllm_engine_kwargs(EngineConfig(kind="vllm", dtype=dtype))


def vllm_run(llm: Any, requests: list[dict[str, Any]]) -> dict[str, Any]:
    """Every request in one call, each with its own seed, as Ray Data LLM's stage sends them."""
    from vllm import SamplingParams

    params = [SamplingParams(**r["sampling_params"]) for r in requests]
    started = time.perf_counter()
    outputs = llm.chat([r["messages"] for r in requests], params, use_tqdm=False)
    seconds = time.perf_counter() - started
    tokens = sum(len(o.outputs[0].token_ids) for o in outputs)
    return {"seconds": seconds, "tokens": tokens, "tokens_per_second": tokens / seconds,
            "load_average": os.getloadavg()[0]}


def engine_pair(model: dict[str, Any], dtype: str, requests: list[dict[str, Any]],
                args: argparse.Namespace) -> dict[str, Any]:
    """vLLM started once (timed), then the plain loop and vLLM `--repeats` times each."""
    from vllm import LLM

    started = time.perf_counter()
    llm = LLM(model=model["path"], seed=SEED, **vllm_kwargs(dtype))
    start_seconds = time.perf_counter() - started
    print(f"[bench] vLLM {dtype} started in {start_seconds:.1f} s", flush=True)
    hf_dtype = None if dtype == "float32" else dtype
    hf, vllm = [], []
    try:
        vllm_run(llm, requests[: args.batch_size])  # its first batch (warm-up), not timed
        for repeat in range(args.repeats):
            hf.append(without_batches(plain_loop(
                model["path"], requests, args.batch_size, 1, dtype=hf_dtype)))
            vllm.append(vllm_run(llm, requests))
            print(f"[bench] {dtype} repeat {repeat}: plain loop "
                  f"{hf[-1]['tokens_per_second']:.0f} tok/s, vLLM "
                  f"{vllm[-1]['tokens_per_second']:.0f} tok/s", flush=True)
    finally:
        del llm  # its engine processes end with it: one vLLM at a time on the cores
        gc.collect()
    return {"dtype": dtype, "vllm_start_seconds": start_seconds, "plain_loop": hf,
            "vllm": vllm}


def without_batches(run: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in run.items() if k != "batch_tokens"}


def stage_call(prompts_path: str, model_path: str, out_dir: str, kind: str, dtype: str | None,
               args: argparse.Namespace) -> dict[str, Any]:
    """One call of the generate stage on a fresh pool of 1 engine; the whole call timed."""
    from temporal_ray.config import EngineConfig, GenerationConfig
    from temporal_ray.engines.pool import EnginePool
    from temporal_ray.stages.generate import generate_candidates
    from temporal_ray.storage.files import read_rows

    generation = GenerationConfig(samples=args.samples, max_new_tokens=args.max_new_tokens,
                                  temperature=TEMPERATURE, top_p=TOP_P, seed=SEED)
    engine = EngineConfig(kind=kind, actors=1, batch_size=args.batch_size, cpus_per_actor=1,
                          batches_per_block=args.batches_per_block, dtype=dtype)
    wall_start = time.time()
    started = time.perf_counter()
    generate_candidates(prompts_path, {"policy": model_path}, generation, EnginePool(engine),
                        out_dir)
    seconds, wall_end = time.perf_counter() - started, time.time()
    rows = read_rows(out_dir, columns=["response_tokens"])
    tokens = sum(int(r["response_tokens"]) for r in rows)
    # A vLLM stage runs several batches on its engine at once, so count no tasks in advance:
    # wait for Ray's task events to come in (every second or so) and stop changing.
    blocks = -(-len(rows) // engine.block_rows(len(rows))) if kind == "hf" else 1
    tasks = settled_engine_tasks(wall_start, wall_end, blocks, (STAGE_TASKS[kind],))
    if kind == "vllm":
        time.sleep(3)
        tasks = engine_tasks(wall_start, wall_end, (STAGE_TASKS[kind],)) or tasks
    first = min(t["start"] for t in tasks)
    window = max(t["end"] for t in tasks) - first
    return {"kind": kind, "dtype": dtype or "float32", "batch_size": args.batch_size,
            "seconds": seconds, "tokens": tokens, "rows": len(rows),
            "tokens_per_second": tokens / seconds, "engine_tasks": len(tasks),
            "engine_start_offset_seconds": first - wall_start, "window_seconds": window,
            "running_tokens_per_second": tokens / window, "load_average": os.getloadavg()[0]}


def stage_paths(work: Path, models: dict[str, dict[str, Any]], prompts: list[dict[str, Any]],
                args: argparse.Namespace) -> dict[str, list[dict[str, Any]]]:
    """The generate stage with the hf engine and with vLLM at each dtype, interleaved."""
    import ray
    import ray.data

    from temporal_ray.storage.files import write_rows

    write_rows(prompts, str(work / "prompts" / "prompts.parquet"))
    write_rows(prompts[:4], str(work / "warm" / "prompts.parquet"))
    paths = [("hf", None)] + [("vllm", dtype) for dtype in args.vllm_dtypes.split(",")]
    calls: dict[str, list[dict[str, Any]]] = {}
    ray.init(address="local", num_cpus=4, include_dashboard=False,
             runtime_env={"env_vars": {"TOKENIZERS_PARALLELISM": "false",
                                       "HF_HUB_OFFLINE": "1"}})
    try:
        ray.data.DataContext.get_current().enable_progress_bars = False
        # A first call warms Ray up (worker processes, imports); not reported.
        stage_call(str(work / "warm"), next(iter(models.values()))["path"],
                   str(work / "out-warm"), "hf", None, args)
        for repeat in range(args.stage_repeats):
            for name, model in models.items():
                for kind, dtype in paths:
                    key = f"{name} {kind}" + (f" {dtype}" if dtype else "")
                    calls.setdefault(key, []).append(stage_call(
                        str(work / "prompts"), model["path"],
                        str(work / f"out-{key.replace(' ', '-')}-{repeat}"), kind, dtype, args))
                    print(f"[bench] stage repeat {repeat}, {key}: {calls[key][-1]}", flush=True)
    finally:
        ray.shutdown()
    return calls


def measure_engines(args: argparse.Namespace) -> dict[str, Any]:
    """Engine against engine for every model and dtype, then the whole stages."""
    import logging

    # ray.timeline() warns on every call that a later Ray will read it from the dashboard.
    logging.getLogger("ray._private.state").setLevel(logging.ERROR)
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="bench-gen-vllm-") as tmp:
        work = Path(tmp)
        models = build_models(work, args)
        prompts = make_prompts(args.vllm_prompts)
        requests = make_requests(prompts, args.samples, args.max_new_tokens)
        engines = {name: [engine_pair(model, dtype, requests, args)
                          for dtype in args.vllm_dtypes.split(",")]
                   for name, model in models.items()}
        stages = stage_paths(work, models, prompts, args) if args.stage_repeats else {}
    return {"models": {name: {k: v for k, v in m.items() if k != "path"}
                       for name, m in models.items()},
            "requests": len(requests), "engines": engines, "stages": stages,
            "load_before": load_before, "load_after": os.getloadavg()}


def best(runs: list[dict[str, Any]], key: str = "tokens_per_second") -> float:
    return max(r[key] for r in runs)


def median(runs: list[dict[str, Any]], key: str = "tokens_per_second") -> float:
    return statistics.median(r[key] for r in runs)


def engine_ratios(measured: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Per model and dtype: tokens/s of each engine (best, median) and vLLM / plain loop;
    `vllm_over_hf_float32`: vLLM at that dtype against the hf engine as it ships (float32)."""
    ratios: dict[str, dict[str, Any]] = {}
    for name, pairs in measured["engines"].items():
        fp32 = next((p for p in pairs if p["dtype"] == "float32"), None)
        for pair in pairs:
            hf, vllm = pair["plain_loop"], pair["vllm"]
            figures = {
                "vllm_start_seconds": pair["vllm_start_seconds"],
                "plain_loop_best": best(hf), "plain_loop_median": median(hf),
                "vllm_best": best(vllm), "vllm_median": median(vllm),
                "vllm_over_plain_loop": best(vllm) / best(hf),
                "vllm_over_plain_loop_median": median(vllm) / median(hf)}
            if fp32 is not None:
                figures["vllm_over_hf_float32"] = best(vllm) / best(fp32["plain_loop"])
            ratios[f"{name} {pair['dtype']}"] = figures
    return ratios


def stage_ratios(measured: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Per stage path: the fastest whole call and the shortest engines' window, each against
    the hf stage's on the same model."""
    out: dict[str, dict[str, Any]] = {}
    for key, calls in measured["stages"].items():
        hf = measured["stages"][key.split(" ")[0] + " hf"]
        out[key] = {
            "whole_call_seconds": min(c["seconds"] for c in calls),
            "whole_call_tokens_per_second": best(calls),
            "engine_start_offset_seconds": min(c["engine_start_offset_seconds"] for c in calls),
            "running_tokens_per_second": best(calls, "running_tokens_per_second"),
            "whole_call_over_hf": best(calls) / best(hf),
            "running_over_hf": best(calls, "running_tokens_per_second")
            / best(hf, "running_tokens_per_second")}
    return out


def print_report(args: argparse.Namespace, measured: dict[str, Any],
                 engines: dict[str, dict[str, Any]], stages: dict[str, dict[str, Any]]) -> None:
    print()
    print(f"vLLM beside the hf engine: {measured['requests']} requests ({args.vllm_prompts} "
          f"prompts x {args.samples} samples), max_new_tokens {args.max_new_tokens}, plain "
          f"loop batch {args.batch_size} on 1 thread, {os.cpu_count()} CPUs; best of "
          f"{args.repeats} interleaved runs (median beside it)")
    print("models: " + ", ".join(f"{name} {m['parameters'] / 1e6:.2f}M parameters"
                                 for name, m in measured["models"].items()))
    print(f"load average before/after: {measured['load_before'][0]:.1f} / "
          f"{measured['load_after'][0]:.1f}")
    print(f"{'model, dtype':<18} {'vLLM start':>10} {'plain tok/s':>16} {'vLLM tok/s':>16} "
          f"{'vLLM / plain':>16} {'/ hf fp32':>9}")
    for key, e in engines.items():
        print(f"{key:<18} {e['vllm_start_seconds']:>9.1f}s "
              f"{e['plain_loop_best']:>7.0f} ({e['plain_loop_median']:>6.0f}) "
              f"{e['vllm_best']:>7.0f} ({e['vllm_median']:>6.0f}) "
              f"{e['vllm_over_plain_loop']:>7.2f}x ({e['vllm_over_plain_loop_median']:.2f}x) "
              f"{e.get('vllm_over_hf_float32', float('nan')):>8.2f}x")
    if stages:
        print(f"{'stage (1 engine)':<24} {'whole call':>10} {'tok/s':>7} {'engine from':>11} "
              f"{'running tok/s':>13} {'/ hf whole':>10} {'/ hf running':>12}")
    for key, s in stages.items():
        print(f"{key:<24} {s['whole_call_seconds']:>9.1f}s "
              f"{s['whole_call_tokens_per_second']:>7.0f} "
              f"{s['engine_start_offset_seconds']:>10.1f}s "
              f"{s['running_tokens_per_second']:>13.0f} {s['whole_call_over_hf']:>9.2f}x "
              f"{s['running_over_hf']:>11.2f}x")
    for key, e in engines.items():
        if key.startswith("larger"):
            met = e.get("vllm_over_hf_float32", 0) >= VLLM_TARGET
            print(f"vLLM ({key}) / the hf engine (float32), once running: "
                  f"{e.get('vllm_over_hf_float32', float('nan')):.2f}x; target >= "
                  f"{VLLM_TARGET}x: {'met' if met else 'NOT met'}")


def report_engines(args: argparse.Namespace, measured: dict[str, Any]) -> None:
    """Print the figures and write them under bench/results/."""
    engines, stages = engine_ratios(measured), stage_ratios(measured)
    print_report(args, measured, engines, stages)
    import vllm

    results = RESULTS.with_name(args.vllm_results)
    results.parent.mkdir(parents=True, exist_ok=True)
    results.write_text(json.dumps({
        "date_utc": time.strftime("%Y-%m-%d %H:%M", time.gmtime()), "cpus": os.cpu_count(),
        "versions": {**versions(), "vllm": vllm.__version__},
        "settings": {"prompts": args.vllm_prompts, "samples": args.samples,
                     "requests": measured["requests"], "max_new_tokens": args.max_new_tokens,
                     "plain_loop_batch_size": args.batch_size, "plain_loop_threads": 1,
                     "batches_per_block": args.batches_per_block, "repeats": args.repeats,
                     "stage_repeats": args.stage_repeats, "temperature": TEMPERATURE,
                     "top_p": TOP_P, "vllm_engine_kwargs": {
                         d: vllm_kwargs(d) for d in args.vllm_dtypes.split(",")}},
        "target": VLLM_TARGET, "engines": engines, "stages": stages, "all_runs": measured},
        indent=2) + "\n")
    print(f"wrote {results.name} under bench/results/")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of the vLLM part, beside generation.py's."""
    parser.add_argument("--models", default="tiny,larger",
                        help="vLLM part: models to build, of tiny and larger")
    parser.add_argument("--larger-hidden", type=int, default=512,
                        help="vLLM part: hidden size of the larger Llama")
    parser.add_argument("--larger-layers", type=int, default=10,
                        help="vLLM part: layers of the larger Llama")
    parser.add_argument("--vllm-dtypes", default="float32,bfloat16",
                        help="vLLM part: dtypes to run vLLM (and the plain loop) at")
    parser.add_argument("--vllm-prompts", type=int, default=64,
                        help="vLLM part: prompts (x --samples requests)")
    parser.add_argument("--stage-repeats", type=int, default=1,
                        help="vLLM part: runs of each whole stage (0: none)")
    parser.add_argument("--vllm-results", default="generation_vllm.json",
                        help="vLLM part: file name under bench/results/")


def main() -> None:
    parser = base_parser()
    add_arguments(parser)
    args = parser.parse_args()
    report_engines(args, measure_engines(args))


if __name__ == "__main__":
    main()
