"""A generation actor killed mid-stage (SIGKILL of its process, found by its Ray process title):
Ray Data restarts it and retries its batches; the stage completes with every (prompt, sample)
exactly once, and, since every row samples with its own seed, with the same texts as a run
that was not disturbed."""

from __future__ import annotations

import os
import signal
import threading
import time

import pytest

from temporal_ray.config import EngineConfig, GenerationConfig
from temporal_ray.engines.pool import EnginePool
from temporal_ray.inputs.load import load_prompts
from temporal_ray.stages.generate import generate_candidates
from temporal_ray.storage.files import read_rows, write_rows

pytestmark = [pytest.mark.slow, pytest.mark.chaos]

PROMPTS_FILE = os.path.join(os.path.dirname(__file__), "..", "..", "temporal_ray", "assets",
                            "tiny_prompts.jsonl")


def engine_actor_pids() -> list[int]:
    """Ray titles an actor's process `ray::MapWorker(MapBatches(HFEngine))...`."""
    import psutil

    pids = []
    for proc in psutil.process_iter(["pid", "cmdline"]):
        cmdline = " ".join(proc.info["cmdline"] or [])
        if cmdline.startswith("ray::MapWorker(MapBatches(HFEngine))"):
            pids.append(proc.info["pid"])
    return pids


def kill_one_engine_actor(stop: threading.Event, killed: list[float],
                          spare: frozenset[int] = frozenset()) -> None:
    """Kill one engine actor of the running stage, not one of `spare` (the previous stage's
    actors, which may still be exiting when this starts looking)."""
    while not stop.is_set():
        pids = [pid for pid in engine_actor_pids() if pid not in spare]
        if pids:
            time.sleep(1.5)  # let it load the model and start on its batches
            try:
                os.kill(pids[0], signal.SIGKILL)
            except ProcessLookupError:  # gone meanwhile: look again while the stage runs
                spare |= {pids[0]}
                continue
            killed.append(time.time())
            return
        time.sleep(0.2)


def candidates(path) -> dict[tuple[str, int], str]:
    rows = read_rows(str(path))
    keys = [(r["prompt_id"], r["sample_index"]) for r in rows]
    assert len(keys) == len(set(keys)), "a (prompt, sample) was written twice"
    return {(r["prompt_id"], r["sample_index"]): r["response"] for r in rows}


def test_killed_engine_actor_loses_and_duplicates_nothing(tiny_model, ray_cluster, tmp_path,
                                                        chaos_record):
    # 40 prompts x 2 samples of up to 96 tokens: the stage still runs when the kill comes on a
    # fast machine (with 24 x 48 it had ended 3 s after the actors started).
    write_rows(load_prompts(PROMPTS_FILE).rows[:40], str(tmp_path / "prompts" / "p.parquet"))
    generation = GenerationConfig(samples=2, max_new_tokens=96, temperature=1.0, seed=3)
    engine = EngineConfig(actors=2, batch_size=4)

    def generate(out: str) -> None:
        generate_candidates(str(tmp_path / "prompts"), {"present": tiny_model}, generation,
                            EnginePool(engine), str(tmp_path / out))

    generate("clean")
    stop, killed = threading.Event(), []
    killer = threading.Thread(target=kill_one_engine_actor,
                              args=(stop, killed, frozenset(engine_actor_pids())))
    killer.start()
    try:
        generate("faulted")
        finished = time.time()
    finally:
        stop.set()
        killer.join()

    assert killed, "no engine actor was found to kill while the stage ran"
    assert killed[0] < finished - 1.0, "the actor was killed after the stage had finished"
    clean, faulted = candidates(tmp_path / "clean"), candidates(tmp_path / "faulted")
    assert len(clean) == 40 * 2
    chaos_record("generation actor SIGKILL mid-stage", len(killed), faulted == clean,
                 len(set(clean) - set(faulted)))
    assert faulted == clean
