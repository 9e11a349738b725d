"""Quiet terminal and cluster-sized fan-out (components/fanout/quiet, sizing, events): unit tests,
no Ray session (a fan-out on tiny blocks is in tests/test_ray_blocks.py)."""

from __future__ import annotations

import logging

import pytest

from components.fanout import local_ray, quiet, tuner
from components.fanout.events import BlockEvents, cause_line, tune_callback
from components.fanout.sizing import block_need, check_fits, concurrency_cap, max_concurrent
from components.fanout.spec import FanOut
from dna import storage
from dna.errors import DnaError
from dna.generation import RunConfig
from dna.teacher import TeacherConfig
from tests.helpers import tiny_data


def _spec(root, task="train", **kw) -> FanOut:
    cfg = RunConfig(root=str(root), space="mbconv-tiny", data=tiny_data(), block_epochs=1, block_max_steps=1)
    return FanOut(task=task, run=cfg, generation=0, teacher=TeacherConfig(model="x.json"), blocks=[0, 1, 2], **kw)


@pytest.fixture
def quiet_env(monkeypatch):
    for k in (quiet.VERBOSE_ENV, *quiet.QUIET_ENV, "RAY_ADDRESS"):
        monkeypatch.setenv(k, "")           # recorded, so what the code sets is undone after the test
        monkeypatch.delenv(k)
    return monkeypatch


# ----- concurrency from the cluster's resources -------------------------------------------------
def test_block_need_follows_ray_train_scaling_defaults(tmp_path):
    assert block_need(_spec(tmp_path)) == {"CPU": 1.0, "GPU": 0.0}          # 1 CPU worker, 0-CPU trial
    assert block_need(_spec(tmp_path, use_gpu=True)) == {"CPU": 0.0, "GPU": 1.0}
    assert block_need(_spec(tmp_path, workers_per_block=3), worker={"CPU": 2}) == {"CPU": 6.0, "GPU": 0.0}
    assert block_need(_spec(tmp_path, task="rate")) == {"CPU": 1.0, "GPU": 0.0}
    assert block_need(_spec(tmp_path, task="rate", use_gpu=True)) == {"CPU": 1.0, "GPU": 1.0}


def test_concurrency_cap_from_given_cluster_resources(tmp_path):
    cpu = {"CPU": 1.0, "GPU": 0.0}
    assert concurrency_cap(cpu, {"CPU": 2.0}) == 2                      # this 2-core machine
    assert concurrency_cap(cpu, {"CPU": 7.5, "memory": 1e9}) == 7
    assert concurrency_cap({"CPU": 0.0, "GPU": 1.0}, {"CPU": 64.0, "GPU": 4.0}) == 4   # GPUs bound it
    assert concurrency_cap({"CPU": 1.0, "GPU": 1.0}, {"CPU": 3.0, "GPU": 8.0}) == 3    # CPUs bound it
    assert concurrency_cap({"CPU": 4.0, "GPU": 0.0}, {"CPU": 2.0}) == 1  # at least one (autoscaler)
    assert concurrency_cap({"CPU": 0.0, "GPU": 1.0}, {"CPU": 8.0}) == 1
    spec = _spec(tmp_path)
    assert max_concurrent(spec, {"CPU": 2.0}, n_blocks=6) == 2
    assert max_concurrent(spec, {"CPU": 16.0}, n_blocks=6) == 6          # never more than the blocks
    assert max_concurrent(_spec(tmp_path, max_concurrent=1), {"CPU": 16.0}, 6) == 1   # the flag overrides
    assert max_concurrent(_spec(tmp_path, max_concurrent=4), {"CPU": 2.0}, 6) == 4
    assert max_concurrent(_spec(tmp_path, use_gpu=True), {"CPU": 16.0, "GPU": 2.0}, 6) == 2


def test_block_that_cannot_fit_is_refused_naming_the_need(tmp_path):
    check_fits(_spec(tmp_path), {"CPU": 1.0})
    with pytest.raises(DnaError, match=r"has 8 CPUs and 0 GPUs; one train block needs 0 CPUs and 1 GPUs"):
        check_fits(_spec(tmp_path, use_gpu=True), {"CPU": 8.0})


# ----- quiet by Ray's own settings; verbose restores them ---------------------------------------
def test_quiet_ray_settings_and_verbose_restores_them(quiet_env):
    assert quiet.ray_init_kwargs() == {"log_to_driver": False, "logging_level": logging.WARNING}
    assert quiet.tune_verbosity() == 0
    quiet.apply_quiet_env()
    assert quiet_env_value("RAY_AIR_NEW_OUTPUT") == "0"       # Tune's new output ignores verbose=0
    quiet.set_verbose(True)
    assert quiet.is_verbose()
    assert quiet.ray_init_kwargs() == {"log_to_driver": True, "logging_level": logging.INFO}
    assert quiet.tune_verbosity() == 1
    quiet.apply_quiet_env()
    assert quiet_env_value("RAY_AIR_NEW_OUTPUT") is None      # Ray's default again
    quiet.set_verbose(False)
    assert not quiet.is_verbose()


def quiet_env_value(key: str):
    import os

    return os.environ.get(key)


def test_connect_to_a_local_runs_ray_is_quiet_unless_verbose(quiet_env, tmp_path):
    import ray

    calls: list[dict] = []
    quiet_env.setattr(ray, "is_initialized", lambda: False)
    quiet_env.setattr(ray, "init", lambda **kw: calls.append(kw))
    quiet_env.setenv("RAY_ADDRESS", "127.0.0.1:6379")          # a task of a local run
    local_ray.connect(_spec(tmp_path), None)
    quiet_env.setenv(quiet.VERBOSE_ENV, "1")                    # --verbose
    local_ray.connect(_spec(tmp_path), None)
    assert [c["log_to_driver"] for c in calls] == [False, True]
    assert [c["logging_level"] for c in calls] == [logging.WARNING, logging.INFO]


class _FakeTuner:
    seen: dict = {}

    def __init__(self, trainable, param_space, tune_config, run_config):
        _FakeTuner.seen = {"param_space": param_space, "tune_config": tune_config, "run_config": run_config}

    def fit(self):
        return []


def test_tune_outputs_and_hint_under_the_run_root(quiet_env, tmp_path):
    import ray
    from ray import tune

    quiet_env.setattr(tuner, "connect", lambda spec, address: None)
    quiet_env.setattr(ray, "cluster_resources", lambda: {"CPU": 2.0, "memory": 1e9})
    quiet_env.setattr(tune, "Tuner", _FakeTuner)
    root = tmp_path / "run"
    spec = _spec(root)
    lines: list[str] = []
    assert tuner._tune(spec, [0, 1, 2], None, lines.append) == {}
    run_config = _FakeTuner.seen["run_config"]
    gen_ray = storage.local_path(storage.join(str(root), "gen0", "ray"))
    assert run_config.storage_path == gen_ray and run_config.name == spec.name
    assert run_config.verbose == 0 and len(run_config.callbacks) == 1
    assert _FakeTuner.seen["tune_config"].max_concurrent_trials == 2
    assert "/tmp/ray" not in "\n".join(lines)
    assert any(f"Ray Tune results: {storage.join(spec.ray_storage, spec.name)}" in ln for ln in lines), lines
    assert "2 at a time (cluster 2 CPUs, 0 GPUs; a block holds 1 CPUs, 0 GPUs)" in lines[0]

    quiet_env.setenv(quiet.VERBOSE_ENV, "1")
    tuner._tune(_spec(root, max_concurrent=1), [0, 1], None, lines.append)
    assert _FakeTuner.seen["run_config"].verbose == 1
    assert _FakeTuner.seen["tune_config"].max_concurrent_trials == 1
    assert quiet_env_value("RAY_AIR_NEW_OUTPUT") is None


def test_local_run_verbose_reaches_the_task_processes(quiet_env, tmp_path):
    import os

    from dna.layout import run_files
    from pipelines.local_run import run_local

    seen: list = []

    def pipeline(**arguments):
        seen.append(os.environ.get(quiet.VERBOSE_ENV))            # what a task subprocess inherits
        storage.write_json({"ok": True}, run_files(str(tmp_path)).summary)

    pipeline.name = "fake"
    for verbose in (True, False):
        run_local(pipeline, {"ray_address": "127.0.0.1:1"}, str(tmp_path), log=lambda m: None, verbose=verbose)
    assert seen == ["1", None]
    assert quiet.VERBOSE_ENV not in os.environ


# ----- one line per block event ------------------------------------------------------------------
def test_block_events_are_one_line_each():
    lines: list[str] = []
    ev = BlockEvents("[gen 1] train", lines.append, total=2)
    ev.start(0)
    ev.result(0, {"epoch": 1, "epochs": 3, "loss": 0.51234, "images_per_s": 812.4, "elapsed_s": 4.0,
                  "resumed_from": 0})
    ev.result(0, {"epoch": 3, "epochs": 3, "loss": 0.4, "elapsed_s": 2.0, "resumed_from": 2})
    ev.result(0, {"block": 0, "dna_json": "{}"})
    tb = ('Traceback (most recent call last):\n  File "x.py", line 1, in f\n    raise ValueError("boom")\n'
          "ValueError: boom\n\n")
    ev.result(1, {"block": 1, "dna_error": tb, "dna_log": "/runs/r/gen1/ray/x/block1-error.txt"})
    ev.start(1)
    ev.start(1)                                   # Tune started the trial again (its process was lost)
    assert lines[0] == "[gen 1] train block 0: started"
    assert lines[1] == "[gen 1] train block 0: epoch 1/3, loss 0.5123, 812 img/s, ETA 8 s"
    assert lines[2] == "[gen 1] train block 0: resumed from its checkpoint of epoch 2"
    assert lines[3] == "[gen 1] train block 0: epoch 3/3, loss 0.4000"
    assert lines[4].startswith("[gen 1] train block 0: finished in ") and lines[4].endswith("(1/2 blocks done)")
    assert lines[5] == ("[gen 1] train block 1: failed: ValueError: boom "
                        "(full log: /runs/r/gen1/ray/x/block1-error.txt)")
    assert lines[6:] == ["[gen 1] train block 1: started", "[gen 1] train block 1: started (attempt 2)"]
    assert all("\n" not in ln for ln in lines)
    assert cause_line("") == "unknown error"


def test_events_callback_pickles_without_its_log():
    """Tune pickles callbacks with the experiment; the log (e.g. a patched ``print``) is left out."""
    import pickle
    import threading

    import ray.cloudpickle

    lines: list[str] = []
    lock = threading.Lock()                                     # not picklable, like a patched print

    def log(m: str) -> None:
        with lock:
            lines.append(m)

    cb = tune_callback(BlockEvents("[gen 0] rate", log, total=1))
    trial = type("Trial", (), {"config": {"block": 3}})()
    cb.on_trial_start(0, [], trial)
    assert lines == ["[gen 0] rate block 3: started"]
    restored = pickle.loads(ray.cloudpickle.dumps(cb))
    restored.on_trial_start(0, [], trial)                       # a restored experiment logs nothing
    assert lines == ["[gen 0] rate block 3: started"]


def test_local_run_output_has_one_task_line_and_drops_kfp_bookkeeping():
    import io

    from pipelines.local_run import _HideExecutorInput

    kfp = ("09:03:43.408 - INFO - Executing task \x1b[96m'train-teacher'\x1b[0m\n"
           "09:03:43.408 - INFO - Streamed logs:\n\n"
           "    [KFP Executor 2026-12-02 09:03:43,472 INFO]: Looking for component `train_teacher` in x\n"
           "    [KFP Executor 2026-12-02 09:03:43,472 INFO]: Loading KFP component \"train_teacher\" from y\n"
           "    [dna 09:03:47] [gen 0] teacher\n"
           "    [KFP Executor 2026-12-02 09:03:49,051 INFO]: Wrote executor output file to z\n"
           "09:03:50.745 - INFO - Task \x1b[96m'train-teacher'\x1b[0m finished with status \x1b[92mSUCCESS\x1b[0m\n"
           "09:03:50.745 - INFO - Task \x1b[96m'train-teacher'\x1b[0m outputs:\n"
           "    teacher: Model( name='teacher',\n"
           "                    metadata={'uri': 'x'} )\n"
           + "-" * 80 + "\n"
           "    [KFP Executor 2026-12-02 09:03:49,051 INFO]: something else\n")
    quiet_buf, verbose_buf = io.StringIO(), io.StringIO()
    for buf, chatter in ((quiet_buf, True), (verbose_buf, False)):
        f = _HideExecutorInput(buf, kfp_chatter=chatter)
        f.write(kfp)
        f.flush()
    assert quiet_buf.getvalue().splitlines() == [
        "    [dna 09:03:47] [gen 0] teacher",
        "task 'train-teacher' done in 0s",
        "    [KFP Executor 2026-12-02 09:03:49,051 INFO]: something else"]
    assert verbose_buf.getvalue() == kfp
    failed = "09:03:50.745 - ERROR - Task \x1b[96m'x'\x1b[0m finished with status \x1b[91mFAILURE\x1b[0m\n"
    f = _HideExecutorInput(quiet_buf := io.StringIO(), kfp_chatter=True)
    f.write(failed)
    assert quiet_buf.getvalue() == failed                  # a failure keeps KFP's own line
