"""Entrypoint for `ray job submit`: evaluate every checkpoint of a finished run.

    ray job submit --working-dir . --runtime-env cluster/runtime_env.yaml \
        -- python jobs/eval.py --config configs/llama-3.1-8b.yaml eval.prompts=data/heldout.jsonl

Win rates against M0 (or eval.reference) judged in both orders, HumanEval pass@1 and the
lm-eval tasks the config names; the table, plot and results.json land in
<storage.run_dir>/<eval.output>/. `ray.init()` inside joins the cluster the job runs on.
Same code path as `temporal-ray eval`.
"""

import argparse
import sys

from temporal_ray.cli import main

if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--config", required=True)
    parser.add_argument("--force", action="store_true")
    args, overrides = parser.parse_known_args()
    sys.exit(main(["eval", args.config, *overrides, *(["--force"] if args.force else [])]))
