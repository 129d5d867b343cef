"""DPO training throughput: our DPO stage (Ray Train + DeepSpeed ZeRO-3) against TRL's DPOTrainer.

What is measured: training tokens per second on CPU, both sides in the same run, on the same
tiny model (`temporal_ray.miniature.tiny_model.build_tiny_model`), the same synthetic
pairs and the same global batch (pairs per optimizer step).

- Pairs: deterministic (seeded) prompts "What is {a} plus {b}?" with chosen and rejected
  responses of 3..60 random words from a fixed vocabulary, so lengths vary and length bucketing
  matters.
- Tokens: prompt + response tokens of chosen and rejected (response followed by EOS, prompt
  through the chat template), counted once with our tokenizer (`dpo.batches.tokenize_pair`, the
  worker's own count, `train_tokens`). The same numerator serves both sides; the script checks
  that TRL tokenises the same pairs to the same total.
- Ours: `temporal_ray.stages.dpo.train_dpo` with 2 workers (one CPU core each), ZeRO-3
  gathering whole transformer blocks (the stage's default; `--per-module-gathers` for
  DeepSpeed's per-module gathers),
  `batch_size` B, `micro_batch_size` M (default B / 2: no gradient accumulation, as on TRL's
  side; 8 and 4). Time = `reference_seconds` + `train_seconds` from the metrics the worker
  writes: the one-off reference log-prob pass plus the training loop. TRL computes reference
  log-probs inside its loop, so the reference pass is counted. Train-only throughput is
  printed too. Ray Train start-up, model loading, the DeepSpeed set-up and the final export
  are outside both figures.
- TRL: `trl.DPOTrainer` in this process with 2 torch threads (our 2 workers use one core each)
  and again with 1 thread; the faster is the baseline. A separate `ref_model`; the pairs as
  plain prompt (chat template applied) / chosen / rejected text; per-device batch B with no
  gradient accumulation; fp32. Time = `train_runtime` of `trainer.train()`.
- Order: TRL (2 threads, 1 thread) then ours, `--repeats` times; the best run of each side
  is reported. The load average is recorded with each run: on a busy machine the figures mean
  little, and the script says so.

The ratio ours/TRL is printed against the target (>= 1.3x); nothing is asserted. Results go to
bench/results/dpo_throughput.json.

    .venv/bin/python bench/dpo_throughput.py [--pairs 64] [--batch-size 8] [--repeats 2]
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import random
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

TARGET = 1.3
TRL_THREADS = (2, 1)
RESULTS = Path(__file__).resolve().parent / "results" / "dpo_throughput.json"
WORDS = (
    "the a one two three four five six seven eight nine ten sum is number answer plus add "
    "total result makes equals first then we get so count more less than value simple "
    "because think it and of to in that this for with as on be at by from was were are"
).split()


def make_pairs(count: int, seed: int) -> list[dict[str, str]]:
    """Deterministic pairs with responses of varied word counts (3..60)."""
    rng = random.Random(seed)

    def response() -> str:
        return " ".join(rng.choice(WORDS) for _ in range(rng.randint(3, 60)))

    pairs = []
    for _ in range(count):
        a, b = rng.randint(0, 99), rng.randint(0, 99)
        pairs.append({"prompt": f"What is {a} plus {b}?", "chosen": response(),
                      "rejected": response()})
    return pairs


def count_tokens(model_path: str, pairs: list[dict[str, str]], max_length: int) -> int:
    """Prompt + response tokens of chosen and rejected, exactly as our DPO worker counts them."""
    from transformers import AutoTokenizer

    from temporal_ray.core.batching import tokenize_pair

    tokenizer = AutoTokenizer.from_pretrained(model_path)
    examples = [tokenize_pair(tokenizer, p["prompt"], p["chosen"], p["rejected"], max_length)
                for p in pairs]
    return sum(len(e.chosen_ids) + len(e.rejected_ids) for e in examples)


def run_trl(model_path: str, pairs: list[dict[str, str]], batch_size: int, lr: float,
            max_length: int, threads: int, out_dir: str) -> dict[str, Any]:
    """One TRL DPOTrainer run; returns its train_runtime and the tokens TRL trained on."""
    import datasets
    import torch
    import trl
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from temporal_ray.core.batching import prompt_text

    torch.set_num_threads(threads)
    tokenizer = AutoTokenizer.from_pretrained(model_path)
    # Plain text with the chat template already applied: TRL appends EOS to the responses and
    # tokenises prompt + response, which gives exactly our token ids (checked by the caller).
    dataset = datasets.Dataset.from_list([
        {"prompt": prompt_text(tokenizer, p["prompt"]), "chosen": p["chosen"],
         "rejected": p["rejected"]}
        for p in pairs
    ])
    steps = len(pairs) // batch_size
    args = trl.DPOConfig(
        output_dir=out_dir, per_device_train_batch_size=batch_size,
        gradient_accumulation_steps=1, learning_rate=lr, num_train_epochs=1,
        max_length=max_length, beta=0.1, loss_type=["sigmoid"], report_to=[],
        logging_steps=max(steps, 1), use_cpu=True, bf16=False, fp16=False,
        save_strategy="no", dataloader_num_workers=0, disable_tqdm=True, seed=0,
    )
    model = AutoModelForCausalLM.from_pretrained(model_path, dtype=torch.float32)
    ref_model = AutoModelForCausalLM.from_pretrained(model_path, dtype=torch.float32)
    trainer = trl.DPOTrainer(model=model, ref_model=ref_model, args=args,
                             train_dataset=dataset, processing_class=tokenizer)
    prepared = trainer.train_dataset
    tokens = sum(
        min(len(row["prompt_ids"]) + len(row[side]), max_length)
        for row in prepared for side in ("chosen_ids", "rejected_ids"))
    started = time.perf_counter()
    result = trainer.train()
    wall = time.perf_counter() - started
    return {"threads": threads, "seconds": float(result.metrics["train_runtime"]),
            "wall_seconds": wall, "load_average": os.getloadavg()[0],
            "tokens": tokens, "steps": int(result.global_step),
            "train_loss": float(result.metrics.get("train_loss", float("nan")))}


def run_ours(pairs_path: str, model_path: str, work: Path, batch_size: int,
             micro_batch_size: int, lr: float, max_length: int, zero_stage: int,
             index: int, packing: bool = False,
             reference_micro_batch_size: int | None = None,
             zero_options: dict[str, Any] | None = None,
             whole_blocks: bool = True) -> dict[str, Any]:
    """One run of our DPO stage on 2 Ray Train workers; returns its metrics' timings."""
    from temporal_ray.config import DPOConfig
    from temporal_ray.stages.dpo import train_dpo

    cfg = DPOConfig(lr=lr, min_lr=lr / 10, warmup_ratio=0.0, epochs=1, batch_size=batch_size,
                    micro_batch_size=micro_batch_size, max_length=max_length, zero_stage=zero_stage,
                    workers=2, checkpoint_every=0, packing=packing,
                    reference_micro_batch_size=reference_micro_batch_size,
                    zero_options=zero_options or {}, zero3_whole_blocks=whole_blocks)
    started = time.perf_counter()
    # A fresh name per run: a run with an existing name would resume rather than train.
    metrics = train_dpo(pairs_path, model_path, str(work / f"ours-{index}"), cfg,
                        storage_path=str(work / "ray_train"), name=f"bench-{index}")
    wall = time.perf_counter() - started
    return {"seconds": metrics["reference_seconds"] + metrics["train_seconds"],
            "train_seconds": metrics["train_seconds"],
            "reference_seconds": metrics["reference_seconds"],
            "stage_seconds": metrics["seconds"], "wall_seconds": wall,
            "load_average": os.getloadavg()[0],
            "tokens": metrics["train_tokens"], "steps": metrics["optimizer_steps"],
            "train_loss": metrics["train_loss"]}


def parse_zero_options(items: list[str]) -> dict[str, Any]:
    """`KEY=VALUE` strings -> {KEY: VALUE}, each value read as YAML (numbers, booleans)."""
    import yaml

    options = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise SystemExit(f"--zero-option {item!r}: expected KEY=VALUE")
        options[key] = yaml.safe_load(value)
    return options


def versions() -> dict[str, str]:
    import deepspeed
    import ray
    import torch
    import transformers
    import trl

    return {"python": sys.version.split()[0], "torch": torch.__version__,
            "trl": trl.__version__, "deepspeed": deepspeed.__version__,
            "transformers": transformers.__version__, "ray": ray.__version__}


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pairs", type=int, default=64)
    parser.add_argument("--batch-size", type=int, default=8, help="pairs per optimizer step")
    parser.add_argument("--micro-batch-size", type=int, default=4,
                        help="our pairs per worker per forward pass")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--lr", type=float, default=1e-4)
    parser.add_argument("--max-length", type=int, default=256)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--zero-stage", type=int, default=3, choices=(0, 1, 2, 3),
                        help="our ZeRO stage (the stage's default, 3, is what is compared)")
    parser.add_argument("--packing", action="store_true",
                        help="our micro-batches padding-free (dpo.packing)")
    parser.add_argument("--reference-micro-batch-size", type=int, default=None,
                        help="pairs per forward of our reference pass "
                             "(dpo.reference_micro_batch_size; default: the micro-batch)")
    parser.add_argument("--zero-option", action="append", default=[], metavar="KEY=VALUE",
                        help="one more DeepSpeed zero_optimization setting (dpo.zero_options), "
                             "e.g. stage3_param_persistence_threshold=1000000; repeatable")
    parser.add_argument("--per-module-gathers", action="store_true",
                        help="ZeRO-3 gathers each module on its own, not whole transformer "
                             "blocks (dpo.zero3_whole_blocks=false)")
    parser.add_argument("--results", default=RESULTS.name,
                        help="file name under bench/results/ for this run's figures")
    return parser.parse_args()


@dataclass
class Runs:
    """Every run of both sides, and the token count they share."""

    tokens: int
    trl: list[dict[str, Any]]
    ours: list[dict[str, Any]]
    load_before: tuple[float, ...]
    load_after: tuple[float, ...]


def run_repeats(args: argparse.Namespace, work: Path, model_path: str,
                pairs: list[dict[str, str]], pairs_path: str,
                zero_options: dict[str, Any]) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """TRL (2 threads, 1 thread) then ours, `--repeats` times; Ray must be running."""
    trl_runs: list[dict[str, Any]] = []
    our_runs: list[dict[str, Any]] = []
    for index in range(args.repeats):
        for threads in TRL_THREADS:
            trl_runs.append(run_trl(model_path, pairs, args.batch_size, args.lr,
                                    args.max_length, threads,
                                    str(work / f"trl-{index}-{threads}")))
            print(f"[bench] TRL run {index}: {trl_runs[-1]}", flush=True)
        our_runs.append(run_ours(pairs_path, model_path, work, args.batch_size,
                                 args.micro_batch_size, args.lr, args.max_length,
                                 args.zero_stage, index, args.packing,
                                 args.reference_micro_batch_size, zero_options,
                                 not args.per_module_gathers))
        print(f"[bench] ours run {index}: {our_runs[-1]}", flush=True)
    return trl_runs, our_runs


def measure(args: argparse.Namespace, zero_options: dict[str, Any]) -> Runs:
    """Both sides on a fresh tiny model and the same pairs, with Ray running throughout."""
    import ray

    from temporal_ray.miniature.tiny_model import build_tiny_model
    from temporal_ray.storage.files import write_rows

    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="bench-dpo-") as tmp:
        work = Path(tmp)
        model_path = str(build_tiny_model(work / "model"))
        pairs = make_pairs(args.pairs, args.seed)
        pairs_path = str(work / "pairs.parquet")
        write_rows(pairs, pairs_path)
        tokens = count_tokens(model_path, pairs, args.max_length)

        ray.init(address="local", num_cpus=4, include_dashboard=False,
                 runtime_env={"env_vars": {"TOKENIZERS_PARALLELISM": "false",
                                           "HF_HUB_OFFLINE": "1"}})
        try:
            trl_runs, our_runs = run_repeats(args, work, model_path, pairs, pairs_path,
                                             zero_options)
        finally:
            ray.shutdown()
    return Runs(tokens, trl_runs, our_runs, load_before, os.getloadavg())


@dataclass
class Summary:
    """The best run of each side, its rate on the shared token count, and the ratios."""

    trl_best: dict[str, Any]
    ours_best: dict[str, Any]
    ours_train_best: dict[str, Any]
    same_tokens: bool
    trl_rate: float
    ours_rate: float
    ours_train_rate: float
    ratio: float
    train_ratio: float
    busiest: float

    @property
    def met(self) -> bool:
        return self.ratio >= TARGET


def summarise(runs: Runs) -> Summary:
    trl_best = min(runs.trl, key=lambda r: r["seconds"])
    ours_best = min(runs.ours, key=lambda r: r["seconds"])
    ours_train_best = min(runs.ours, key=lambda r: r["train_seconds"])
    tokens = runs.tokens
    trl_rate = tokens / trl_best["seconds"]
    ours_rate = tokens / ours_best["seconds"]
    ours_train_rate = tokens / ours_train_best["train_seconds"]
    return Summary(
        trl_best=trl_best, ours_best=ours_best, ours_train_best=ours_train_best,
        # Both sides share one numerator, so both must have trained on the same tokens.
        same_tokens=all(r["tokens"] == tokens for r in runs.trl + runs.ours),
        trl_rate=trl_rate, ours_rate=ours_rate, ours_train_rate=ours_train_rate,
        ratio=ours_rate / trl_rate, train_ratio=ours_train_rate / trl_rate,
        busiest=max([runs.load_before[0], runs.load_after[0]]
                    + [r["load_average"] for r in runs.trl + runs.ours]))


def print_report(args: argparse.Namespace, zero_options: dict[str, Any], runs: Runs,
                 s: Summary) -> None:
    print()
    print(f"DPO throughput: {args.pairs} pairs, global batch {args.batch_size}, "
          f"{os.cpu_count()} CPUs, ZeRO-{args.zero_stage}"
          f"{', packed' if args.packing else ''}"
          f"{', per-module gathers' if args.per_module_gathers else ''}"
          f"{f', zero options {zero_options}' if zero_options else ''}"
          f", reference micro-batch {args.reference_micro_batch_size or args.micro_batch_size}"
          f", best of {args.repeats}")
    print(f"load average before/after: {runs.load_before[0]:.1f} / {runs.load_after[0]:.1f}, "
          f"highest seen {s.busiest:.1f}")
    if s.busiest > (os.cpu_count() or 1) + 3:  # our own workers and Ray make about 3
        print(f"WARNING: the load average reached {s.busiest:.1f} on {os.cpu_count()} CPUs, "
              "more than this run's own workers and Ray processes make: other processes "
              "probably competed for the CPUs and the figures are unreliable. Rerun on a "
              "quiet machine.")
    print(f"token counts identical on both sides: {s.same_tokens}")
    print(f"{'side':<34} {'tokens':>8} {'seconds':>9} {'tokens/s':>10}")
    rows = [(f"TRL DPOTrainer ({s.trl_best['threads']} thread(s))", s.trl_best["seconds"]),
            ("ours, reference pass + training", s.ours_best["seconds"]),
            ("ours, training loop only", s.ours_train_best["train_seconds"])]
    for label, seconds in rows:
        print(f"{label:<34} {runs.tokens:>8} {seconds:>9.2f} {runs.tokens / seconds:>10.0f}")
    print(f"ratio ours/TRL: {s.ratio:.2f}x (training loop only: {s.train_ratio:.2f}x); "
          f"target >= {TARGET}x: {'met' if s.met else 'NOT met'}")


def results_dict(args: argparse.Namespace, zero_options: dict[str, Any], runs: Runs,
                 s: Summary) -> dict[str, Any]:
    """What bench/results/ keeps of a run: settings, every run, the best ones, the ratios."""
    return {
        "benchmark": "dpo_throughput",
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "cpu_count": os.cpu_count(),
        "load_average_before_after": [runs.load_before[0], runs.load_after[0]],
        "load_average_highest": s.busiest,
        "versions": versions(),
        "settings": {"pairs": args.pairs, "batch_size": args.batch_size,
                     "micro_batch_size": args.micro_batch_size, "workers": 2,
                     "zero_stage": args.zero_stage, "packing": args.packing,
                     "reference_micro_batch_size": args.reference_micro_batch_size,
                     "zero_options": zero_options,
                     "zero3_whole_blocks": not args.per_module_gathers,
                     "trl_threads": list(TRL_THREADS),
                     "lr": args.lr,
                     "max_length": args.max_length, "repeats": args.repeats, "seed": args.seed},
        "tokens": runs.tokens,
        "token_counts_identical": s.same_tokens,
        "trl": {"best_seconds": s.trl_best["seconds"], "tokens_per_second": s.trl_rate,
                "runs": runs.trl},
        "ours": {"best_seconds": s.ours_best["seconds"], "tokens_per_second": s.ours_rate,
                 "train_only_seconds": s.ours_train_best["train_seconds"],
                 "train_only_tokens_per_second": s.ours_train_rate, "runs": runs.ours},
        "ratio": s.ratio,
        "train_only_ratio": s.train_ratio,
        "target": TARGET,
        "target_met": s.met,
    }


def main() -> None:
    args = parse_args()
    zero_options = parse_zero_options(args.zero_option)
    results = RESULTS.with_name(args.results)
    runs = measure(args, zero_options)
    s = summarise(runs)
    print_report(args, zero_options, runs, s)
    results.parent.mkdir(parents=True, exist_ok=True)
    results.write_text(json.dumps(results_dict(args, zero_options, runs, s), indent=2) + "\n")
    print(f"wrote {results.name} under bench/results/")


if __name__ == "__main__":
    main()
