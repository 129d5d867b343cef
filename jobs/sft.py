"""Entrypoint for `ray job submit`: make M0 by SFT of the config's sft section.

    ray job submit --working-dir . --runtime-env cluster/runtime_env.yaml \
        -- python jobs/sft.py --config configs/llama-3.1-8b.yaml

`ray.init()` inside joins the cluster the job runs on. Same code path as `temporal-ray sft`.
Then run jobs/run.py with the same config: its model.path is the SFT output's model/.
"""

import argparse
import sys

from temporal_ray.cli import main

if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--config", required=True)
    parser.add_argument("--force", action="store_true")
    args, overrides = parser.parse_known_args()
    sys.exit(main(["sft", args.config, *overrides, *(["--force"] if args.force else [])]))
