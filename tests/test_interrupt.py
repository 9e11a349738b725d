"""SIGINT/SIGTERM of a local pipeline run: the task subprocess group ends, one line says where the
run stands and that the same --root resumes, exit 130/143, no traceback, the lease released.

A one-task pipeline (the task starts a child of its own, then sleeps) stands in for a real one, and
its plan skips the DNA run config's checks, so the signal arrives while a task subprocess runs
within seconds, on KFP's real local runner and the pipelines' real entry point (``cli.main``)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest

from dna.lease import read_holder

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

SCRIPT = textwrap.dedent('''
    import os
    import sys
    from kfp import dsl
    from pipelines import cli
    from pipelines.plan import Plan

    @dsl.component(base_image="python:3.11", install_kfp_package=False)
    def nap(pids: str) -> str:
        import os
        import subprocess
        import sys
        import time
        child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
        with open(pids + ".tmp", "w") as f:
            f.write(f"{os.getpid()} {child.pid}")
        os.replace(pids + ".tmp", pids)
        time.sleep(600)
        return "slept"

    @dsl.pipeline(name="nap")
    def nap_pipeline(pids: str = "") -> str:
        return nap(pids=pids).output

    def light_plan(args, *_):
        """The checked plan of a local run, without the DNA run config's checks (seconds of imports)."""
        return Plan(mode="local", run_config={"root": os.path.abspath(args.root)}, generations=1,
                    arguments={"pids": sys.argv[1], "storage_secret": ""})

    cli.make_plan = light_plan
    sys.exit(cli.main(sys.argv[2:], prog="nap", description="nap", build=lambda g, o: nap_pipeline))
''')


def gone(pid: int) -> bool:
    """No such process, or only its zombie (exited, waiting for init to reap it)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] == "Z"
    except FileNotFoundError:
        return True


@pytest.mark.parametrize("signum, code", [(signal.SIGINT, 130), (signal.SIGTERM, 143)], ids=["SIGINT", "SIGTERM"])
def test_signal_ends_the_task_group_and_says_how_to_resume(tmp_path, signum, code):
    script, pids, root = tmp_path / "nap.py", tmp_path / "pids", tmp_path / "run"
    script.write_text(SCRIPT)
    env = dict(os.environ, PYTHONPATH=REPO, HF_HUB_OFFLINE="1")
    env.pop("DNA_RUN_ID", None)
    proc = subprocess.Popen([sys.executable, str(script), str(pids), "--root", str(root)], cwd=tmp_path, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.time() + 90
        while not pids.exists() and proc.poll() is None and time.time() < deadline:
            time.sleep(0.1)
        assert pids.exists(), proc.communicate(timeout=30)
        task, child = (int(p) for p in pids.read_text().split())
        assert read_holder(str(root)) is not None              # the run holds its root
        proc.send_signal(signum)
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == code, err
    assert "Traceback" not in err and "KeyboardInterrupt" not in err, err
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 1, err
    name = signal.Signals(signum).name
    assert f"interrupted ({name})" in lines[0] and f"--root {root}" in lines[0] and "resume" in lines[0]
    deadline = time.time() + 10
    while not (gone(task) and gone(child)) and time.time() < deadline:
        time.sleep(0.1)
    assert gone(task) and gone(child), f"left running: task {task}, its child {child}"
    assert read_holder(str(root)) is None                      # the lease is released


def test_where_it_stands_names_the_stored_stages(tmp_path):
    from dna import storage
    from pipelines.stop import where_it_stands

    root = str(tmp_path / "run")
    assert where_it_stands(root) == "nothing yet"
    for part in ("config.json", "gen0/teacher/model.pt", "gen0/supernet/block0/supernet.pt",
                 "gen0/supernet/block1/supernet.pt", "gen0/supernet/block2/checkpoint-tmp",
                 "gen0/scores/block=0/part-0.parquet", "gen0/search/arch.json", "gen1/teacher/x"):
        storage.write_bytes(b"x", os.path.join(root, part))
    assert where_it_stands(root) == ("config; gen0: teacher, 2 block supernet checkpoint(s), scores of 1 block(s), "
                                     "search; gen1: nothing finished")
