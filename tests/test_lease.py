"""One live run per root (``dna.lease``): refusal naming the holder, stale takeover, same-run
re-entry, heartbeats, S3 conditional writes under concurrency, and the stored-config check."""

from __future__ import annotations

import io
import json
import os
import socket
import subprocess
import sys
import threading
import time

import pytest

from dna import storage
from dna.errors import DnaError
from dna.lease import (
    Holder,
    Lease,
    LeaseHeld,
    _pid_ns,
    check_stored_config,
    differing_keys,
    lease_uri,
    read_holder,
)
from tests.s3fixture import s3_bucket  # noqa: F401


def quiet(messages: list[str]):
    return messages.append


def write_holder(root: str, **kw) -> None:
    d = {"run_id": "old-run", "host": "elsewhere", "pid": 4242, "started": time.time() - 7200,
         "heartbeat": time.time() - 3600, "token": "t0"} | kw
    storage.write_bytes(Holder(**d).dumps(), lease_uri(root))


def dead_pid() -> int:
    p = subprocess.Popen([sys.executable, "-c", "pass"])
    p.wait()
    return p.pid


def test_second_run_on_a_live_root_is_refused_naming_the_holder(tmp_path):
    root = str(tmp_path / "run")
    with Lease(root, "run-a", log=quiet([])):
        with pytest.raises(LeaseHeld) as exc:
            Lease(root, "run-b", log=quiet([])).acquire()
        msg = str(exc.value)
        for part in ("run-a", socket.gethostname(), f"pid {os.getpid()}", "last heartbeat", root):
            assert part in msg
        assert read_holder(root).run_id == "run-a"
    assert read_holder(root) is None and not os.path.exists(root)   # released, no empty folder left
    with Lease(root, "run-b", log=quiet([])) as b:            # and then free for the next run
        assert b.owned


def test_stale_lease_is_taken_over_and_says_so(tmp_path):
    root = str(tmp_path / "run")
    write_holder(root)                                        # an hour without a heartbeat
    logs: list[str] = []
    with Lease(root, "run-new", stale_after=60, log=logs.append) as lease:
        assert lease.owned and read_holder(root).run_id == "run-new"
    assert len(logs) == 1 and "took over the stale lease" in logs[0] and "old-run" in logs[0]
    assert "no heartbeat for" in logs[0]

    # fresh heartbeat, same host name, but another pid namespace (a container): its pid says nothing
    pid = dead_pid()
    write_holder(root, host=socket.gethostname(), pid=pid, heartbeat=time.time(), pid_ns="pid:[1]")
    with pytest.raises(LeaseHeld, match="old-run"):
        Lease(root, "run-newer", log=quiet([])).acquire()
    # fresh heartbeat, but its pid is dead on this very host: taken over too
    write_holder(root, host=socket.gethostname(), pid=pid, heartbeat=time.time(), pid_ns=_pid_ns())
    logs.clear()
    with Lease(root, "run-newer", log=logs.append):
        assert read_holder(root).run_id == "run-newer"
    assert "is no longer running on this host" in logs[0]

    # fresh heartbeat on another host: not stale, refused
    write_holder(root, heartbeat=time.time())
    with pytest.raises(LeaseHeld, match="old-run"):
        Lease(root, "run-late", stale_after=60, log=quiet([])).acquire()


def test_an_unreadable_lease_counts_by_its_age(tmp_path):
    root = str(tmp_path / "run")
    storage.write_bytes(b"{torn", lease_uri(root))
    with pytest.raises(LeaseHeld, match="unreadable lease"):
        Lease(root, "run-a", log=quiet([])).acquire()
    old = time.time() - 3600
    os.utime(lease_uri(root), (old, old))
    with Lease(root, "run-a", stale_after=60, log=quiet([])):
        assert read_holder(root).run_id == "run-a"


def test_same_run_id_reenters_and_only_the_creator_removes(tmp_path, monkeypatch):
    from components import _runtime as rt

    root = str(tmp_path / "run")
    driver = Lease(root, "run-x", log=quiet([])).acquire()
    task = Lease(root, "run-x", log=quiet([])).acquire()      # a task of the same run
    assert driver.owned and not task.owned
    task.release()
    assert read_holder(root).run_id == "run-x"               # a task leaves it to its creator

    # a component process: DNA_RUN_ID joins, another run's id is refused, no id only checks
    monkeypatch.setattr(rt, "_leases", {})
    monkeypatch.setenv("DNA_RUN_ID", "run-x")
    rt.hold_root(root)
    assert not rt._leases[root].owned
    rt._leases[root].release()
    monkeypatch.setattr(rt, "_leases", {})
    monkeypatch.setenv("DNA_RUN_ID", "run-y")
    with pytest.raises(LeaseHeld, match="run-x"):
        rt.hold_root(root)
    monkeypatch.delenv("DNA_RUN_ID")
    with pytest.raises(LeaseHeld, match="run-x"):
        rt.hold_root(root)
    driver.release()
    assert read_holder(root) is None
    rt.hold_root(root)                                         # free root, no run id: proceeds, takes nothing
    assert read_holder(root) is None and root not in rt._leases


def test_heartbeat_refreshes_and_notices_a_lost_lease(tmp_path):
    root = str(tmp_path / "run")
    logs: list[str] = []
    lease = Lease(root, "run-a", heartbeat_s=0.05, log=logs.append).acquire()
    first = read_holder(root).heartbeat
    deadline = time.time() + 5
    while read_holder(root).heartbeat == first and time.time() < deadline:
        time.sleep(0.02)
    assert read_holder(root).heartbeat > first and read_holder(root).run_id == "run-a"

    write_holder(root, run_id="thief", heartbeat=time.time())  # taken by another run meanwhile
    while not lease.lost and time.time() < deadline:
        time.sleep(0.02)
    assert lease.lost and any("thief" in m for m in logs)
    lease.release()
    assert read_holder(root).run_id == "thief"               # not removed: it is not ours


def acquire_all(root: str, n: int, **kw) -> tuple[list[Lease], list[BaseException]]:
    """``n`` threads acquire the lease of ``root`` at once (different run ids)."""
    won: list[Lease] = []
    lost: list[BaseException] = []
    barrier = threading.Barrier(n)

    def one(i: int) -> None:
        lease = Lease(root, f"run-{i}", log=quiet([]), **kw)
        barrier.wait()
        try:
            won.append(lease.acquire())
        except LeaseHeld as exc:
            lost.append(exc)

    threads = [threading.Thread(target=one, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    return won, lost


def test_local_concurrent_acquirers_exactly_one_wins(tmp_path):
    root = str(tmp_path / "run")
    won, lost = acquire_all(root, 8)
    assert len(won) == 1 and len(lost) == 7
    assert read_holder(root).run_id == won[0].run_id
    won[0].release()
    write_holder(root)                                         # stale: exactly one takes it over
    won, lost = acquire_all(root, 8, stale_after=60)
    assert len(won) == 1 and len(lost) == 7 and read_holder(root).run_id == won[0].run_id
    won[0].release()
    assert not [n for n in os.listdir(root) if n != ".dna-lease.json" and n.startswith(".dna-lease")]


def test_s3_lease_concurrent_acquirers_exactly_one_wins(s3_bucket):  # noqa: F811
    root = f"{s3_bucket}/runs/r1"
    won, lost = acquire_all(root, 8)
    assert len(won) == 1 and len(lost) == 7
    assert all(won[0].run_id in str(e) for e in lost)
    assert won[0].refresh() and read_holder(root).run_id == won[0].run_id
    won[0].release()
    assert read_holder(root) is None and not storage.exists(lease_uri(root))

    write_holder(root)                                         # a stale S3 lease: one conditional put wins
    won, lost = acquire_all(root, 6, stale_after=60)
    assert len(won) == 1 and len(lost) == 5 and read_holder(root).run_id == won[0].run_id
    won[0].release()


def test_stored_config_mismatch_is_refused_unless_reused(tmp_path):
    uri = str(tmp_path / "config.json")
    old = {"seed": 0, "data": {"train_size": 256, "resolution": 32}, "root": "r"}
    new = {"seed": 1, "data": {"train_size": 256, "resolution": 48}, "root": "r"}
    assert differing_keys(old, new) == ["data.resolution", "seed"]
    check_stored_config(uri, new, reuse=False)                # nothing stored: fine
    storage.write_json(old, uri)
    check_stored_config(uri, old, reuse=False)                # the same config: a resume
    check_stored_config(uri, dict(old, generations=3), reuse=False)   # more generations of it: a resume too
    with pytest.raises(DnaError) as exc:
        check_stored_config(uri, new, reuse=False)
    msg = str(exc.value)
    assert "seed (0 stored, 1 now)" in msg and "data.resolution (32 stored, 48 now)" in msg
    assert "--reuse-root" in msg and "train_size" not in msg
    logs: list[str] = []
    check_stored_config(uri, new, reuse=True, log=logs.append)
    assert "--reuse-root" in logs[0] and "seed" in logs[0]


def test_prepare_data_refuses_another_config_unless_reuse_root(tmp_path, monkeypatch):
    from components import _runtime as rt
    from components.data import prepare_data
    from dna.generation import RunConfig
    from tests.test_components import artifact

    monkeypatch.setattr(rt, "_leases", {})
    monkeypatch.delenv("DNA_RUN_ID", raising=False)
    root = str(tmp_path / "run")

    def prepare(seed: int, **kw) -> str:
        cfg = RunConfig(root=root, transfer=[], seed=seed)
        return prepare_data.python_func(run_config=json.dumps(cfg.to_dict()), generations=1, run_id="r",
                                        data=artifact(tmp_path, "data"), report=artifact(tmp_path, "data.md"), **kw)

    prepare(0)
    prepare(0)                                                 # the same config again: a resume
    with pytest.raises(DnaError, match=r"seed \(0 stored, 3 now\)"):
        prepare(3)
    assert storage.read_json(os.path.join(root, "config.json"))["seed"] == 0
    prepare(3, reuse_root=True)
    assert storage.read_json(os.path.join(root, "config.json"))["seed"] == 3


def test_generation_run_refuses_a_held_root_and_another_config(tmp_path):
    from dna.generation import RunConfig, run

    root = str(tmp_path / "run")
    with Lease(root, "other-run", log=quiet([])), pytest.raises(LeaseHeld, match="other-run"):
        run(RunConfig(root=root, transfer=[]), log=quiet([]))
    storage.write_json(RunConfig(root=root, transfer=[], seed=9).to_dict(), os.path.join(root, "config.json"))
    with pytest.raises(DnaError, match=r"seed \(9 stored, 0 now\)"):
        run(RunConfig(root=root, transfer=[]), log=quiet([]))
    assert read_holder(root) is None                          # released on the error too


def test_train_block_refuses_a_block_another_run_trains(tmp_path, capsys):
    from dna.cli import main

    supernets = str(tmp_path / "supernets")
    with Lease(os.path.join(supernets, "block0"), "other-training", what="block folder", log=quiet([])):
        code = main(["train-block", "--block", "0", "--supernets", supernets, "--epochs", "1"])
    err = capsys.readouterr().err
    assert code == 2 and "other-training" in err and "block folder" in err and "Traceback" not in err


def test_pipeline_cli_refuses_a_root_with_another_config(tmp_path, capsys):
    """The local driver checks the stored config before any task starts: exit 2, keys named."""
    from pipelines import dna as dna_pipeline
    from pipelines.local_run import check_root_config

    root = str(tmp_path / "run")
    assert dna_pipeline.main(["--root", root, "--seed", "1", "--print-config"]) == 0
    printed = json.loads(capsys.readouterr().out)
    stored = dict(printed["arguments"]["run_config"], seed=0)
    storage.write_json(stored, os.path.join(root, "config.json"))
    assert dna_pipeline.main(["--root", root, "--seed", "1"]) == 2
    err = capsys.readouterr().err
    assert "seed (0 stored, 1 now)" in err and "--reuse-root" in err and "Traceback" not in err
    assert read_holder(root) is None
    args = {"run_config": json.dumps(printed["arguments"]["run_config"]), "reuse_root": True}
    logs: list[str] = []
    check_root_config(args, root, logs.append)                # --reuse-root: accepted, said so
    assert "seed" in logs[0]
    assert dna_pipeline.main(["--root", root, "--reuse-root", "--print-config"]) == 0
    assert json.loads(capsys.readouterr().out)["arguments"]["reuse_root"] is True


def test_kfp_tasks_get_the_pipeline_run_id_and_the_reuse_flag(tmp_path):
    """Every task pod gets ``DNA_RUN_ID`` from the run's pod label; prepare-data takes reuse_root."""
    import yaml

    from pipelines import dna as dna_pipeline

    path = str(tmp_path / "dna.yaml")
    assert dna_pipeline.main(["--compile", path, "--reuse-root"], out=io.StringIO()) == 0
    docs = list(yaml.safe_load_all(open(path)))
    spec, platform = docs[0], docs[1]["platforms"]["kubernetes"]["deploymentSpec"]["executors"]
    executors = set(spec["deploymentSpec"]["executors"])
    assert len(executors) > 5 and set(platform) == executors
    for name, ex in platform.items():
        assert {"fieldPath": "metadata.labels['pipeline/runid']", "name": "DNA_RUN_ID"} in ex["fieldPathAsEnv"], name
    assert spec["root"]["inputDefinitions"]["parameters"]["reuse_root"]["defaultValue"] is True
    assert "reuse_root" in spec["components"]["comp-prepare-data"]["inputDefinitions"]["parameters"]


def test_s3_store_without_conditional_writes_falls_back_to_read_then_put(s3_bucket, monkeypatch):  # noqa: F811
    """An S3 store answering conditional writes with NotImplemented still gets a working lease."""
    from botocore.exceptions import ClientError

    from dna import lease as lease_mod

    real = lease_mod._S3Store._client
    calls: list[str] = []

    class NoConditions:
        def __init__(self, client):
            self.client = client

        def __getattr__(self, name):
            method = getattr(self.client, name)

            def call(**kw):
                if name in ("put_object", "delete_object") and ({"IfMatch", "IfNoneMatch"} & set(kw)):
                    calls.append(name)
                    raise ClientError({"Error": {"Code": "NotImplemented", "Message": "no"}}, name)
                return method(**kw)
            return call

    monkeypatch.setattr(lease_mod._S3Store, "_client", lambda self: NoConditions(real(self)))
    root = f"{s3_bucket}/runs/old-store"
    with Lease(root, "run-a", log=quiet([])) as a:
        with pytest.raises(LeaseHeld, match="run-a"):
            Lease(root, "run-b", log=quiet([])).acquire()
        assert a.refresh() and read_holder(root).run_id == "run-a"
    assert read_holder(root) is None
    assert {"put_object", "delete_object"} <= set(calls)


def test_the_runs_last_task_ends_a_lease_whose_creator_is_gone(tmp_path, monkeypatch):
    """KFP: the task that created the lease ran in another pod; the summary task removes it, so
    the next run on this root is not refused until it goes stale. A live local driver's lease is
    left for the driver, and another run's lease is never touched."""
    from components import _runtime as rt

    root = str(tmp_path / "run")
    write_holder(root, run_id="kfp-run", heartbeat=time.time())      # live, created in another pod
    monkeypatch.setenv("DNA_RUN_ID", "other-run")
    rt.end_run(root)
    assert read_holder(root).run_id == "kfp-run"
    monkeypatch.setenv("DNA_RUN_ID", "kfp-run")
    rt.hold_root(root)                                               # the summary task joins ...
    rt.end_run(root)                                                 # ... and ends the run
    assert read_holder(root) is None
    Lease(root, "next-run", log=quiet([])).acquire().release()       # free for the next run

    with Lease(root, "local-run", log=quiet([])):                    # a live driver in this process
        monkeypatch.setenv("DNA_RUN_ID", "local-run")
        rt.end_run(root)
        assert read_holder(root).run_id == "local-run"
    assert read_holder(root) is None
