"""Entrypoint for `ray job submit`: the whole run of one config.

    ray job submit --working-dir . -- python jobs/run.py --config configs/tiny.yaml dpo.beta=0.2

`ray.init()` inside joins the cluster the job runs on. Same code path as `temporal-ray run`.
"""

import argparse
import sys

from temporal_ray.cli import main

if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--config", required=True)
    parser.add_argument("--force", action="store_true")
    args, overrides = parser.parse_known_args()
    sys.exit(main(["run", args.config, *overrides, *(["--force"] if args.force else [])]))
