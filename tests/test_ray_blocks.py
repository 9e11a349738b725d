"""Block fan-out on Ray (components/fanout/): concurrency, fault resume, rating, Jobs API, and
a quiet terminal.

One local Ray session for the module (start-up is seconds, every TorchTrainer.fit ~20 s on two
cores), so the fits are few: one training fan-out (shared by the concurrency, terminal and rating
tests; run as its own process connected to the module's Ray, as a local run's supernet task is),
one with an injected fault. The Jobs API path runs against a fake JobSubmissionClient.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys

import pytest

from components.fanout import fan_out_blocks, jobs
from components.fanout.cli import load_spec
from components.fanout.fault import FAULT_ENV, fault_marker
from components.fanout.local_ray import REPO_ROOT, init_local_ray
from components.fanout.quiet import VERBOSE_ENV
from components.fanout.spec import FanOut, FanOutError, data_parallel_supported
from components.fanout.worker import POINTER_FILE
from dna import storage
from dna.errors import DnaError
from dna.generation import RunConfig
from dna.layout import generation
from dna.teacher import TeacherConfig
from dna.train.block import checkpoint_uri
from tests.helpers import tiny_data, tiny_teacher


def _cfg(root, epochs: int) -> RunConfig:
    return RunConfig(root=str(root), space="mbconv-tiny", data=tiny_data(), block_epochs=epochs,
                     block_max_steps=2, calib_batches=1, rate_max_batches=1)


@pytest.fixture(scope="module")
def ray_session():
    import ray

    init_local_ray(num_cpus=2)
    yield
    ray.shutdown()


@pytest.fixture(scope="module")
def trained(ray_session, tmp_path_factory):
    """Blocks 0 and 1 trained (one epoch) by one concurrent fan-out, in a process of its own
    connected to the module's Ray (``python -m components.fanout``): its terminal output too."""
    import ray

    root = tmp_path_factory.mktemp("fanout")
    teacher = tiny_teacher(str(root))
    cfg = _cfg(root, epochs=1)
    spec = FanOut(task="train", run=cfg, generation=0, teacher=teacher, blocks=[0, 1], max_failures=1)
    env = {k: v for k, v in os.environ.items() if k not in (VERBOSE_ENV, FAULT_ENV)}
    env.update(RAY_ADDRESS=ray.get_runtime_context().gcs_address,
               PYTHONPATH=os.pathsep.join(p for p in (REPO_ROOT, env.get("PYTHONPATH")) if p))
    proc = subprocess.run([sys.executable, "-m", "components.fanout", "--config", json.dumps(spec.to_dict())],
                          cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=600)
    terminal = proc.stdout + proc.stderr
    assert proc.returncode == 0, terminal
    metrics = {int(k): v for k, v in storage.read_json(spec.result_uri)["blocks"].items()}
    return cfg, teacher, metrics, terminal


OWN_LINE = re.compile(r"^(\[gen \d+\] |\{\"name\": )")      # the fan-out's event lines, the CLI's JSON


def test_fan_out_terminal_is_the_projects_own(trained):
    *_, terminal = trained
    lines = [ln for ln in terminal.splitlines() if ln.strip()]
    own = [ln for ln in lines if OWN_LINE.match(ln)]
    assert "Traceback" not in terminal and "/tmp/ray" not in terminal, terminal
    assert len(own) >= 0.9 * len(lines), terminal
    for k in (0, 1):
        for event in ("started", "epoch 1/1, loss ", "finished in "):
            assert any(ln.startswith(f"[gen 0] train block {k}: {event}") for ln in own), terminal
    assert any("Ray Tune results: " in ln and ln.endswith("(tensorboard --logdir there)") for ln in own)


def _overlap(a: tuple[float, float], b: tuple[float, float]) -> bool:
    return max(a[0], b[0]) < min(a[1], b[1])


def test_fan_out_trains_blocks_concurrently_into_run_storage(trained):
    cfg, teacher, metrics, _ = trained
    assert sorted(metrics) == [0, 1]
    gen = generation(cfg.root, 0)
    runs = {}
    for k, m in metrics.items():
        assert m["block"] == k and m["epochs"] == 1 and len(m["history"]) == 1
        ray_info = m["ray"]
        assert ray_info["attempts"] == 1 and ray_info["trained_epochs"] == [1]
        assert ray_info["world_size"] == 1
        run = (ray_info["run_started_at"], ray_info["run_finished_at"])
        # the worker's training lies inside its block's Ray Train run
        assert run[0] <= ray_info["started_at"] <= ray_info["finished_at"] <= run[1]
        runs[k] = run
        state = storage.load_torch(checkpoint_uri(gen.block(k)))      # dna's checkpoint, run storage
        assert state["epoch"] == 1 and state["metrics"]["loss"] == m["loss"]
        # the epoch was reported to Ray with a checkpoint that points at dna's, inside Ray's run folder
        assert ray_info["checkpoint"].startswith(gen.path("ray"))
        pointer = storage.read_json(storage.join(ray_info["checkpoint"], POINTER_FILE))
        assert pointer == {"uri": checkpoint_uri(gen.block(k)), "epoch": 1}
    # the two blocks' Ray Train runs (worker start-up + training) ran at the same time
    assert _overlap(runs[0], runs[1]), runs
    # Ray's own run state also sits in the run storage, under a unique name per fan-out
    names = storage.listdir(gen.path("ray"))
    assert any(re.search(r"dna-train-g0-[0-9a-f]{10}$", n.rstrip("/")) for n in names), names
    summary = storage.read_json(storage.join(gen.supernets, "fanout-train.json"))
    assert summary["task"] == "train" and sorted(summary["blocks"]) == ["0", "1"]
    # finished blocks are read back from storage: no Ray work, same metrics
    again = fan_out_blocks("train", cfg, 0, teacher, blocks=[0, 1])
    assert all(again[k]["cached"] and again[k]["loss"] == metrics[k]["loss"] for k in (0, 1))


def test_killed_block_resumes_from_checkpoint_other_block_untouched(ray_session, tmp_path, monkeypatch, capsys):
    teacher = tiny_teacher(str(tmp_path))
    cfg = _cfg(tmp_path, epochs=2)
    monkeypatch.setenv(FAULT_ENV, "1:1")           # block 1's worker dies after epoch 1
    metrics = fan_out_blocks("train", cfg, 0, teacher, blocks=[0, 1], max_failures=2)
    gen = generation(cfg.root, 0)

    marker = storage.read_json(fault_marker(gen.block(1), 1))     # the first attempt died ...
    assert marker["trained_epochs"] == [1] and marker["resumed_from_epoch"] == 0
    faulted = metrics[1]                                              # ... the second resumed
    assert faulted["ray"]["attempts"] == 2
    assert faulted["ray"]["resumed_from_epoch"] == 1 and faulted["ray"]["trained_epochs"] == [2]
    assert [h["epoch"] for h in faulted["history"]] == [1, 2] and faulted["epochs"] == 2

    other = metrics[0]                                                # trained once, start to end
    assert other["ray"]["attempts"] == 1
    assert other["ray"]["resumed_from_epoch"] == 0 and other["ray"]["trained_epochs"] == [1, 2]
    assert not storage.exists(fault_marker(gen.block(0), 1))
    for k in (0, 1):
        assert storage.load_torch(checkpoint_uri(gen.block(k)))["epoch"] == 2
    out = capsys.readouterr().out                                     # the resume is one event line
    assert "[gen 0] train block 1: resumed from its checkpoint of epoch 1\n" in out, out
    assert "Traceback" not in out


def test_rating_fan_out_writes_partitions(trained):
    from dna.rate.scores import read_scores

    cfg, teacher, *_ = trained
    out = fan_out_blocks("rate", cfg, 0, teacher, blocks=[0, 1])
    gen = generation(cfg.root, 0)
    for k in (0, 1):
        assert out[k]["blocks"] == [k] and out[k]["rows"] > 0
        assert storage.exists(storage.join(gen.scores, f"block={k}", storage.PART_FILE))
    table, meta = read_scores(gen.scores)
    assert sorted(set(table.column("block").to_pylist())) == [0, 1]
    assert table.num_rows == out[0]["rows"] + out[1]["rows"]
    assert fan_out_blocks("rate", cfg, 0, teacher, blocks=[0, 1])[1]["cached"]


def test_block_that_cannot_fit_local_ray_is_refused(ray_session, tmp_path):
    teacher = tiny_teacher(str(tmp_path))
    with pytest.raises(DnaError, match="needs 0 CPUs and 1 GPUs"):        # no GPU in this session
        fan_out_blocks("train", _cfg(tmp_path, epochs=1), 0, teacher, blocks=[0], use_gpu=True)


# ----- Ray Jobs API (fake client: no cluster) ---------------------------------------------------
class FakeJobClient:
    instances: list[FakeJobClient] = []

    def __init__(self, address, statuses=("PENDING", "RUNNING", "SUCCEEDED"), running=()):
        from ray.job_submission import JobStatus

        self.address = address
        self.statuses = [JobStatus(s) for s in statuses]
        self.running = list(running)
        self.submitted: list[dict] = []
        self.polled: list[str] = []
        self.stopped: list[str] = []
        FakeJobClient.instances.append(self)

    def list_jobs(self):
        return self.running

    def submit_job(self, **kw):
        self.submitted.append(kw)
        # what the job does on the cluster: the fan-out writes its metrics to the run storage
        spec = load_spec(shlex.split(kw["entrypoint"])[-1])
        storage.write_json({"name": spec.name, "task": spec.task, "generation": spec.generation,
                            "blocks": {str(k): {"block": k, "loss": 0.5 + k} for k in spec.blocks}},
                           spec.result_uri)
        return kw["submission_id"]

    def get_job_status(self, submission_id):
        self.polled.append(submission_id)
        return self.statuses.pop(0) if len(self.statuses) > 1 else self.statuses[0]

    def get_job_logs(self, submission_id):
        return "line 1\nline 2\nTraceback: boom\n"

    def stop_job(self, submission_id):
        self.stopped.append(submission_id)


@pytest.fixture
def fake_jobs(monkeypatch):
    import ray.job_submission

    FakeJobClient.instances = []
    monkeypatch.setattr(ray.job_submission, "JobSubmissionClient", FakeJobClient)
    monkeypatch.setattr(jobs, "JOB_POLL_S", 0.0)
    for k in ("RAY_ADDRESS", FAULT_ENV, VERBOSE_ENV, jobs.IN_JOB_ENV, *jobs.STORAGE_ENV):
        monkeypatch.delenv(k, raising=False)
    return FakeJobClient


def test_jobs_api_submission(fake_jobs, tmp_path, monkeypatch):
    monkeypatch.setenv("RAY_ADDRESS", "http://dna-ray-head-svc:8265")
    monkeypatch.setenv("DNA_S3_ENDPOINT", "http://minio:9000")
    monkeypatch.setenv("AWS_REGION", "eu-west-1")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "not-forwarded")
    monkeypatch.setenv(FAULT_ENV, "1:1")
    teacher = tiny_teacher(str(tmp_path))
    cfg = _cfg(tmp_path, epochs=2)

    out = fan_out_blocks("train", cfg, 0, teacher, blocks=[0, 1], workers_per_block=1,
                            use_gpu=True, max_concurrent=1, max_failures=3)

    (client,) = fake_jobs.instances
    assert client.address == "http://dna-ray-head-svc:8265"
    (sub,) = client.submitted
    sid = sub["submission_id"]
    assert re.fullmatch(r"dna-train-g0-[0-9a-f]{10}", sid)
    argv = shlex.split(sub["entrypoint"])
    assert argv[:4] == ["python", "-m", "components.fanout", "--config"] and len(argv) == 5
    payload = json.loads(argv[4])
    assert payload["task"] == "train" and payload["generation"] == 0 and payload["blocks"] == [0, 1]
    assert payload["name"] == sid and payload["fault"] == "1:1"
    assert payload["workers_per_block"] == 1 and payload["use_gpu"] is True
    assert payload["max_concurrent"] == 1 and payload["max_failures"] == 3
    assert RunConfig.from_dict(payload["run"]) == cfg
    assert TeacherConfig(**payload["teacher"]) == teacher
    assert sub["runtime_env"] == {"env_vars": {"DNA_S3_ENDPOINT": "http://minio:9000",
                                               "AWS_REGION": "eu-west-1", jobs.IN_JOB_ENV: "1",
                                               FAULT_ENV: "1:1"}}
    assert sub["metadata"] == {"dna_root": cfg.root, "dna_generation": "0", "dna_task": "train",
                               "dna_blocks": "0,1"}
    assert client.polled == [sid] * 3                                  # polled until SUCCEEDED
    assert out == {0: {"block": 0, "loss": 0.5}, 1: {"block": 1, "loss": 1.5}}   # from storage


def test_jobs_api_failure_and_attach(fake_jobs, tmp_path):
    from ray.job_submission import JobStatus

    teacher = tiny_teacher(str(tmp_path))
    cfg = _cfg(tmp_path, epochs=1)
    spec = FanOut(task="rate", run=cfg, generation=0, teacher=teacher, blocks=[1])

    failing = FakeJobClient("http://head:8265", statuses=("RUNNING", "FAILED"))
    with pytest.raises(FanOutError, match=r"ended FAILED(.|\n)*Traceback: boom"):
        jobs.submit_job(spec, "http://head:8265", client=failing, log=lambda s: None)

    # a live job of the same fan-out (a retried pipeline task): wait for it, submit nothing
    job = type("Job", (), {"submission_id": "dna-rate-g0-earlier", "status": JobStatus.RUNNING,
                           "metadata": jobs.job_metadata(spec)})()
    attach = FakeJobClient("http://head:8265", statuses=("RUNNING", "SUCCEEDED"), running=[job])
    storage.write_json({"name": "dna-rate-g0-earlier", "blocks": {"1": {"rows": 7}}}, spec.result_uri)
    assert jobs.submit_job(spec, "http://head:8265", client=attach, log=lambda s: None) == {1: {"rows": 7}}
    assert attach.submitted == [] and attach.polled == ["dna-rate-g0-earlier"] * 2


def test_bad_input_fails_before_ray(tmp_path, monkeypatch):
    teacher = tiny_teacher(str(tmp_path))
    cfg = _cfg(tmp_path, epochs=1)
    monkeypatch.delenv(FAULT_ENV, raising=False)
    with pytest.raises(DnaError, match="task="):
        fan_out_blocks("search", cfg, 0, teacher)
    with pytest.raises(DnaError, match="block"):
        fan_out_blocks("train", cfg, 0, teacher, blocks=[0, 99])
    with pytest.raises(DnaError, match="max_failures"):
        fan_out_blocks("train", cfg, 0, teacher, blocks=[0], max_failures=-1)
    if not data_parallel_supported():
        with pytest.raises(DnaError, match="workers_per_block=2"):
            fan_out_blocks("train", cfg, 0, teacher, blocks=[0], workers_per_block=2)
    monkeypatch.setenv(FAULT_ENV, "one:1")
    with pytest.raises(DnaError, match=FAULT_ENV):
        fan_out_blocks("train", cfg, 0, teacher, blocks=[0])
    spec = FanOut(task="train", run=cfg, generation=0, teacher=teacher, blocks=[0, 1], fault="0:2")
    assert load_spec(json.dumps(spec.to_dict())) == spec
    with pytest.raises(DnaError, match="--config"):
        load_spec("{not json")
