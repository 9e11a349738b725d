"""The fan-out as a Ray Job (a KubeRay head's dashboard address): submit, or attach to a live job
of the same fan-out, follow its logs, and read the per-block metrics back from the run storage.
Only non-secret storage settings travel in the job's ``runtime_env``."""

from __future__ import annotations

import dataclasses
import json
import os
import shlex
import time
from collections.abc import Callable
from typing import Any

from components.fanout.fault import FAULT_ENV
from components.fanout.quiet import VERBOSE_ENV, is_verbose
from components.fanout.spec import FanOut, FanOutError
from dna import storage

IN_JOB_ENV = "DNA_RAY_IN_JOB"          # set in the submitted job: never submit again from there
# Storage settings forwarded to a submitted job (never credentials: the Ray pods have their own).
STORAGE_ENV = ("DNA_S3_ENDPOINT", "AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL", "AWS_REGION",
               "AWS_DEFAULT_REGION")
TERMINAL = ("SUCCEEDED", "FAILED", "STOPPED")
JOB_POLL_S = 5.0                        # seconds between job status polls


def job_entrypoint(spec: FanOut) -> str:
    return f"python -m components.fanout --config {shlex.quote(json.dumps(spec.to_dict()))}"


def job_runtime_env(spec: FanOut) -> dict:
    env = {k: os.environ[k] for k in STORAGE_ENV if os.environ.get(k)}
    env[IN_JOB_ENV] = "1"
    if spec.fault:
        env[FAULT_ENV] = spec.fault
    if is_verbose():                    # --verbose: the job's fan-out shows Ray's own output too
        env[VERBOSE_ENV] = "1"
    return {"env_vars": env}


def job_metadata(spec: FanOut) -> dict[str, str]:
    return {"dna_root": spec.run.root, "dna_generation": str(spec.generation), "dna_task": spec.task,
            "dna_blocks": ",".join(map(str, spec.blocks))}


def _status(client, submission_id: str) -> str:
    s = client.get_job_status(submission_id)
    return str(getattr(s, "value", s))


def _find_running(client, spec: FanOut) -> str | None:
    """A live job of the same fan-out (a retried pipeline task): attach to it, don't duplicate."""
    meta = job_metadata(spec)
    try:
        jobs = client.list_jobs()
    except Exception:                           # listing is an optimisation only
        return None
    for job in jobs:
        status = str(getattr(job.status, "value", job.status))
        if status not in TERMINAL and (job.metadata or {}) == meta and job.submission_id:
            return job.submission_id
    return None


def submit_job(spec: FanOut, address: str, poll_s: float | None = None, log: Callable[[str], Any] = print,
               client=None) -> dict[int, dict]:
    """Run the fan-out as a Ray Job on the cluster at ``address`` and read its metrics back."""
    if client is None:
        from ray.job_submission import JobSubmissionClient

        client = JobSubmissionClient(address)
    submission_id = _find_running(client, spec)
    if submission_id is not None:
        log(f"[{spec.name}] attaching to the running job {submission_id} of the same fan-out")
        spec = dataclasses.replace(spec, name=submission_id)
    else:
        submission_id = client.submit_job(entrypoint=job_entrypoint(spec), runtime_env=job_runtime_env(spec),
                                          submission_id=spec.name, metadata=job_metadata(spec))
        log(f"[{spec.name}] submitted Ray job {submission_id} to {address}")
    shown = 0
    try:
        while True:
            status = _status(client, submission_id)
            logs = _logs(client, submission_id)
            if len(logs) > shown:
                log(logs[shown:].rstrip("\n"))
                shown = len(logs)
            if status in TERMINAL:
                break
            time.sleep(JOB_POLL_S if poll_s is None else poll_s)
    except KeyboardInterrupt:
        client.stop_job(submission_id)
        raise
    if status != "SUCCEEDED":
        tail = "\n".join(_logs(client, submission_id).splitlines()[-60:])
        raise FanOutError(f"Ray job {submission_id} ({spec.task}, generation {spec.generation}) "
                          f"ended {status}; last log lines:\n{tail}")
    if not storage.exists(spec.result_uri):
        raise FanOutError(f"Ray job {submission_id} succeeded but wrote no {spec.result_uri}")
    result = storage.read_json(spec.result_uri)
    if result.get("name") != submission_id:
        raise FanOutError(f"{spec.result_uri} belongs to fan-out {result.get('name')!r}, "
                          f"not to job {submission_id!r}")
    blocks = {int(k): v for k, v in result["blocks"].items()}
    return {k: blocks[k] for k in spec.blocks}


def _logs(client, submission_id: str) -> str:
    try:
        return client.get_job_logs(submission_id) or ""
    except Exception:
        return ""
