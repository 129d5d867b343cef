"""Serving under load: `temporal-ray serve` on CPU (the hf engine), 16 concurrent clients
against one client at a time, on the same server in the same run.

What is measured: requests and generated tokens per second of the CPU endpoint over real HTTP
on localhost, with the tiny model (`temporal_ray.miniature.tiny_model.build_tiny_model`).

- Server: `serve.serve_checkpoint` (the `temporal-ray serve` path) on a local Ray cluster of
  all the machine's CPUs; one replica of `num_cpus` (`--num-cpus`, 1), concurrent requests
  gathered by Serve's `@serve.batch` into one engine call of up to `--max-batch-size` rows
  (16), waiting at most `--batch-wait-timeout-s` (0.05 s) for a batch to fill.
- Requests: `--requests` (128) chat requests "What is a plus b?" with seeded random numbers,
  at most `--max-tokens` (32) new tokens, temperature 0.7, top-p 0.9, seed = the request's
  index, so each request's text is the same however it is batched.
- One client at a time (the baseline): one thread sends the requests one after another.
- Concurrent clients: `--clients` (16) threads share the same requests; each sends its next
  request when its last one is answered. First send to last answer is timed.
- Each mode runs `--repeats` (2) times, interleaved after a warm-up of one request per
  client; the fastest run of each counts, and every run goes to the results file.
- Answered: HTTP 200 with a chat.completion; lost: anything else (an error status, a dropped
  connection, a timeout). Latency: send to answer of each request; p50 and p99 over the run.
  Tokens: `usage.completion_tokens`. The script checks that each request got the same text in
  both modes.

Target (printed, never asserted): concurrent clients >= 1.5x the requests per second of one
client at a time, every request answered. Results go to bench/results/serving.json.

    .venv/bin/python bench/serving.py [--clients 16] [--requests 128] [--max-batch-size 16]
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import random
import socket
import statistics
import tempfile
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from generation_report import versions

RESULTS = Path(__file__).parent / "results" / "serving.json"
TARGET = 1.5


def chat_bodies(count: int, max_tokens: int) -> list[dict[str, Any]]:
    numbers = random.Random(0)
    return [{"model": "tiny", "max_tokens": max_tokens, "temperature": 0.7, "top_p": 0.9,
             "seed": i, "messages": [{"role": "user", "content":
                                      f"What is {numbers.randint(1, 99)} plus "
                                      f"{numbers.randint(1, 99)}?"}]}
            for i in range(count)]


def ask(url: str, body: dict[str, Any]) -> dict[str, Any]:
    """One request: status (None when lost without one), seconds, tokens, text, batch."""
    request = urllib.request.Request(f"{url}/chat/completions", data=json.dumps(body).encode(),
                                     headers={"Content-Type": "application/json"})
    start = time.perf_counter()
    try:
        with urllib.request.urlopen(request, timeout=300) as response:
            reply, status = json.loads(response.read()), response.status
            batch = int(response.headers.get("x-temporal-ray-batch-size", 0))
    except urllib.error.HTTPError as err:
        return {"status": err.code, "seconds": time.perf_counter() - start,
                "error": err.read().decode(errors="replace")[:200]}
    except (OSError, ValueError) as err:
        return {"status": None, "seconds": time.perf_counter() - start, "error": repr(err)}
    return {"status": status, "seconds": time.perf_counter() - start, "batch": batch,
            "tokens": reply["usage"]["completion_tokens"],
            "text": reply["choices"][0]["message"]["content"]}


def run_clients(url: str, bodies: list[dict[str, Any]], clients: int) -> dict[str, Any]:
    """All the requests by `clients` threads, each sending its next when answered."""
    start = time.perf_counter()
    with ThreadPoolExecutor(clients) as pool:
        answers = list(pool.map(lambda body: ask(url, body), bodies))
    seconds = time.perf_counter() - start
    return summary(answers, seconds, clients)


def summary(answers: list[dict[str, Any]], seconds: float, clients: int) -> dict[str, Any]:
    answered = [a for a in answers if a["status"] == 200]
    latencies = sorted(a["seconds"] for a in answered) or [float("nan")]
    batches = [a["batch"] for a in answered]
    return {
        "clients": clients, "requests": len(answers), "answered": len(answered),
        "lost": len(answers) - len(answered), "seconds": seconds,
        "requests_per_second": len(answered) / seconds,
        "tokens": sum(a["tokens"] for a in answered),
        "tokens_per_second": sum(a["tokens"] for a in answered) / seconds,
        "latency_p50_s": statistics.median(latencies),
        "latency_p99_s": latencies[min(len(latencies) - 1, int(0.99 * len(latencies)))],
        "mean_batch": statistics.fmean(batches) if batches else 0.0,
        "largest_batch": max(batches, default=0),
        "errors": sorted({str(a.get("error")) for a in answers if a["status"] != 200})[:5],
        "texts": [a.get("text") for a in answers],
        "load_average": os.getloadavg()[0],
    }


def start_server(args: argparse.Namespace, model_dir: str) -> str:
    import ray

    from temporal_ray.serve import serve_checkpoint

    ray.init(num_cpus=os.cpu_count(), include_dashboard=False)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    options = {"max_batch_size": args.max_batch_size, "num_cpus": args.num_cpus,
               "batch_wait_timeout_s": args.batch_wait_timeout_s,
               "torch_threads": args.torch_threads}
    return serve_checkpoint(model_dir, name="tiny", port=port, blocking=False,
                            cpu_options=options)


def measure(args: argparse.Namespace, url: str) -> dict[str, list[dict[str, Any]]]:
    bodies = chat_bodies(args.requests, args.max_tokens)
    run_clients(url, chat_bodies(args.clients, args.max_tokens), args.clients)  # warm-up
    runs: dict[str, list[dict[str, Any]]] = {"one_at_a_time": [], "concurrent": []}
    for repeat in range(args.repeats):
        for mode, clients in (("one_at_a_time", 1), ("concurrent", args.clients)):
            run = run_clients(url, bodies, clients)
            runs[mode].append(run)
            print(f"repeat {repeat + 1}, {mode:13s}: {run['requests_per_second']:6.2f} req/s, "
                  f"{run['tokens_per_second']:7.1f} tokens/s, answered {run['answered']}/"
                  f"{run['requests']}, mean batch {run['mean_batch']:.1f}, "
                  f"load {run['load_average']:.1f}", flush=True)
    return runs


def report(args: argparse.Namespace, runs: dict[str, list[dict[str, Any]]],
           load_before: float) -> None:
    best = {mode: max(r, key=lambda run: run["requests_per_second"])
            for mode, r in runs.items()}
    base, load = best["one_at_a_time"], best["concurrent"]
    same = sum(a == b for a, b in zip(base["texts"], load["texts"]))
    ratio = load["requests_per_second"] / base["requests_per_second"]
    token_ratio = load["tokens_per_second"] / base["tokens_per_second"]
    print(f"\n{'mode':14s} {'req/s':>7s} {'tokens/s':>9s} {'p50 s':>7s} {'p99 s':>7s} "
          f"{'answered':>9s} {'lost':>5s} {'mean batch':>11s}")
    for mode, run in best.items():
        print(f"{mode:14s} {run['requests_per_second']:7.2f} {run['tokens_per_second']:9.1f} "
              f"{run['latency_p50_s']:7.3f} {run['latency_p99_s']:7.3f} "
              f"{run['answered']:5d}/{run['requests']:<3d} {run['lost']:5d} "
              f"{run['mean_batch']:11.1f}")
    met = ratio >= TARGET and load["lost"] == 0 and base["lost"] == 0
    print(f"\n{args.clients} clients / 1 client: {ratio:.2f}x requests/s, {token_ratio:.2f}x "
          f"tokens/s (target >= {TARGET}x, none lost: {'met' if met else 'NOT met'}); "
          f"same text in both modes: {same}/{args.requests}")
    load_after = os.getloadavg()[0]
    if max(load_before, load_after) > 2.5:
        print(f"warning: load average {load_before:.1f} before, {load_after:.1f} after: other "
              "processes competed for the CPUs")
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    strip = {mode: [{k: v for k, v in run.items() if k != "texts"} for run in r]
             for mode, r in runs.items()}
    RESULTS.with_name(args.results).write_text(json.dumps({
        "benchmark": "serving",
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "cpu_count": os.cpu_count(), "load_average_before_after": [load_before, load_after],
        "versions": versions(), "settings": {k: v for k, v in vars(args).items()},
        "speedup_requests_per_second": ratio, "speedup_tokens_per_second": token_ratio,
        "speedup_target": TARGET, "target_met": met, "same_texts": same,
        "best": {mode: strip[mode][runs[mode].index(run)] for mode, run in best.items()},
        "all_runs": strip}, indent=2) + "\n")
    print(f"wrote {args.results} under bench/results/")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--requests", type=int, default=128)
    parser.add_argument("--max-tokens", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--max-batch-size", type=int, default=16)
    parser.add_argument("--batch-wait-timeout-s", type=float, default=0.05)
    parser.add_argument("--num-cpus", type=float, default=1)
    parser.add_argument("--torch-threads", type=int, default=None,
                        help="torch threads in the replica (default: Ray's, one per CPU held)")
    parser.add_argument("--results", default=RESULTS.name,
                        help="file name under bench/results/ for this run's figures")
    args = parser.parse_args()
    from ray import serve

    from temporal_ray.miniature.tiny_model import build_tiny_model

    load_before = os.getloadavg()[0]
    with tempfile.TemporaryDirectory() as tmp:
        url = start_server(args, str(build_tiny_model(tmp)))
        try:
            runs = measure(args, url)
        finally:
            serve.shutdown()
    report(args, runs, load_before)


if __name__ == "__main__":
    main()
