"""The driver's checks before any cluster work: a resumed run whose config changed; how Ray
is started."""

import logging
from pathlib import Path

import pytest
import yaml

from temporal_ray.config import load_config
from temporal_ray.run.session import (
    LOCAL_TRAIN_ENV,
    ConfigChangedError,
    absolute_paths,
    check_config,
    eval_paths,
    start_ray,
)
from temporal_ray.storage.run_dir import RunDir


def config(tmp_path, *overrides):
    return load_config(None, ["model.path=/m", "data.prompts=/p.jsonl",
                              f"storage.run_dir={tmp_path}", *overrides])


def test_first_run_writes_the_resolved_config(tmp_path):
    cfg = config(tmp_path, "dpo.beta=0.3")
    check_config(RunDir(str(tmp_path)), cfg, force=False)
    saved = yaml.safe_load((tmp_path / "config.yaml").read_text())
    assert saved["dpo"]["beta"] == 0.3 and saved["model"]["path"] == "/m"


def test_changed_config_is_refused_naming_the_fields(tmp_path):
    run = RunDir(str(tmp_path))
    check_config(run, config(tmp_path), force=False)
    check_config(run, config(tmp_path), force=False)  # the same config resumes
    with pytest.raises(ConfigChangedError) as err:
        check_config(run, config(tmp_path, "dpo.beta=0.3", "generation.samples=2"), force=False)
    assert "dpo.beta" in str(err.value) and "generation.samples" in str(err.value)
    assert "--force" in str(err.value)
    check_config(run, config(tmp_path, "dpo.beta=0.3"), force=True)
    assert yaml.safe_load((tmp_path / "config.yaml").read_text())["dpo"]["beta"] == 0.3


def test_eval_settings_and_fields_added_later_do_not_block_a_resume(tmp_path):
    run = RunDir(str(tmp_path))
    sections = config(tmp_path).run_sections()
    check_config(run, config(tmp_path), force=False, sections=sections)
    saved = yaml.safe_load((tmp_path / "config.yaml").read_text())
    assert "eval" not in saved
    # How a run is evaluated is not part of the run.
    check_config(run, config(tmp_path, "eval.max_new_tokens=7"), force=False,
                 sections=sections)
    # A run directory written before engine.max_retries existed resumes at its default...
    del saved["engine"]["max_retries"]
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(saved))
    check_config(run, config(tmp_path), force=False, sections=sections)
    # ...but setting a field added later to something else is a change.
    del saved["generation"]["overlong"]
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(saved))
    with pytest.raises(ConfigChangedError, match="generation.overlong"):
        check_config(run, config(tmp_path, "generation.overlong=truncate"), force=False,
                     sections=sections)


def test_a_resume_that_changes_only_placement_goes_on_and_says_what_changed(tmp_path, caplog):
    caplog.set_level(logging.INFO, logger="temporal_ray")
    run = RunDir(str(tmp_path))
    sections = config(tmp_path).run_sections()
    check_config(run, config(tmp_path), force=False, sections=sections)
    caplog.clear()
    check_config(run, config(tmp_path, "engine.actors=4", "ray.num_cpus=8"), force=False,
                 sections=sections)
    out = caplog.text
    assert "engine.actors 1 -> 4" in out and "ray.num_cpus None -> 8" in out
    saved = yaml.safe_load((tmp_path / "config.yaml").read_text())
    assert (saved["engine"]["actors"], saved["ray"]["num_cpus"]) == (4, 8)
    check_config(run, config(tmp_path, "engine.actors=4", "ray.num_cpus=8"), force=False,
                 sections=sections)
    assert "placement" not in caplog.text.split("ray.num_cpus None -> 8")[-1]  # saved now


def test_a_resume_that_changes_results_is_refused_naming_them_and_the_fine_ones(tmp_path):
    run = RunDir(str(tmp_path))
    check_config(run, config(tmp_path), force=False)
    with pytest.raises(ConfigChangedError) as err:
        check_config(run, config(tmp_path, "dpo.beta=0.3"), force=False)
    assert "changed: dpo.beta." in str(err.value)
    with pytest.raises(ConfigChangedError) as err:
        check_config(run, config(tmp_path, "dpo.beta=0.3", "engine.actors=4",
                                 "pools={future: {max_actors: 8}}"), force=False)
    message = str(err.value)
    assert "changed: dpo.beta (and engine.actors, pools.future.max_actors, which a resume " \
           "may change)" in message
    # Nothing was written: the run's config is still the one it was started with.
    assert yaml.safe_load((tmp_path / "config.yaml").read_text())["engine"]["actors"] == 1


def test_relative_paths_become_absolute(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    cfg = absolute_paths(load_config(None, ["model.path=m", "data.prompts=p.jsonl",
                                            "storage.run_dir=s3://bucket/run"]))
    assert cfg.model.path == str(tmp_path / "m")
    assert cfg.data.prompts == str(tmp_path / "p.jsonl")
    assert cfg.storage.run_dir == "s3://bucket/run"


def test_inside_a_job_ray_init_gets_no_runtime_env_of_its_own(tmp_path, monkeypatch):
    import ray

    calls = []
    monkeypatch.setattr(ray, "is_initialized", lambda: False)
    monkeypatch.setattr(ray, "init", lambda **kwargs: calls.append(kwargs))
    monkeypatch.setenv("RAY_ADDRESS", "http://head:8265")
    start_ray(config(tmp_path))
    monkeypatch.delenv("RAY_ADDRESS")
    start_ray(config(tmp_path, "ray.num_cpus=3"))
    # Quiet by default (terminal.py): Ray's driver logger from WARNING on, no worker output.
    assert calls[0] == {"address": None, "logging_level": logging.WARNING,
                        "log_to_driver": False}
    assert calls[1]["num_cpus"] == 3 and "runtime_env" in calls[1]
    # Only a local cluster of our own gets the Ray Train settings for one machine.
    assert LOCAL_TRAIN_ENV.items() <= calls[1]["runtime_env"]["env_vars"].items()
    assert calls[1]["address"] == "local"  # its own cluster, never a stale or foreign one


def test_verbose_leaves_ray_as_it_prints_by_default_and_quiet_quiets_ray_data(
        tmp_path, monkeypatch):
    import ray
    import ray.data

    from temporal_ray import terminal

    calls = []
    monkeypatch.setattr(ray, "is_initialized", lambda: False)
    monkeypatch.setattr(ray, "init", lambda **kwargs: calls.append(kwargs))
    context = ray.data.DataContext.get_current()
    monkeypatch.setattr(context, "enable_progress_bars", True)
    monkeypatch.setattr(context, "print_on_execution_start", True)
    try:
        terminal.configure(verbose=True)
        start_ray(config(tmp_path))
        assert "log_to_driver" not in calls[0] and "logging_level" not in calls[0]
        assert context.enable_progress_bars and context.print_on_execution_start
        terminal.configure()
        start_ray(config(tmp_path))
        assert calls[1]["log_to_driver"] is False
        assert not context.enable_progress_bars and not context.print_on_execution_start
        console = [h for h in logging.getLogger("ray.data").handlers if h.name == "console"]
        assert console and all(h.level == logging.WARNING for h in console)
    finally:
        for handler in logging.getLogger("ray.data").handlers:
            if handler.name == "console":
                handler.setLevel(logging.INFO)
        terminal.configure()


def test_hub_ids_become_snapshots_before_any_ray_work(hub_cache, tmp_path, monkeypatch):
    """model.path, a fixed judge and the eval reference by Hub id: the driver's config names
    the cached snapshot (and so its commit); an http judge's model id is the endpoint's."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    hub = ["model.path=tiny-org/tiny-model", f"storage.hub_cache={hub_cache}"]
    cfg = absolute_paths(config(tmp_path, *hub, "judge.model=tiny-org/tiny-model@main"))
    snapshots = Path(hub_cache) / "models--tiny-org--tiny-model" / "snapshots"
    (commit,) = [p.name for p in snapshots.iterdir()]
    assert cfg.model.path == cfg.judge.model == str(snapshots / commit)
    served = absolute_paths(config(tmp_path, *hub, "judge.model=org/judge",
                                   "judge.engine.kind=http", "judge.engine.url=http://j/v1"))
    assert served.judge.model == "org/judge"
    ev = eval_paths(config(tmp_path, *hub, "eval.reference=tiny-org/tiny-model"))
    assert ev.eval.reference == str(snapshots / commit)
