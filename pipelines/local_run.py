"""A whole pipeline here, on KFP's own local runner (one subprocess per task), with one local Ray."""

import os
import re
import sys
import tempfile
import time
import warnings
from collections.abc import Callable
from typing import Any

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


class _HideExecutorInput:
    """A stdout filter for local runs: drops the JSON executor input KFP's executor logs for every
    task (tens of lines each; it is in the task's folder under ``<root>/kfp/``) and, with
    ``kfp_chatter``, the rest of KFP's per-task bookkeeping (its executor's "Looking for / Loading
    component / Wrote executor output" lines, "Streamed logs:", the artifact listing after
    "Task ... outputs:", the rules between tasks), keeping its "Executing task" and "finished with
    status" lines, which become one line of ours per task, ``task 'x' done in 2m54s``; a task that
    fails keeps KFP's own line), and the blank lines KFP puts around a task's log. KFP's local
    runner has no setting for these (it sets the root logger to INFO around every task);
    ``--verbose`` shows them all."""

    CHATTER = re.compile(r"^\s*\[KFP Executor [^]]*\]: (Looking for component|Loading KFP component|"
                         r"Wrote executor output)|^[\d:.]+ - INFO - Streamed logs:\s*$|^-{20,}\s*$|"
                         r"^[\d:.]+ - INFO - Pipeline .* finished with status \S*SUCCESS")
    OUTPUTS = re.compile(r"^[\d:.]+ - INFO - Task .* (outputs:|has no outputs)\s*$")
    STARTED = re.compile(r"^[\d:.]+ - INFO - (Executing task|Running pipeline:) (?P<name>.*?)\s*$")
    SUCCEEDED = re.compile(r"^[\d:.]+ - INFO - Task (?P<name>.*) finished with status \S*SUCCESS\S*\s*$")
    ANSI = re.compile(r"\x1b\[[0-9;]*m")

    def __init__(self, stream, kfp_chatter: bool = False):
        self.stream, self.skip, self.buf = stream, False, ""
        self.kfp_chatter, self.in_outputs = kfp_chatter, False
        self.started: dict[str, float] = {}

    def write(self, text: str) -> int:
        self.buf += text
        while "\n" in self.buf:
            line, self.buf = self.buf.split("\n", 1)
            if self.skip:
                self.skip = line.rstrip() != "    }"
            elif line.rstrip().endswith("Got executor_input:"):
                self.skip = True
            elif self.kfp_chatter and self._chatter(line):
                continue
            else:
                self.stream.write(line + "\n")
        return len(text)

    def _chatter(self, line: str) -> bool:
        if self.OUTPUTS.match(line):
            self.in_outputs = True
            return True
        if self.in_outputs and (line.startswith(" ") or not line.strip()):
            return True                   # the indented artifact listing of "Task ... outputs:"
        self.in_outputs = False
        if not line.strip():
            return True                   # KFP's blank lines around each task's log
        started = self.STARTED.match(line)
        if started:
            self.started[self.ANSI.sub("", started["name"])] = time.time()
            return True
        done = self.SUCCEEDED.match(line)
        if done:
            name = self.ANSI.sub("", done["name"])
            took = time.time() - self.started.pop(name, time.time())
            self.stream.write(f"task {name} done in {_duration(took)}\n")
            return True
        return bool(self.CHATTER.match(line))

    def flush(self) -> None:
        if self.buf and not self.skip:
            self.stream.write(self.buf)
        self.buf = ""
        self.stream.flush()

    def __getattr__(self, name):
        return getattr(self.stream, name)


def set_thread_env() -> None:
    """The CPU threads of a local run's processes (what the caller set is kept)."""
    from components._runtime import TASK_THREADS_ENV

    # One torch thread per Ray worker: the block fan-outs run a worker per core, and torch's
    # default (a thread per core, spinning) is many times slower on a busy CPU. A task's own
    # process gets every core: KFP's local runner runs one task at a time, so a training task
    # alone on one thread left the other cores idle (benchmarks/RESULTS.md, "Demo: trainings on
    # every core": 1.30-1.52x the images per second of the demo's nets on 2 cores).
    os.environ.setdefault("DNA_TORCH_THREADS", "1")
    os.environ.setdefault("OMP_NUM_THREADS", os.environ["DNA_TORCH_THREADS"])
    os.environ.setdefault(TASK_THREADS_ENV, str(local_cores()))


def local_cores() -> int:
    """The cores this process may run on (its affinity: a container's CPU set, not the host's)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:          # no sched_getaffinity (macOS)
        return max(1, os.cpu_count() or 1)


def _duration(seconds: float) -> str:
    m, s = divmod(int(round(seconds)), 60)
    return f"{m}m{s:02d}s" if m else f"{s}s"


def run_local(pipeline_func, arguments: dict[str, Any], root: str, log: Callable[[str], Any] = print,
              verbose: bool = False) -> dict:
    """The whole pipeline here, on KFP's local runner, holding the root's lease (``dna.lease``);
    returns the run's summary.json. SIGINT/SIGTERM raise :class:`pipelines.stop.Interrupted`
    once every task subprocess group has ended."""
    from dna.lease import RUN_ID_ENV, Lease, new_run_id
    from pipelines.stop import task_groups

    run_id = new_run_id()
    with Lease(root, run_id, log=log):
        check_root_config(arguments, root, log)
        previous = os.environ.get(RUN_ID_ENV)
        os.environ[RUN_ID_ENV] = run_id          # the tasks join this run's lease
        try:
            with task_groups():
                return _run_local(pipeline_func, arguments, root, log, verbose)
        finally:
            if previous is None:
                os.environ.pop(RUN_ID_ENV, None)
            else:
                os.environ[RUN_ID_ENV] = previous


def check_root_config(arguments: dict[str, Any], root: str, log: Callable[[str], Any]) -> None:
    """Refuse a root holding another run's config.json before any task starts (``prepare_data``
    checks it again), unless ``reuse_root``."""
    if "run_config" not in arguments:
        return
    import dataclasses
    import json

    from dna.generation import RunConfig
    from dna.layout import run_files
    from dna.lease import check_stored_config

    cfg = RunConfig.from_dict(json.loads(arguments["run_config"]))
    cfg = dataclasses.replace(cfg, root=root).validate()
    check_stored_config(run_files(root).config, cfg.to_dict(), bool(arguments.get("reuse_root")), log)


def _run_local(pipeline_func, arguments: dict[str, Any], root: str, log: Callable[[str], Any],
               verbose: bool) -> dict:
    import kfp.local

    from dna import storage

    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    set_thread_env()
    os.environ["PYTHONPATH"] = os.pathsep.join(p for p in (REPO_ROOT, os.environ.get("PYTHONPATH", "")) if p)
    if os.path.isfile("dna.py") or os.path.abspath(os.getcwd()) == os.path.join(REPO_ROOT, "pipelines"):
        os.chdir(REPO_ROOT)        # component subprocesses import `dna` from the working directory
    local_root = storage.local_path(root) if not storage.is_s3(root) else None
    kfp_root = os.path.join(local_root, "kfp") if local_root else tempfile.mkdtemp(prefix="dna-kfp-")
    kfp.local.init(runner=kfp.local.SubprocessRunner(use_venv=False), pipeline_root=kfp_root,
                   raise_on_error=True)
    warnings.filterwarnings("ignore", message=".*non-Python base image.*")
    warnings.filterwarnings("ignore", message=".*have no effect in the current local runner.*")
    t0 = time.time()
    log(f"running pipeline {pipeline_func.name!r} locally (KFP local runner, one subprocess per task); "
        f"run root {root}")
    previous_verbose = os.environ.get("DNA_VERBOSE")
    if "ray_address" in arguments:   # the task subprocesses' fan-outs read it (components.fanout.quiet)
        from components.fanout.quiet import set_verbose

        set_verbose(verbose)
    ray = None
    if not arguments.get("ray_address") and not os.environ.get("RAY_ADDRESS") and "ray_address" in arguments:
        ray = start_local_ray(log)
    stdout = sys.stdout
    if not verbose:
        sys.stdout = _HideExecutorInput(stdout, kfp_chatter=True)
    try:
        pipeline_func(**arguments)
    finally:
        if sys.stdout is not stdout:
            sys.stdout.flush()
            sys.stdout = stdout
        if ray is not None:
            ray.shutdown()
            os.environ.pop("RAY_ADDRESS", None)
        if previous_verbose is None:
            os.environ.pop("DNA_VERBOSE", None)
        else:
            os.environ["DNA_VERBOSE"] = previous_verbose
    from dna.layout import run_files

    summary = storage.read_json(run_files(root).summary)
    summary["seconds"] = time.time() - t0
    summary["kfp_outputs"] = kfp_root
    return summary


def start_local_ray(log: Callable[[str], Any] = print):
    """One local Ray for every task of a local run (``RAY_ADDRESS`` for the task subprocesses),
    instead of a Ray started and stopped by each fan-out task; stopped when the run ends. This
    process runs no Ray work itself (no streamed logs here); each task's fan-out connects quietly
    or, with ``--verbose``, with Ray's own output."""
    import ray

    from components.fanout.local_ray import init_local_ray

    init_local_ray(log_to_driver=False)
    os.environ["RAY_ADDRESS"] = ray.get_runtime_context().gcs_address
    log(f"local Ray for the block fan-outs: {os.environ['RAY_ADDRESS']}")
    return ray
