"""Entrypoint for `ray job submit`: replay one stage of one iteration, to debug it.

    ray job submit --working-dir . --runtime-env cluster/runtime_env.yaml \
        -- python jobs/stage.py --config configs/llama-3.1-8b.yaml --stage iter_0/scores_future

Deletes that finished stage and every stage that finished after it (they read its output),
reruns the run up to and including it (every earlier stage is reused), and stops. Without
--redo, only runs up to the stage (reusing it if it is finished). Same code path as
`temporal-ray run --redo STAGE --until STAGE`.
"""

import argparse
import sys

from temporal_ray.cli import main

if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--config", required=True)
    parser.add_argument("--stage", required=True, help="iter_<i>/<stage>, e.g. iter_0/pairs")
    parser.add_argument("--no-redo", action="store_true", help="reuse the stage if finished")
    parser.add_argument("--force", action="store_true")
    args, overrides = parser.parse_known_args()
    command = ["run", args.config, *overrides, "--until", args.stage]
    if not args.no_redo:
        command += ["--redo", args.stage]
    sys.exit(main(command + (["--force"] if args.force else [])))
