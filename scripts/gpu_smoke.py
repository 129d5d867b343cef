"""The GPU smoke test's checks (scripts/gpu_smoke.sh runs this): our request rows through
Ray Data LLM's vLLM processor on a model of your choice, then through the judge stage.

    python scripts/gpu_smoke.py MODEL_DIR [--tp N] [--engine vllm|hf] [--device gpu|cpu]
                                          [--keep-alive] [--out DIR]

1. generation: 8 prompts x K=2 samples plus a greedy answer each, through `run_engine_pool`
   (the same pre/postprocess as a run); every request answered once, the output columns the
   stages read, and the same texts again from a second pass (per-row seeds);
2. judging: the candidates through `judge_candidates` with the additive rubric, J=2: every
   candidate gets a row, and the share with a parsed score is printed;
3. a summary: tokens/s of each pass and the checks' results; exit 1 on a failed check.
`--engine hf`, or `--device cpu` with vLLM's CPU build, runs the same checks without a GPU (the
test suite does both, on the tiny model).
`--keep-alive` runs them on a kept pool instead (engine actors that outlive the stage; with
vLLM, vLLM's own engine in each), and checks that one engine start served both passes and the
judge.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from temporal_ray.engines.pool import EnginePool

PROMPTS = ["What is 17 + 25?", "Name three primary colours.", "Reverse the word: planet",
           "Write one sentence about the sea.", "What is the capital of France?",
           "Sort the letters: dcba", "Give a synonym for 'quick'.",
           "How many legs does a spider have?"]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model", help="a Hugging Face model directory with a chat template")
    parser.add_argument("--tp", type=int, default=1, help="tensor parallel size per engine")
    parser.add_argument("--engine", choices=["vllm", "hf"], default="vllm")
    parser.add_argument("--max-model-len", type=int, default=4096)
    parser.add_argument("--judge-template", default=None,
                        help="judge prompt file (default: the additive rubric)")
    parser.add_argument("--out", default=None, help="where to write the judge stage's rows")
    parser.add_argument("--keep-alive", action="store_true",
                        help="one kept pool for all three calls (engine.keep_alive)")
    parser.add_argument("--device", choices=["gpu", "cpu"], default="gpu",
                        help="where the engines run; cpu runs vLLM's CPU build (the test "
                             "suite does, on the tiny model)")
    args = parser.parse_args(argv)

    import ray

    from temporal_ray.config import EngineConfig
    from temporal_ray.engines.kept_pool import KeptPools
    from temporal_ray.engines.pool import EnginePool
    from temporal_ray.engines.preflight import check_model

    check_model(args.model)
    gpu = args.engine == "vllm" and args.device == "gpu"
    engine = EngineConfig(kind=args.engine, actors=1, batch_size=16,
                          gpus_per_actor=args.tp if gpu else 0, tensor_parallel_size=args.tp,
                          max_model_len=args.max_model_len if gpu else None,
                          keep_alive=args.keep_alive)
    # A cluster named by RAY_ADDRESS, else a fresh local one (never a stray running one).
    ray.init(address=os.environ.get("RAY_ADDRESS", "local"), include_dashboard=False)
    with KeptPools() as pools:  # released when the checks end, pass or fail
        checks = run_checks(args, EnginePool(engine, kept=pools))
    for name, ok in checks:
        print(f"  [{'ok' if ok else 'FAILED'}] {name}")
    return 0 if all(ok for _, ok in checks) else 1


def run_checks(args: argparse.Namespace, pool: EnginePool) -> list[tuple[str, bool]]:
    """Generation twice, then judging; returns (check, passed) pairs."""
    import ray.data

    from temporal_ray.config import JudgeConfig
    from temporal_ray.core.requests import candidate_requests, to_candidate
    from temporal_ray.engines.pool import run_engine_pool
    from temporal_ray.stages.judge import judge_candidates
    from temporal_ray.storage.files import read_rows, write_rows

    prompts = [{"prompt_id": f"p{i}", "prompt": p} for i, p in enumerate(PROMPTS)]
    requests = [r for p in prompts for r in
                candidate_requests(p, "present", 2, 0.7, 0.9, 64, seed=0)
                + candidate_requests(p, "greedy", 1, 0.0, 1.0, 64, seed=0)]
    checks: list[tuple[str, bool]] = []

    def generate() -> tuple[list[dict], float]:
        started = time.time()
        rows = run_engine_pool(ray.data.from_items(requests), args.model, pool).take_all()
        return rows, time.time() - started

    first, seconds = generate()
    second, seconds_again = generate()
    key = lambda r: (r["prompt_id"], r["role"], r["sample_index"])  # noqa: E731
    tokens = sum(int(r["num_generated_tokens"]) for r in first)
    checks.append(("every request answered once",
                   sorted(map(key, first)) == sorted(map(key, requests))))
    checks.append(("output columns", all({"generated_text", "num_input_tokens",
                                          "num_generated_tokens", "prompt"} <= set(r)
                                         for r in first)))
    checks.append(("the user's prompt survives the engine",
                   {r["prompt"] for r in first} == set(PROMPTS)))
    checks.append(("some text generated", any(r["generated_text"].strip() for r in first)))
    texts = {key(r): r["generated_text"] for r in first}
    same = sum(texts[key(r)] == r["generated_text"] for r in second)
    checks.append((f"same texts on a second pass ({same}/{len(second)})", same == len(second)))
    print(f"generation: {len(first)} requests, {tokens} tokens, {seconds:.1f} s "
          f"({tokens / seconds:.0f} tokens/s incl. engine start); again {seconds_again:.1f} s",
          flush=True)

    out = args.out or tempfile.mkdtemp(prefix="gpu-smoke-")
    candidates = [to_candidate(r) for r in first if r["role"] == "present"]
    write_rows(candidates, os.path.join(out, "candidates", "c.parquet"))
    judge = JudgeConfig(kind="llm", samples=2, max_new_tokens=256,
                        prompt_template=args.judge_template)
    started = time.time()
    judge_candidates([os.path.join(out, "candidates")], args.model, judge, pool, seed=0,
                     out_dir=os.path.join(out, "scores"))
    scored = read_rows(os.path.join(out, "scores"))
    judged = sum(r["score"] is not None for r in scored)
    checks.append(("every candidate judged once",
                   sorted(map(key, scored)) == sorted(map(key, candidates))))
    print(f"judging: {len(scored)} candidates x 2 judgements, {time.time() - started:.1f} s; "
          f"{judged}/{len(scored)} got a parsed score "
          f"({sum(bool(r['over_context']) for r in scored)} over the context)", flush=True)
    print(f"rows: {out}", flush=True)
    if args.keep_alive:
        kept = pool.kept_pools()
        checks.append(("one kept pool served both passes and the judge",
                       kept.uses == ["started", "reused", "reused"]
                       and kept.engine_starts == pool.engine.actors))
    return checks


if __name__ == "__main__":
    sys.exit(main())
