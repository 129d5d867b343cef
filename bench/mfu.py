"""Model FLOPs utilisation of our DPO step: a randomly initialised 1B-class Llama, bf16,
DeepSpeed ZeRO-3, one GPU.

    python bench/mfu.py                       # on a GPU box (H100/H200/A100 peak known)
    python bench/mfu.py --size tiny --device cpu --steps 3   # the same code path on CPU

The step is the DPO stage's own: the model saved by transformers and loaded by
`training.deepspeed_setup.load_model` (built under deepspeed.zero.Init), the engine of
`build_engine`, `dpo.batches.collate` (chosen and rejected in one forward), `sequence_logps`
and `dpo_loss` against precomputed reference log-probs, `engine.backward`, `engine.step`.
No Ray: one process, world size 1, so nothing but the step is timed. Data are random token
ids, half of each sequence a masked prompt.
Model FLOPs per step = `Architecture.training_flops_per_token(seq_len)` x tokens (6 per weight
of every matmul plus PaLM's attention term); MFU = those FLOPs per second / the GPU's dense
bf16 peak. Target: 40 %. Writes bench/results/mfu.json.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import socket
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch
    from transformers import LlamaConfig

RESULTS = Path(__file__).resolve().parent / "results" / "mfu.json"
TARGET = 0.40
# Dense bf16 peak TFLOP/s (no sparsity), by a substring of torch.cuda.get_device_name().
PEAK_TFLOPS = {"H200": 989.0, "H100": 989.0, "A100": 312.0, "L40S": 362.0, "A10G": 125.0}
SIZES = {
    # Llama-3.2-1B's shape (1.24B parameters with tied embeddings).
    "1b": dict(hidden_size=2048, intermediate_size=8192, num_hidden_layers=16,
               num_attention_heads=32, num_key_value_heads=8, vocab_size=128256,
               tie_word_embeddings=True),
    "tiny": dict(hidden_size=128, intermediate_size=256, num_hidden_layers=4,
                 num_attention_heads=4, num_key_value_heads=2, vocab_size=1024,
                 tie_word_embeddings=False),
}


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", choices=sorted(SIZES), default="1b")
    parser.add_argument("--device", choices=["cuda", "cpu"], default="cuda")
    parser.add_argument("--seq-len", type=int, default=1024, help="tokens per sequence")
    parser.add_argument("--pairs", type=int, default=8, help="pairs per step (micro-batch)")
    parser.add_argument("--steps", type=int, default=10, help="timed steps")
    parser.add_argument("--warmup", type=int, default=3, help="untimed steps first")
    parser.add_argument("--gradient-checkpointing", action="store_true")
    parser.add_argument("--peak-tflops", type=float, default=None,
                        help="the device's dense bf16 peak (default: from its name)")
    return parser.parse_args()


def start_process(gpu: bool) -> torch.device | None:
    """A world of one process, as DeepSpeed wants one even without Ray; None where a GPU run
    finds no CUDA device (said on stderr)."""
    import deepspeed  # imported before the check: on import it reports the accelerator it found
    import torch

    if gpu and not torch.cuda.is_available():
        print("error: no CUDA device here; use --device cpu to check the script", file=sys.stderr)
        return None
    with socket.socket() as s:  # a free port for the one-process rendezvous
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK="0",
                      LOCAL_RANK="0", WORLD_SIZE="1")
    deepspeed.init_distributed(dist_backend="nccl" if gpu else "gloo")
    device = torch.device("cuda:0" if gpu else "cpu")
    if gpu:
        torch.cuda.set_device(device)
    return device


def build_step_engine(args: argparse.Namespace, gpu: bool) -> tuple[LlamaConfig, Any]:
    """A randomly initialised model, saved and loaded back the way the DPO stage loads one."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    from temporal_ray.config import DPOConfig
    from temporal_ray.training.deepspeed_setup import build_engine, deepspeed_config, load_model

    config = LlamaConfig(**SIZES[args.size], max_position_embeddings=max(2048, args.seq_len))
    cfg = DPOConfig(use_gpu=gpu, zero_stage=3, workers=1, batch_size=args.pairs,
                    micro_batch_size=args.pairs, max_length=args.seq_len, lr=1e-6,
                    warmup_ratio=0.0, gradient_checkpointing=args.gradient_checkpointing)
    total = args.warmup + args.steps
    with tempfile.TemporaryDirectory(prefix="bench-mfu-") as tmp:
        torch.manual_seed(0)
        LlamaForCausalLM(config).to(torch.bfloat16 if gpu else torch.float32).save_pretrained(tmp)
        ds_config = deepspeed_config(cfg, world_size=1)
        engine = build_engine(load_model(tmp, cfg, ds_config), cfg, ds_config, total)
    return config, engine


@dataclass
class StepBatch:
    """One step's inputs: chosen and rejected in one batch, fixed reference log-probs."""

    inputs: dict[str, torch.Tensor]
    labels: torch.Tensor
    reference: tuple[torch.Tensor, torch.Tensor]


def random_batch(args: argparse.Namespace, device: torch.device) -> StepBatch:
    """Random token ids, the first half of each sequence a masked prompt."""
    import torch

    from temporal_ray.core.batching import TokenizedPair, collate
    from temporal_ray.core.dpo_loss import IGNORE_INDEX

    generator = torch.Generator().manual_seed(1)
    prompt = args.seq_len // 2
    vocab_size = SIZES[args.size]["vocab_size"]

    def random_pair() -> TokenizedPair:
        ids = [torch.randint(3, vocab_size, (args.seq_len,), generator=generator)
               .tolist() for _ in range(2)]
        labels = [[IGNORE_INDEX] * prompt + seq[prompt:] for seq in ids]
        return TokenizedPair(ids[0], labels[0], ids[1], labels[1])

    batch = collate([random_pair() for _ in range(args.pairs)], pad_id=0)
    inputs = {k: v.to(device) for k, v in
              {"input_ids": batch.input_ids, "attention_mask": batch.attention_mask}.items()}
    return StepBatch(inputs, batch.labels.to(device),
                     (torch.full((args.pairs,), -1000.0, device=device),
                      torch.full((args.pairs,), -1000.0, device=device)))


def seconds_per_step(args: argparse.Namespace, engine: Any, batch: StepBatch,
                     gpu: bool) -> float:
    """Mean seconds of `--steps` DPO steps after `--warmup` untimed ones."""
    import torch

    from temporal_ray.core.dpo_loss import dpo_loss, sequence_logps

    def step() -> float:
        logits = engine(**batch.inputs, use_cache=False).logits
        logps = sequence_logps(logits.float(), batch.labels)
        out = dpo_loss(logps[:args.pairs], logps[args.pairs:], *batch.reference, beta=0.1)
        engine.backward(out.loss)
        engine.step()
        return out.loss.item()

    engine.train()
    for _ in range(args.warmup):
        step()
    if gpu:  # CUDA runs asynchronously: wait for the queued steps before reading the clock
        torch.cuda.synchronize()
    started = time.perf_counter()
    for _ in range(args.steps):
        step()
    if gpu:
        torch.cuda.synchronize()
    return (time.perf_counter() - started) / args.steps


def figures(args: argparse.Namespace, config: LlamaConfig, seconds: float, gpu: bool,
            device: torch.device) -> dict[str, Any]:
    """Model FLOPs of a step, the rate achieved and its share of the device's peak."""
    import torch

    from temporal_ray.training.plan import Architecture

    arch = Architecture.from_hf_config(config.to_dict(), args.size)
    tokens = 2 * args.pairs * args.seq_len
    flops = arch.training_flops_per_token(args.seq_len) * tokens
    achieved = flops / seconds / 1e12
    name = torch.cuda.get_device_name(device) if gpu else "cpu"
    peak = args.peak_tflops or next((v for k, v in PEAK_TFLOPS.items() if k in name), None)
    return {"params": arch.total_params, "tokens": tokens, "flops": flops,
            "achieved": achieved, "name": name, "peak": peak,
            "mfu": achieved / peak if peak else None}


def print_figures(args: argparse.Namespace, f: dict[str, Any], seconds: float, gpu: bool,
                  device: torch.device) -> None:
    import torch

    params, mfu, peak = f["params"], f["mfu"], f["peak"]
    size = f"{params / 1e9:.2f}B" if params >= 1e8 else f"{params / 1e6:.2f}M"
    print(f"DPO step, {args.size} Llama ({size} params), "
          f"{'bf16' if gpu else 'fp32'}, ZeRO-3, 1 {'GPU' if gpu else 'process'} ({f['name']})")
    print(f"{args.pairs} pairs x 2 x {args.seq_len} tokens = {f['tokens']} tokens a step, "
          f"{seconds * 1e3:.1f} ms a step (mean of {args.steps} after {args.warmup} warm-up)")
    print(f"model FLOPs {f['flops'] / 1e12:.4g} TFLOP a step -> {f['achieved']:.4g} TFLOP/s "
          "achieved")
    if mfu is None:
        print("MFU: unknown peak (pass --peak-tflops)")
    else:
        print(f"MFU: {mfu:.1%} of {peak:.0f} TFLOP/s; target >= {TARGET:.0%}: "
              f"{'met' if mfu >= TARGET else 'NOT met'}")
    if gpu:
        print(f"peak GPU memory: {torch.cuda.max_memory_allocated(device) / 2**30:.1f} GiB")


def write_results(args: argparse.Namespace, f: dict[str, Any], seconds: float,
                  gpu: bool) -> Path:
    """bench/results/mfu.json on a GPU; a CPU check goes to its own file, not over it."""
    import deepspeed
    import torch

    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    out_path = RESULTS if gpu else RESULTS.with_name("mfu_cpu_check.json")
    out_path.write_text(json.dumps({
        "benchmark": "mfu",
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "device": f["name"], "size": args.size, "params": f["params"],
        "settings": vars(args), "tokens_per_step": f["tokens"], "seconds_per_step": seconds,
        "model_tflop_per_step": f["flops"] / 1e12, "achieved_tflops": f["achieved"],
        "peak_tflops": f["peak"], "mfu": f["mfu"], "target": TARGET,
        "versions": {"torch": torch.__version__, "deepspeed": deepspeed.__version__},
    }, indent=2) + "\n")
    return out_path


def main() -> int:
    args = parse_args()
    gpu = args.device == "cuda"
    device = start_process(gpu)
    if device is None:
        return 2
    config, engine = build_step_engine(args, gpu)
    seconds = seconds_per_step(args, engine, random_batch(args, device), gpu)
    f = figures(args, config, seconds, gpu, device)
    print_figures(args, f, seconds, gpu, device)
    print(f"wrote {write_results(args, f, seconds, gpu)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
