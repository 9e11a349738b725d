"""Consistent storage: one version per read, no orphaned uploads or temp files, no leaked secrets."""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time

import boto3
import pyarrow as pa
import pytest
from botocore.exceptions import ResponseStreamingError

from dna import storage, storage_local, storage_s3
from dna.errors import DnaError
from dna.redact import redact
from tests.s3fixture import moto_endpoint, s3_bucket  # noqa: F401

MB = 1024 * 1024
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _client():
    return boto3.client("s3", endpoint_url=moto_endpoint(), region_name="us-east-1",
                        aws_access_key_id="testing", aws_secret_access_key="testing")


def _uploads(bucket_uri: str) -> list[dict]:
    bucket = bucket_uri.removeprefix("s3://")
    return _client().list_multipart_uploads(Bucket=bucket).get("Uploads", [])


def _versions(size: int) -> tuple[bytes, bytes]:
    """Two versions of one length whose halves differ, so a torn read is neither."""
    return bytes([1]) * size, bytes([2]) * size


@pytest.fixture(params=["local", "s3"])
def root(request, tmp_path):
    if request.param == "local":
        return str(tmp_path / "root")
    return storage.join(request.getfixturevalue("s3_bucket"), "root")


# ----- one version per read -----------------------------------------------------------------
def test_concurrent_replace_never_yields_a_mixed_read(root):
    uri = storage.join(root, "ckpt.pt")
    versions = _versions(3 * MB)
    storage.write_bytes(versions[0], uri)
    stop = threading.Event()
    writes = [0]

    def writer():
        while not stop.is_set():
            writes[0] += 1
            storage.write_bytes(versions[writes[0] % 2], uri)

    t = threading.Thread(target=writer)
    t.start()
    seen, reads, deadline = set(), 0, time.time() + 2.0
    try:
        while time.time() < deadline and (reads < 8 or len(seen) < 2):
            data = storage.read_bytes(uri)
            assert data in versions, f"read {reads}: a mixture of versions ({len(data)} bytes)"
            seen.add(data[0])
            reads += 1
    finally:
        stop.set()
        t.join()
    assert len(seen) == 2 and reads >= 8  # both versions came back: reads raced replaces


def test_concurrent_replace_of_a_table_reads_one_version(s3_bucket):  # noqa: F811
    uri = storage.join(s3_bucket, "scores", "block=0", storage.PART_FILE)
    tables = [pa.table({"loss": pa.array([float(v)] * 200_000)}) for v in (1, 2)]
    storage.write_table(tables[0], uri)
    stop = threading.Event()

    def writer():
        i = 0
        while not stop.is_set():
            i += 1
            storage.write_table(tables[i % 2], uri)

    t = threading.Thread(target=writer)
    t.start()
    try:
        for _ in range(6):
            back = storage.read_table(storage.join(s3_bucket, "scores"))
            assert len(set(back.column("loss").to_pylist())) == 1
            assert back.num_rows == 200_000 and back.column("block").to_pylist()[0] == 0
    finally:
        stop.set()
        t.join()


def test_broken_stream_resumes_pinned_to_the_etag_and_restarts_on_replace():
    data = b"a" * 1000

    class Body:
        def __init__(self, payload: bytes, fail_after: int | None):
            self.payload, self.pos, self.fail_after = payload, 0, fail_after

        def read(self, n: int) -> bytes:
            if self.fail_after is not None and self.pos >= self.fail_after:
                raise ResponseStreamingError(error="connection reset")
            chunk = self.payload[self.pos:self.pos + min(n, 300)]
            self.pos += len(chunk)
            return chunk

    class Client:
        def __init__(self, replaced: bool):
            self.calls, self.replaced = [], replaced

        def get_object(self, **kw):
            self.calls.append(kw)
            if "Range" not in kw:
                body = Body(data, 600 if len(self.calls) == 1 else None)
                return {"Body": body, "ContentLength": len(data), "ETag": '"e1"',
                        "Metadata": storage_s3.integrity_metadata(data)}
            if self.replaced:
                from botocore.exceptions import ClientError
                raise ClientError({"Error": {"Code": "PreconditionFailed"}}, "GetObject")
            start = int(kw["Range"].removeprefix("bytes=").rstrip("-"))
            return {"Body": Body(data[start:], None), "ContentLength": len(data) - start}

    resumed = Client(replaced=False)
    assert storage_s3.get_bytes(resumed, "b", "k", "s3://b/k") == data
    assert resumed.calls[1] == {"Bucket": "b", "Key": "k", "Range": "bytes=600-", "IfMatch": '"e1"'}
    restarted = Client(replaced=True)
    assert storage_s3.get_bytes(restarted, "b", "k", "s3://b/k") == data
    assert [("Range" in c) for c in restarted.calls] == [False, True, False]


def test_checksum_and_length_mismatches_are_detected(s3_bucket, monkeypatch):  # noqa: F811
    monkeypatch.setattr(storage_s3, "_RETRY_SLEEP_S", 0.0)
    uri = storage.join(s3_bucket, "m.json")
    storage.write_json({"a": 1}, uri)
    bucket, key = s3_bucket.removeprefix("s3://"), "m.json"
    head = _client().head_object(Bucket=bucket, Key=key)
    assert head["Metadata"][storage_s3.SHA_KEY] == hashlib.sha256(storage.read_bytes(uri)).hexdigest()
    # Same length, other bytes, the old checksum: what a torn or damaged object looks like.
    tampered = storage.read_bytes(uri).replace(b"1", b"2")
    _client().put_object(Bucket=bucket, Key=key, Body=tampered, Metadata=head["Metadata"])
    with pytest.raises(DnaError, match=r"m\.json.*SHA-256.*after 4 attempts"):
        storage.read_bytes(uri)
    meta = {**head["Metadata"], storage_s3.LENGTH_KEY: "99"}
    _client().put_object(Bucket=bucket, Key=key, Body=tampered, Metadata=meta)
    with pytest.raises(DnaError, match=f"got {len(tampered)} bytes, the object was written with 99"):
        storage.read_json(uri)
    # Objects from other tools carry no checksum: read as they are.
    _client().put_object(Bucket=bucket, Key=key, Body=b'{"b": 3}')
    assert storage.read_json(uri) == {"b": 3}


def test_user_metadata_keeps_the_checksum(s3_bucket):  # noqa: F811
    uri = storage.join(s3_bucket, "x.bin")
    storage.write_bytes(b"payload", uri)
    storage.put_metadata(uri, {"stage": "rate", storage_s3.SHA_KEY: "forged"})
    assert storage.get_metadata(uri) == {"stage": "rate"}
    assert storage.read_bytes(uri) == b"payload"  # still verified against the real checksum


# ----- single PUTs, aborted multipart uploads ---------------------------------------------------
def test_small_objects_are_single_puts_large_ones_multipart(s3_bucket, monkeypatch):  # noqa: F811
    monkeypatch.setattr(storage_s3, "SINGLE_PUT_MAX", 6 * MB)
    monkeypatch.setattr(storage_s3, "PART_SIZE", 5 * MB)
    bucket = s3_bucket.removeprefix("s3://")
    small, large = os.urandom(6 * MB), os.urandom(11 * MB)
    storage.write_bytes(small, storage.join(s3_bucket, "small"))
    storage.write_bytes(large, storage.join(s3_bucket, "large"))
    etags = {k: _client().head_object(Bucket=bucket, Key=k)["ETag"] for k in ("small", "large")}
    assert "-" not in etags["small"] and etags["large"].endswith('-3"')  # 1 PUT; 3 parts
    assert storage.read_bytes(storage.join(s3_bucket, "large")) == large
    assert _uploads(s3_bucket) == []


def test_failed_multipart_upload_is_aborted(s3_bucket, monkeypatch):  # noqa: F811
    monkeypatch.setattr(storage_s3, "SINGLE_PUT_MAX", 5 * MB)
    monkeypatch.setattr(storage_s3, "PART_SIZE", 5 * MB)
    client = storage._s3_client(storage.s3_settings())
    real = client.upload_part

    def upload_part(**kw):
        if kw["PartNumber"] == 2:
            raise ConnectionError("network gone")
        return real(**kw)

    monkeypatch.setattr(client, "upload_part", upload_part)
    uri = storage.join(s3_bucket, "big.pt")
    with pytest.raises(DnaError, match=r"cannot write s3://.*/big\.pt.*network gone"):
        storage.write_bytes(os.urandom(11 * MB), uri)
    assert not storage.exists(uri) and _uploads(s3_bucket) == []


_KILLED_WRITER = """
import sys, time
from dna import storage, storage_s3
storage_s3.SINGLE_PUT_MAX = storage_s3.PART_SIZE = 5 * 1024 * 1024
client = storage._s3_client(storage.s3_settings())
real = client.upload_part
def upload_part(**kw):
    if kw["PartNumber"] == 2:
        print("part 1 sent", flush=True)
        time.sleep(60)
    return real(**kw)
client.upload_part = upload_part
storage.write_bytes(b"x" * (11 * 1024 * 1024), sys.argv[1])
"""


def _sigkill_after_first_line(code: str, *args: str) -> None:
    env = {**os.environ, "PYTHONPATH": REPO}
    proc = subprocess.Popen([sys.executable, "-c", textwrap.dedent(code), *args], env=env,
                            stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip(), "the writer died before it got going"
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.kill()
        proc.wait(10)
    assert proc.returncode == -signal.SIGKILL


def test_sigkilled_multipart_writer_leaves_nothing_after_the_sweep(s3_bucket):  # noqa: F811
    root = storage.join(s3_bucket, "run")
    uri = storage.join(root, "gen0", "ckpt.pt")
    _sigkill_after_first_line(_KILLED_WRITER, uri)
    assert not storage.exists(uri)
    assert [u["Key"] for u in _uploads(s3_bucket)] == ["run/gen0/ckpt.pt"]
    # moto stamps every upload "initiated 2010-11-10": younger than 1e9 s, may be a live writer's.
    assert storage.sweep_stale(root, older_than_s=1e9) == []
    other = storage.join(s3_bucket, "other-run")
    assert storage.sweep_stale(other, older_than_s=0) == []  # not under that root
    assert storage.sweep_stale(root, older_than_s=0) == [f"{uri} (incomplete upload)"]
    assert _uploads(s3_bucket) == [] and not storage.exists(uri)


def test_stage_start_sweeps_the_run_root(s3_bucket, monkeypatch):  # noqa: F811
    from components import _runtime as rt
    from dna.generation import RunConfig

    monkeypatch.setattr(storage, "STALE_UPLOAD_S", 0.0)
    root = storage.join(s3_bucket, "run")
    bucket = s3_bucket.removeprefix("s3://")
    _client().create_multipart_upload(Bucket=bucket, Key="run/gen0/x.pt")
    cfg = RunConfig(root=root)
    assert rt.load_config(rt.config_json(cfg)).root == root
    assert _uploads(s3_bucket) == []


# ----- local temp files -----------------------------------------------------------------------
_KILLED_LOCAL_WRITER = """
import sys, time
from dna import storage_local
with storage_local.atomic_file(sys.argv[1]) as f:
    f.write(b'{"complete": true}' * 100_000)
    print("written", flush=True)
    time.sleep(60)
"""


def test_local_temp_files_of_killed_writers_are_swept(tmp_path, monkeypatch):
    monkeypatch.setattr(storage_local, "GRACE_S", 0.0)
    root = tmp_path / "run"
    target = root / "gen0" / "config.json"
    _sigkill_after_first_line(_KILLED_LOCAL_WRITER, str(target))
    (left,) = [n for n in os.listdir(target.parent) if n.endswith(".tmp")]
    assert not target.exists() and os.path.getsize(target.parent / left) > MB
    other = root / ".notes.tmp"  # not one of ours (no writer suffix): kept
    other.write_text("mine")
    with storage_local.atomic_file(str(root / "live.json")) as f:  # a live writer's: kept
        f.write(b"{}")
        removed = storage.sweep_stale(str(root))
        assert [n for n in os.listdir(root) if n.startswith(".live.json.")]
    assert removed == [str(target.parent / left)]
    assert sorted(os.listdir(root)) == [".notes.tmp", "gen0", "live.json"]
    assert os.listdir(target.parent) == []


def test_fresh_temp_files_are_left_for_their_writer(tmp_path):
    tmp = tmp_path / f".a.json.{'0' * 12}.tmp"
    tmp.write_text("{}")
    assert storage.sweep_stale(str(tmp_path)) == [] and tmp.exists()  # may not be locked yet
    old = time.time() - 10
    os.utime(tmp, (old, old))
    assert storage.sweep_stale(str(tmp_path)) == [str(tmp)] and not tmp.exists()
    assert storage.sweep_stale(str(tmp_path / "missing")) == []
    with pytest.raises(DnaError, match="older_than_s=-1"):
        storage.sweep_stale(str(tmp_path), older_than_s=-1)


# ----- secrets ------------------------------------------------------------------------------
@pytest.mark.parametrize("text, expected", [
    ("s3://AKIAX:s3cr3t@bucket/key", "s3://***@bucket/key"),
    ("cannot reach 'http://minio:pa55@host:9000/b'", "cannot reach 'http://***@host:9000/b'"),
    ("https://b.s3.amazonaws.com/k?X-Amz-Credential=AKIA%2F1&X-Amz-Signature=abc123&x=1",
     "https://b.s3.amazonaws.com/k?X-Amz-Credential=***&X-Amz-Signature=***&x=1"),
    ("s3://bucket/a@b and /tmp/x@y", "s3://bucket/a@b and /tmp/x@y"),
])
def test_redact(text, expected):
    assert redact(text) == expected


def test_credentials_in_the_endpoint_never_reach_a_message(monkeypatch, tmp_path, capsys):
    secret = "Sup3rSecretKeyValue"
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "1")
    monkeypatch.setenv("AWS_RETRY_MODE", "standard")
    settings = storage.S3Settings(endpoint="http://admin:pa55w0rd@127.0.0.1:9", access_key="AKIATEST",
                                  secret_key=secret)
    storage.configure_s3(settings)
    try:
        uri = "s3://bucket/run/x.json"
        calls = [lambda: storage.read_bytes(uri), lambda: storage.write_json({}, uri),
                 lambda: storage.exists(uri),
                 lambda: storage.ensure_bucket(uri), lambda: storage.get_metadata(uri),
                 lambda: storage.read_bytes("ftp://admin:pa55w0rd@127.0.0.1:9/x")]
        messages = []
        for call in calls:
            with pytest.raises(DnaError) as info:
                call()
            messages.append(str(info.value))
        storage.sweep_stale("s3://bucket/run")  # a warning, not an error
        messages.append(capsys.readouterr().err)
    finally:
        storage.configure_s3(None)
    assert secret not in repr(settings) and "pa55w0rd" not in repr(settings)
    for m in messages:
        assert "pa55w0rd" not in m and "admin" not in m and secret not in m, m
        assert "127.0.0.1:9" in m, m


def test_endpoint_userinfo_becomes_the_credentials():
    s = storage.S3Settings(endpoint="http://minio:s3cr%2Ft@minio.local:9000")
    assert (s.endpoint, s.access_key, s.secret_key) == ("http://minio.local:9000", "minio", "s3cr/t")
    given = storage.S3Settings(endpoint="minio:x@host:9000", access_key="ak", secret_key="sk")
    assert (given.endpoint, given.access_key, given.secret_key) == ("host:9000", "ak", "sk")
    assert storage.S3Settings(endpoint="https://host").endpoint == "https://host"


def test_commands_print_errors_and_urls_redacted(capsys):
    from dna.cli import main
    from pipelines.submit import run_url

    assert main(["search", "ftp://admin:pa55w0rd@host/scores"]) == 2
    err = capsys.readouterr().err
    assert "ftp://***@host/scores" in err and "pa55w0rd" not in err and "admin" not in err
    assert run_url("https://u:pa55w0rd@kfp.example.com/", "r1") == \
        "https://***@kfp.example.com/#/runs/details/r1"


def test_a_damaged_partition_fails_the_table_read_naming_it(s3_bucket, monkeypatch):  # noqa: F811
    monkeypatch.setattr(storage_s3, "_RETRY_SLEEP_S", 0.0)
    uri = storage.join(s3_bucket, "scores")
    storage.write_dataset(pa.table({"block": [0, 1], "loss": [1.0, 2.0]}), uri, ["block"])
    bucket, key = s3_bucket.removeprefix("s3://"), "scores/block=1/part-0.parquet"
    head = _client().head_object(Bucket=bucket, Key=key)
    body = _client().get_object(Bucket=bucket, Key=key)["Body"].read()
    _client().put_object(Bucket=bucket, Key=key, Body=body[:-1] + b"X", Metadata=head["Metadata"])
    with pytest.raises(DnaError, match=r"block=1/part-0\.parquet.*SHA-256"):
        storage.read_table(uri)
