"""Where a miniature-sized DPO stage's wall time goes, phase by phase.

Builds the miniature's tiny Llama (hidden 128, 4 layers) and ~22 pairs like one iteration's,
starts a local Ray cluster as `make run` does (4 logical CPUs), and runs `train_dpo` with
configs/miniature.yaml's dpo section `--stages` times in a row (a run's later DPO stages find
Ray warm, as the second one here does). Prints, per stage, the driver's wall time of the call
and the `phases` the stage recorded (metrics.json: worker set-up, reference pass, training,
export; Ray Train's start and stop of the worker group), and writes them to
bench/results/dpo_stage_overhead.json. Nothing is asserted.

  .venv/bin/python bench/dpo_stage_overhead.py [--stages 2] [--pairs 22]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[1]


def pairs(count: int, seed: int = 0) -> list[dict[str, str]]:
    """Pairs in the miniature's shape: a digit-sorting prompt, a right and a wrong answer."""
    rng = random.Random(seed)
    rows = []
    for _ in range(count):
        digits = "".join(rng.choice("0123456789") for _ in range(rng.choice([3, 6])))
        wrong = list(digits)
        rng.shuffle(wrong)
        rows.append({"prompt": f"Sort the digits: {digits}", "chosen": "".join(sorted(digits)),
                     "rejected": "".join(wrong) + " is the answer, I think."})
    return rows


def run_stage(number: int, pairs_path: str, model: str, out: Path,
              dpo: Any) -> dict[str, Any]:
    from temporal_ray.stages.dpo import train_dpo

    began = time.time()
    metrics = train_dpo(pairs_path, model, str(out / f"dpo_{number}"), dpo,
                        storage_path=str(out / "ray_train"), name=f"dpo_{number}")
    wall = time.time() - began
    phases = metrics.get("phases", {})
    print(f"stage {number}: {wall:.2f} s wall; loss {metrics['loss_before']:.4f} -> "
          f"{metrics['loss_after']:.4f}")
    for name, seconds in phases.items():
        print(f"  {name:22s} {seconds:7.3f}")
    return {"wall_seconds": round(wall, 3), "phases": phases,
            "loss_after": metrics["loss_after"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--stages", type=int, default=2)
    parser.add_argument("--pairs", type=int, default=22)
    parser.add_argument("--no-local-env", dest="local_env", action="store_false",
                        help="without the Ray Train settings start_ray gives a local cluster")
    args = parser.parse_args()

    import ray

    from temporal_ray.config import DPOConfig
    from temporal_ray.miniature.tiny_model import build_tiny_model
    from temporal_ray.run.session import LOCAL_TRAIN_ENV
    from temporal_ray.storage.files import write_rows

    section = yaml.safe_load((ROOT / "configs/miniature.yaml").read_text())["dpo"]
    dpo = DPOConfig.model_validate(section)
    out = Path(tempfile.mkdtemp(prefix="dpo-overhead-"))
    model = str(build_tiny_model(out / "model"))
    write_rows(pairs(args.pairs), str(out / "pairs.parquet"))
    env = {"TOKENIZERS_PARALLELISM": "false", **(LOCAL_TRAIN_ENV if args.local_env else {})}
    ray.init(address="local", num_cpus=4, include_dashboard=False,
             runtime_env={"env_vars": env})
    load_before = os.getloadavg()
    stages = [run_stage(n, str(out / "pairs.parquet"), model, out, dpo)
              for n in range(args.stages)]
    record = {"date": time.strftime("%Y-%m-%d %H:%M"), "cpus": os.cpu_count(),
              "local_train_env": args.local_env,
              "load_before": load_before, "load_after": os.getloadavg(), "stages": stages}
    print(f"load average before {load_before}, after {record['load_after']}")
    results = ROOT / "bench/results/dpo_stage_overhead.json"
    results.write_text(json.dumps(record, indent=2) + "\n")


if __name__ == "__main__":
    main()
