"""dna.storage: round-trips on local disk and on a real S3 endpoint (moto server), atomicity, errors."""

from __future__ import annotations

import os

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch

from dna import storage
from dna.errors import DnaError
from tests.s3fixture import s3_bucket  # noqa: F401


@pytest.fixture(params=["local", "s3"])
def root(request, tmp_path):
    """A writable root URI of each kind."""
    if request.param == "local":
        return str(tmp_path / "root")
    return request.getfixturevalue("s3_bucket") + "/run"


def _table() -> pa.Table:
    return pa.table(
        {
            "block": pa.array([0, 0, 1, 1, 1], pa.int64()),
            "path": ["k3e3", "k5e6", "k3e3", "k7e3", "k7e6"],
            "loss": [0.5, 0.25, 1.0, 0.75, 0.125],
        }
    )


# ------------------------------------------------------------------------------ URIs


def test_join_without_double_slashes():
    assert storage.join("s3://b", "x", "y.json") == "s3://b/x/y.json"
    assert storage.join("s3://b/", "/x/", "y") == "s3://b/x/y"
    assert storage.join("s3://b/p", "a/b//c") == "s3://b/p/a/b/c"
    assert storage.join("/tmp/a/", "b") == "/tmp/a/b"
    assert storage.join("/", "b") == "/b"
    assert storage.join("file:///tmp", "b") == "file:///tmp/b"
    assert storage.join("file:///", "b") == "file:///b"
    assert storage.join("runs", "x") == "runs/x"
    assert storage.join("runs") == "runs"


def test_filesystem_and_local_path(tmp_path, monkeypatch):
    fs, path = storage.filesystem(str(tmp_path / "a.txt"))
    assert fs.type_name == "local" and path == str(tmp_path / "a.txt")
    assert storage.filesystem(f"file://{tmp_path}/a.txt")[1] == str(tmp_path / "a.txt")
    monkeypatch.chdir(tmp_path)
    assert storage.local_path("rel/x") == str(tmp_path / "rel" / "x")
    assert storage.local_path(tmp_path / "p") == str(tmp_path / "p")
    assert storage.local_path("s3://bucket/x") is None


@pytest.mark.parametrize("uri", ["gs://bucket/x", "http://host/x", "hdfs://nn/x"])
def test_unsupported_scheme(uri):
    with pytest.raises(DnaError, match="unsupported URI scheme") as e:
        storage.read_bytes(uri)
    assert uri in str(e.value)
    with pytest.raises(DnaError, match="unsupported"):
        storage.check_readable(uri)


@pytest.mark.parametrize("uri", ["s3://", "s3:///key", "s3:///"])
def test_malformed_s3_uri(uri):
    with pytest.raises(DnaError, match="no bucket"):
        storage.filesystem(uri)
    with pytest.raises(DnaError, match="no bucket"):
        storage.ensure_bucket(uri)


def test_s3_settings_from_env(monkeypatch):
    for name in (
        "DNA_S3_ENDPOINT",
        "AWS_ENDPOINT_URL_S3",
        "AWS_ENDPOINT_URL",
        "AWS_REGION",
        "AWS_DEFAULT_REGION",
        "AWS_ACCESS_KEY_ID",
        "AWS_SECRET_ACCESS_KEY",
        "AWS_SESSION_TOKEN",
    ):
        monkeypatch.delenv(name, raising=False)
    s = storage.S3Settings.from_env()
    assert s == storage.S3Settings(endpoint=None, region="us-east-1")
    assert s.scheme_and_host() == ("https", None)
    monkeypatch.setenv("AWS_ENDPOINT_URL", "https://generic:443")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "eu-west-1")
    assert storage.S3Settings.from_env().endpoint == "https://generic:443"
    assert storage.S3Settings.from_env().region == "eu-west-1"
    monkeypatch.setenv("AWS_ENDPOINT_URL_S3", "http://s3only:9000")
    monkeypatch.setenv("AWS_REGION", "eu-central-1")
    assert storage.S3Settings.from_env().endpoint == "http://s3only:9000"
    assert storage.S3Settings.from_env().region == "eu-central-1"
    monkeypatch.setenv("DNA_S3_ENDPOINT", "http://minio:9000/")
    s = storage.S3Settings.from_env()
    assert s.scheme_and_host() == ("http", "minio:9000")
    assert s.endpoint_url() == "http://minio:9000"
    assert storage.S3Settings(endpoint="minio:9000").scheme_and_host() == ("https", "minio:9000")


def test_configure_s3_overrides_env(monkeypatch):
    monkeypatch.setenv("DNA_S3_ENDPOINT", "http://from-env:1")
    explicit = storage.S3Settings(endpoint="http://explicit:2", region="us-west-2")
    try:
        storage.configure_s3(explicit)
        assert storage.s3_settings() == explicit
    finally:
        storage.configure_s3(None)
    assert storage.s3_settings().endpoint == "http://from-env:1"


# ------------------------------------------------------------------------------ round-trips


def test_bytes_text_json_round_trip(root):
    storage.write_bytes(b"\x00\x01abc", storage.join(root, "a", "b.bin"))
    assert storage.read_bytes(storage.join(root, "a", "b.bin")) == b"\x00\x01abc"
    storage.write_text("héllo\n", storage.join(root, "t.txt"))
    assert storage.read_text(storage.join(root, "t.txt")) == "héllo\n"
    obj = {"z": 1, "a": [1.5, "x", None], "nested": {"k": True}}
    storage.write_json(obj, storage.join(root, "o.json"))
    assert storage.read_json(storage.join(root, "o.json")) == obj
    text = storage.read_text(storage.join(root, "o.json"))
    assert text.index('"z"') < text.index('"a"') and '\n  "z": 1' in text  # indent 2, unsorted
    storage.write_json({"v": 2}, storage.join(root, "o.json"))  # overwrite
    assert storage.read_json(storage.join(root, "o.json")) == {"v": 2}


def test_directory_operations(root):
    assert not storage.exists(root)
    storage.write_text("1", storage.join(root, "d", "x.txt"))
    storage.write_text("2", storage.join(root, "d", "sub", "y.txt"))
    storage.makedirs(storage.join(root, "empty"))
    assert storage.exists(root) and storage.is_dir(root)
    assert storage.is_dir(storage.join(root, "empty"))
    assert storage.exists(storage.join(root, "d", "x.txt"))
    assert not storage.is_dir(storage.join(root, "d", "x.txt"))
    assert storage.listdir(storage.join(root, "d")) == [
        storage.join(root, "d", "sub"),
        storage.join(root, "d", "x.txt"),
    ]
    assert storage.listdir(root) == [storage.join(root, "d"), storage.join(root, "empty")]
    storage.check_readable(storage.join(root, "d"))
    storage.check_readable(storage.join(root, "d", "x.txt"))
    storage.delete(storage.join(root, "d", "x.txt"))
    assert not storage.exists(storage.join(root, "d", "x.txt"))
    storage.delete(storage.join(root, "d"))
    assert not storage.exists(storage.join(root, "d"))
    storage.delete(storage.join(root, "d"))  # missing: fine
    with pytest.raises(DnaError, match="cannot list"):
        storage.listdir(storage.join(root, "nope"))


def test_table_round_trip_with_metadata(root):
    uri = storage.join(root, "t.parquet")
    t = _table().replace_schema_metadata({"keep": "me"})
    storage.write_table(t, uri, metadata={"space": "mbconv", "teacher": "b7"})
    back = storage.read_table(uri)
    assert back.drop_columns([]).equals(t.replace_schema_metadata(None).cast(back.schema))
    meta = back.schema.metadata
    assert meta[b"space"] == b"mbconv" and meta[b"teacher"] == b"b7" and meta[b"keep"] == b"me"
    with pytest.raises(DnaError, match="str to str"):
        storage.write_table(t, uri, metadata={"n": 3})


def test_hive_dataset_write_read(root):
    uri = storage.join(root, "scores")
    written = storage.write_dataset(_table(), uri, ["block"], metadata={"space": "mbconv"})
    assert written == [
        storage.join(uri, "block=0", "part-0.parquet"),
        storage.join(uri, "block=1", "part-0.parquet"),
    ]
    assert storage.listdir(uri) == [storage.join(uri, "block=0"), storage.join(uri, "block=1")]
    back = storage.read_table(uri).sort_by([("block", "ascending"), ("path", "ascending")])
    assert back.schema.metadata[b"space"] == b"mbconv"
    assert back.column("block").to_pylist() == [0, 0, 1, 1, 1]
    assert back.column("path").to_pylist() == ["k3e3", "k5e6", "k3e3", "k7e3", "k7e6"]
    # A single partition file reads as itself (no partition column), metadata kept.
    part = storage.read_table(storage.join(uri, "block=1", "part-0.parquet"))
    assert part.column_names == ["path", "loss"] and part.num_rows == 3
    assert part.schema.metadata[b"space"] == b"mbconv"
    # Rewriting one partition replaces its files (stale ones too) and leaves the others alone.
    storage.write_bytes(b"stale", storage.join(uri, "block=1", "part-1.parquet"))
    new = pa.table({"block": pa.array([1], pa.int64()), "path": ["k3e6"], "loss": [9.0]})
    storage.write_dataset(new, uri, ["block"])
    assert storage.listdir(storage.join(uri, "block=1")) == [
        storage.join(uri, "block=1", "part-0.parquet")
    ]
    back = storage.read_table(uri).sort_by([("block", "ascending"), ("path", "ascending")])
    assert back.column("path").to_pylist() == ["k3e3", "k5e6", "k3e6"]


def test_dataset_string_and_null_partitions(tmp_path):
    t = pa.table({"split": ["a b/c", None, "a b/c"], "x": [1, 2, 3]})
    uri = str(tmp_path / "ds")
    storage.write_dataset(t, uri, ["split"])
    back = storage.read_table(uri).sort_by("x")
    assert back.column("split").to_pylist() == ["a b/c", None, "a b/c"]
    with pytest.raises(DnaError, match="partition columns"):
        storage.write_dataset(t, uri, ["nope"])


def test_torch_round_trip(root):
    uri = storage.join(root, "ckpt", "model.pt")
    state = {"w": torch.arange(6.0).reshape(2, 3), "step": 7, "name": "k3e3"}
    storage.save_torch(state, uri)
    back = storage.load_torch(uri)
    assert back["step"] == 7 and back["name"] == "k3e3" and torch.equal(back["w"], state["w"])
    assert back["w"].device.type == "cpu"


# ------------------------------------------------------------------------------ atomicity


def _half_write(table, where, **kw):
    """Stands in for pq.write_table: some bytes reach the output, then the write fails."""
    where.write(b"PAR1 half-written")
    raise OSError("disk full")


class _Unserialisable:
    def __reduce__(self):
        raise RuntimeError("boom while serialising")


def test_failed_writes_leave_old_content_local(tmp_path):
    uri = str(tmp_path / "d" / "state.pt")
    storage.save_torch({"v": 1}, uri)
    with pytest.raises(RuntimeError, match="boom"):
        storage.save_torch({"v": 2, "bad": _Unserialisable()}, uri)
    assert storage.load_torch(uri) == {"v": 1}
    assert os.listdir(tmp_path / "d") == ["state.pt"]  # no temp file left behind

    table_uri = str(tmp_path / "d" / "t.parquet")
    storage.write_table(_table(), table_uri)

    # A failure mid-write (after some bytes reached the temp file) must not touch the target.
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(pq, "write_table", _half_write)
        with pytest.raises(OSError, match="disk full"):
            storage.write_table(_table().slice(0, 1), table_uri)
    assert storage.read_table(table_uri).num_rows == 5
    assert sorted(os.listdir(tmp_path / "d")) == ["state.pt", "t.parquet"]

    new_uri = str(tmp_path / "d" / "never.json")
    with pytest.raises(TypeError):
        storage.write_json({"x": object()}, new_uri)
    assert not storage.exists(new_uri)


def test_failed_writes_leave_old_content_s3(s3_bucket):  # noqa: F811
    uri = storage.join(s3_bucket, "run", "t.parquet")
    storage.write_table(_table(), uri)
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(pq, "write_table", _half_write)
        with pytest.raises(OSError, match="disk full"):
            storage.write_table(_table().slice(0, 1), uri)
        with pytest.raises(OSError, match="disk full"):
            storage.write_table(_table(), storage.join(s3_bucket, "run", "new.parquet"))
    assert storage.read_table(uri).num_rows == 5
    assert storage.listdir(storage.join(s3_bucket, "run")) == [uri]

    ckpt = storage.join(s3_bucket, "run", "c.pt")
    with pytest.raises(RuntimeError, match="boom"):
        storage.save_torch({"bad": _Unserialisable()}, ckpt)
    assert not storage.exists(ckpt)


# ------------------------------------------------------------------------------ errors


def test_missing_uri_errors_name_the_uri(root):
    missing = storage.join(root, "nope", "x.json")
    for fn in (
        storage.read_bytes,
        storage.read_text,
        storage.read_json,
        storage.read_table,
        storage.load_torch,
        storage.check_readable,
    ):
        with pytest.raises(DnaError) as e:
            fn(missing)
        assert missing in str(e.value), fn.__name__


def test_bad_content_errors(tmp_path):
    uri = str(tmp_path / "bad.json")
    storage.write_text("{not json", uri)
    with pytest.raises(DnaError, match="not valid JSON") as e:
        storage.read_json(uri)
    assert uri in str(e.value)
    with pytest.raises(DnaError, match="bad.json"):
        storage.read_table(uri)
    with pytest.raises(DnaError, match="bad.json"):
        storage.load_torch(uri)


def test_ensure_bucket(s3_bucket, tmp_path):  # noqa: F811
    storage.ensure_bucket(s3_bucket)
    storage.ensure_bucket(storage.join(s3_bucket, "some", "prefix"))
    storage.ensure_bucket(str(tmp_path))  # local: no-op
    endpoint = os.environ["DNA_S3_ENDPOINT"]
    with pytest.raises(DnaError) as e:
        storage.ensure_bucket("s3://dna-no-such-bucket/x")
    msg = str(e.value)
    assert "dna-no-such-bucket" in msg and endpoint in msg and "does not exist" in msg
    with pytest.raises(DnaError, match="dna-no-such-bucket"):
        storage.check_readable("s3://dna-no-such-bucket/x")
    storage.ensure_bucket("s3://dna-created-bucket/x", create=True)
    storage.ensure_bucket("s3://dna-created-bucket")
    storage.write_text("ok", "s3://dna-created-bucket/x/y.txt")
    assert storage.read_text("s3://dna-created-bucket/x/y.txt") == "ok"


def test_refuses_to_delete_bucket(s3_bucket):  # noqa: F811
    with pytest.raises(DnaError, match="refusing"):
        storage.delete(s3_bucket)


def test_object_metadata(s3_bucket, tmp_path):  # noqa: F811
    uri = storage.join(s3_bucket, "m.json")
    storage.write_json({"a": 1}, uri)
    storage.put_metadata(uri, {"stage": "rate", "generation": "2"})
    assert storage.get_metadata(uri) == {"stage": "rate", "generation": "2"}
    assert storage.read_json(uri) == {"a": 1}
    with pytest.raises(DnaError, match="nope.json"):
        storage.get_metadata(storage.join(s3_bucket, "nope.json"))
    local = str(tmp_path / "m.json")
    storage.write_json({}, local)
    storage.put_metadata(local, {"stage": "rate"})  # ignored for local files
    assert storage.get_metadata(local) == {}
    assert os.listdir(tmp_path) == ["m.json"]
