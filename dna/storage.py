"""One URI-based storage layer: every stage reads and writes through here.

A URI is a local path (absolute, relative, or ``file://...``) or ``s3://bucket/prefix/key``, so a
stage runs unchanged on a laptop and in a Kubernetes pipeline. Listing, directories and table
discovery sit on pyarrow filesystems (``LocalFileSystem``, ``S3FileSystem``); S3 object contents
go through boto3 (:mod:`dna.storage_s3`): pyarrow neither pins a version across its ranged reads
nor exposes object metadata. An endpoint's ``user:password@`` becomes the credentials.

S3 settings come from the standard AWS environment variables (``AWS_ACCESS_KEY_ID``,
``AWS_SECRET_ACCESS_KEY``, ``AWS_SESSION_TOKEN``, ``AWS_REGION``/``AWS_DEFAULT_REGION``) and the
endpoint from ``DNA_S3_ENDPOINT``, else ``AWS_ENDPOINT_URL_S3``, else ``AWS_ENDPOINT_URL`` (pyarrow
ignores the latter two, so the endpoint is passed explicitly). ``configure_s3`` overrides them for
the process. Settings are re-read on every call, filesystems are cached per settings.

Writers take the object first and the URI second (``write_json(obj, uri)``), like ``json.dump``,
``torch.save`` and ``pyarrow.parquet.write_table``. All writes are atomic: a half-written file is
never visible under its final name (see ``_atomic_output``). Every read returns exactly one
version of a file, also while a writer replaces it: locally by atomic rename, on S3 by whole-object
GETs checked against the length and SHA-256 written with the object (:mod:`dna.storage_s3`).
``sweep_stale`` removes what killed writers left (temp files, incomplete multipart uploads).

Bad input (missing/unreadable URI, unsupported scheme, malformed S3 URI, missing bucket) raises
``DnaError`` naming the URI and what went wrong; credentials inside URLs never appear in it
(:func:`redact`).
"""

from __future__ import annotations

import io
import json
import os
import re
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from typing import IO, Any
from urllib.parse import quote, unquote

import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from dna import storage_local, storage_s3
from dna.errors import DnaError
from dna.redact import redact

URI = str | os.PathLike

_SCHEME_RE = re.compile(r"^([A-Za-z][A-Za-z0-9+.\-]*)://")
_HIVE_NULL = "__HIVE_DEFAULT_PARTITION__"  # pyarrow's default null_fallback for hive partitions
PART_FILE = "part-0.parquet"


# --------------------------------------------------------------------------------------------
# S3 settings


@dataclass(frozen=True)
class S3Settings:
    """Where and as whom to reach S3; frozen so it can key the filesystem cache.

    ``endpoint`` is a URL (``http://minio:9000``) or ``host:port`` (https assumed); None means AWS.
    Credentials left None fall back to the AWS default chain (env, config files, IRSA, IMDS).
    """

    endpoint: str | None = None
    region: str = "us-east-1"
    access_key: str | None = None
    secret_key: str | None = field(default=None, repr=False)  # never in a repr or a message
    session_token: str | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        # ``http://user:password@host`` works with neither pyarrow nor boto3, and pyarrow echoes
        # the pieces in its errors: the endpoint keeps the host, the pair becomes the credentials
        # (unless given separately), and neither appears in a repr.
        endpoint, user, password = _split_userinfo(self.endpoint)
        if endpoint == self.endpoint:
            return
        object.__setattr__(self, "endpoint", endpoint)
        if user and password and not (self.access_key or self.secret_key):
            object.__setattr__(self, "access_key", user)
            object.__setattr__(self, "secret_key", password)

    @classmethod
    def from_env(cls) -> S3Settings:
        """Settings from the standard AWS variables plus DNA_S3_ENDPOINT (see module docstring)."""
        env = os.environ
        endpoint = (
            env.get("DNA_S3_ENDPOINT")
            or env.get("AWS_ENDPOINT_URL_S3")
            or env.get("AWS_ENDPOINT_URL")
            or None
        )
        return cls(
            endpoint=endpoint,
            region=env.get("AWS_REGION") or env.get("AWS_DEFAULT_REGION") or "us-east-1",
            access_key=env.get("AWS_ACCESS_KEY_ID") or None,
            secret_key=env.get("AWS_SECRET_ACCESS_KEY") or None,
            session_token=env.get("AWS_SESSION_TOKEN") or None,
        )

    def scheme_and_host(self) -> tuple[str, str | None]:
        """(``http``/``https``, endpoint without scheme) as pyarrow's S3FileSystem wants them."""
        if not self.endpoint:
            return "https", None
        m = _SCHEME_RE.match(self.endpoint)
        if m:
            scheme = m.group(1).lower()
            if scheme not in ("http", "https"):
                raise _err(
                    f"S3 endpoint {self.endpoint!r} has scheme {scheme!r}: expected http or https"
                )
            return scheme, self.endpoint[m.end() :].rstrip("/")
        return "https", self.endpoint.rstrip("/")

    def endpoint_url(self) -> str | None:
        """The endpoint as a full URL (what boto3 wants), or None for AWS."""
        scheme, host = self.scheme_and_host()
        return f"{scheme}://{host}" if host else None

    def describe(self) -> str:
        """The endpoint for error messages, credentials masked."""
        return redact(self.endpoint_url() or f"AWS S3 ({self.region})", self.secrets())

    def secrets(self) -> tuple[str | None, ...]:
        """The values :func:`redact` must mask besides URL credentials."""
        return (self.secret_key, self.session_token)


def _split_userinfo(endpoint: str | None) -> tuple[str | None, str | None, str | None]:
    """``(endpoint without user:password@, user, password)``, percent-decoded."""
    if not endpoint:
        return endpoint, None, None
    m = re.match(r"^(?P<scheme>[A-Za-z][A-Za-z0-9+.\-]*://)?(?P<info>[^/@]*)@(?P<rest>.*)$",
                 endpoint)
    if not m:
        return endpoint, None, None
    user, _, password = m["info"].partition(":")
    return (m["scheme"] or "") + m["rest"], unquote(user) or None, unquote(password) or None


_lock = threading.Lock()
_override: S3Settings | None = None
_s3_filesystems: dict[S3Settings, pafs.S3FileSystem] = {}
_s3_clients: dict[S3Settings, Any] = {}
_LOCAL = pafs.LocalFileSystem()


def configure_s3(settings: S3Settings | None) -> None:
    """Use these S3 settings for the whole process (None: back to the environment); drops caches."""
    global _override
    with _lock:
        _override = settings
        _s3_filesystems.clear()
        _s3_clients.clear()


def s3_settings() -> S3Settings:
    """The S3 settings in effect: the configure_s3 override, else read from the environment now."""
    return _override if _override is not None else S3Settings.from_env()


def _s3_filesystem(settings: S3Settings) -> pafs.S3FileSystem:
    with _lock:
        fs = _s3_filesystems.get(settings)
        if fs is None:
            scheme, host = settings.scheme_and_host()
            kwargs: dict[str, Any] = {"region": settings.region, "scheme": scheme}
            if host:
                kwargs["endpoint_override"] = host
            if settings.access_key and settings.secret_key:
                kwargs.update(
                    access_key=settings.access_key,
                    secret_key=settings.secret_key,
                    session_token=settings.session_token,
                )
            fs = _s3_filesystems[settings] = pafs.S3FileSystem(**kwargs)
        return fs


def _s3_client(settings: S3Settings) -> Any:
    """A boto3 S3 client with the same endpoint and credentials as the pyarrow filesystem."""
    with _lock:
        client = _s3_clients.get(settings)
        if client is None:
            import boto3
            from botocore.config import Config

            endpoint_url = settings.endpoint_url()
            # Path-style addressing: custom endpoints (MinIO, moto, Ceph) rarely serve bucket DNS.
            config = Config(s3={"addressing_style": "path"}) if endpoint_url else None
            session = boto3.session.Session(
                aws_access_key_id=settings.access_key if settings.secret_key else None,
                aws_secret_access_key=settings.secret_key if settings.access_key else None,
                aws_session_token=settings.session_token if settings.access_key else None,
                region_name=settings.region,
            )
            client = _s3_clients[settings] = session.client(
                "s3", endpoint_url=endpoint_url, config=config
            )
        return client


# --------------------------------------------------------------------------------------------
# URIs


def _parse(uri: URI) -> tuple[str, str]:
    """('local', absolute path) or ('s3', 'bucket/key'); raises DnaError for anything else."""
    if not isinstance(uri, (str, os.PathLike)):
        raise TypeError(f"expected a URI (str or path), got {type(uri).__name__}: {uri!r}")
    s = os.fspath(uri)
    if not s:
        raise _err("empty URI: expected a local path or s3://bucket/key")
    m = _SCHEME_RE.match(s)
    if not m:
        return "local", os.path.abspath(s)
    scheme, rest = m.group(1).lower(), s[m.end() :]
    if scheme == "file":
        if rest.startswith("localhost/"):
            rest = rest[len("localhost") :]
        if not rest:
            raise _err(f"malformed file URI {s!r}: expected file:///path")
        return "local", os.path.abspath(rest)
    if scheme == "s3":
        bucket, _, key = rest.partition("/")
        if not bucket:
            raise _err(f"malformed S3 URI {s!r}: expected s3://bucket/key (no bucket given)")
        key = "/".join(p for p in key.split("/") if p)  # pyarrow rejects empty path segments
        return "s3", f"{bucket}/{key}" if key else bucket
    raise _err(
        f"unsupported URI scheme {scheme!r} in {s!r}: expected a local path, file://... "
        "or s3://bucket/key"
    )


def filesystem(uri: URI) -> tuple[pafs.FileSystem, str]:
    """The pyarrow filesystem and in-filesystem path for a URI, for direct pyarrow use."""
    kind, path = _parse(uri)
    if kind == "local":
        return _LOCAL, path
    return _s3_filesystem(s3_settings()), path


def is_s3(uri: URI) -> bool:
    """Whether the URI names S3 (raises DnaError for unsupported or malformed URIs)."""
    return _parse(uri)[0] == "s3"


def local_path(uri: URI) -> str | None:
    """The absolute local path of a local URI (for libraries that need a real file), else None."""
    kind, path = _parse(uri)
    return path if kind == "local" else None


def join(uri: URI, *parts: str) -> str:
    """Append path parts to a URI of either kind, without double slashes."""
    base = os.fspath(uri)
    segs = [seg for p in parts for seg in os.fspath(p).split("/") if seg]
    if not segs:
        return base
    if not base:
        return "/".join(segs)
    m = _SCHEME_RE.match(base)
    head = base[: m.end()] if m else ""
    tail = base[len(head) :].rstrip("/")
    if head and not tail and not base[len(head) :]:  # e.g. "s3://": let _parse complain later
        return head + "/".join(segs)
    if not tail and base[len(head) :].startswith("/"):  # the root "/" or "file:///"
        return head + "/" + "/".join(segs)
    return head + tail + "/" + "/".join(segs)


def _err(message: str) -> DnaError:
    """The storage layer's error: ``message`` with URL credentials and the S3 secret masked.

    Raise it ``from None``: a chained pyarrow/botocore exception would print them unmasked.
    """
    return DnaError(redact(message, _current_secrets()))


def _current_secrets() -> tuple[str | None, ...]:
    return s3_settings().secrets()


def _describe_error(exc: BaseException) -> str:
    if isinstance(exc, FileNotFoundError):
        return "no such file or directory"
    if isinstance(exc, IsADirectoryError):
        return "is a directory"
    return str(exc).strip() or type(exc).__name__


def _where(uri: URI) -> str:
    """The URI plus, for S3, the endpoint: most S3 failures are a wrong endpoint or bucket."""
    s = os.fspath(uri)
    with suppress(DnaError):
        if _parse(uri)[0] == "s3":
            return f"{s} (endpoint {s3_settings().describe()})"
    return s


def _info(uri: URI) -> pafs.FileInfo:
    fs, path = filesystem(uri)
    try:
        return fs.get_file_info(path)
    except (OSError, pa.ArrowException) as e:
        raise _err(f"cannot access {_where(uri)}: {_describe_error(e)}") from None


# --------------------------------------------------------------------------------------------
# Queries and directory operations


def exists(uri: URI) -> bool:
    """Whether a file or directory (S3: object or prefix) exists at the URI."""
    return _info(uri).type != pafs.FileType.NotFound


def is_dir(uri: URI) -> bool:
    """Whether the URI is a directory (S3: a prefix with objects under it, or a bucket)."""
    return _info(uri).type == pafs.FileType.Directory


def check_readable(uri: URI) -> None:
    """Raise DnaError now if the URI is missing or unreachable, so a stage fails before any work."""
    if _info(uri).type == pafs.FileType.NotFound:
        raise _err(f"cannot read {_where(uri)}: no such file or directory")


def listdir(uri: URI) -> list[str]:
    """Full URIs of the direct children of a directory, sorted (DnaError if it does not exist)."""
    fs, path = filesystem(uri)
    try:
        infos = fs.get_file_info(pafs.FileSelector(path, recursive=False))
    except (OSError, pa.ArrowException) as e:
        raise _err(f"cannot list {_where(uri)}: {_describe_error(e)}") from None
    names = {info.base_name for info in infos if info.base_name}
    return [join(uri, name) for name in sorted(names)]


def makedirs(uri: URI) -> None:
    """Create a directory and its parents (S3: an empty marker object, so is_dir holds)."""
    fs, path = filesystem(uri)
    try:
        fs.create_dir(path, recursive=True)
    except (OSError, pa.ArrowException) as e:
        raise _err(f"cannot create directory {_where(uri)}: {_describe_error(e)}") from None


def delete(uri: URI) -> None:
    """Delete a file or a whole tree; a missing URI is fine (idempotent clean-up).

    Deleting a whole bucket is refused: buckets are infrastructure, not stage outputs.
    """
    kind, path = _parse(uri)
    if kind == "s3" and "/" not in path:
        raise _err(f"refusing to delete the whole bucket {os.fspath(uri)!r}")
    fs, path = filesystem(uri)
    info = _info(uri)
    try:
        if info.type == pafs.FileType.Directory:
            fs.delete_dir(path)
        elif info.type != pafs.FileType.NotFound:
            fs.delete_file(path)
    except FileNotFoundError:
        pass
    except (OSError, pa.ArrowException) as e:
        raise _err(f"cannot delete {_where(uri)}: {_describe_error(e)}") from None


# --------------------------------------------------------------------------------------------
# Bytes, text, JSON


@contextmanager
def _atomic_output(uri: URI) -> Iterator[IO[bytes]]:
    """A binary file to write; it appears under its final name only if the block succeeds.

    Local: a locked hidden temp file beside the target, fsynced, then renamed over it
    (:func:`dna.storage_local.atomic_file`); the old content stays until then.
    S3: buffered in memory and stored only on success, with its length and SHA-256, as one PUT
    (or, when large, a multipart upload aborted on failure: :func:`dna.storage_s3.put_bytes`).
    """
    kind, path = _parse(uri)
    if kind == "local":
        in_body = False  # the caller's own errors pass through unchanged
        try:
            with storage_local.atomic_file(path) as f:
                in_body = True
                yield f
                in_body = False
        except OSError as e:
            if in_body:
                raise
            raise _err(f"cannot write {_where(uri)}: {_describe_error(e)}") from None
        return
    buf = io.BytesIO()
    yield buf
    bucket, key = _bucket_key(uri)
    storage_s3.put_bytes(_s3_client(s3_settings()), bucket, key, buf.getbuffer(), _where(uri))


def write_bytes(data: bytes, uri: URI) -> None:
    """Write bytes atomically (parent directories are created)."""
    data = bytes(memoryview(data))
    with _atomic_output(uri) as f:
        f.write(data)


def read_bytes(uri: URI) -> bytes:
    """The whole content of a file, exactly one version of it, also while a writer replaces it
    (DnaError naming the URI if missing, unreadable, or not matching its written checksum)."""
    kind, path = _parse(uri)
    if kind == "s3":
        bucket, key = _bucket_key(uri)
        return storage_s3.get_bytes(_s3_client(s3_settings()), bucket, key, _where(uri))
    try:
        return storage_local.read_file(path)
    except OSError as e:
        raise _err(f"cannot read {_where(uri)}: {_describe_error(e)}") from None


def write_text(text: str, uri: URI) -> None:
    """Write UTF-8 text atomically."""
    write_bytes(text.encode("utf-8"), uri)


def read_text(uri: URI) -> str:
    """A file's content as UTF-8 text."""
    data = read_bytes(uri)
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise _err(f"cannot read {os.fspath(uri)} as UTF-8 text: {e}") from None


def write_json(obj: Any, uri: URI) -> None:
    """Write JSON (indent 2, keys in insertion order) atomically; serialised before touching the file."""
    write_text(json.dumps(obj, indent=2, sort_keys=False) + "\n", uri)


def read_json(uri: URI) -> Any:
    """Parse a JSON file (DnaError naming the URI if missing or not JSON)."""
    text = read_text(uri)
    try:
        return json.loads(text)
    except json.JSONDecodeError as e:
        raise _err(f"cannot read {os.fspath(uri)}: not valid JSON ({e})") from None


# --------------------------------------------------------------------------------------------
# Parquet tables and hive-partitioned datasets


def _with_metadata(table: pa.Table, metadata: dict[str, str] | None) -> pa.Table:
    if not metadata:
        return table
    for k, v in metadata.items():
        if not isinstance(k, str) or not isinstance(v, str):
            raise _err(
                f"table metadata must map str to str, got {k!r}: {v!r} "
                "(serialise values, e.g. with json.dumps)"
            )
    merged = dict(table.schema.metadata or {})
    merged.update({k.encode(): v.encode() for k, v in metadata.items()})
    return table.replace_schema_metadata(merged)


def write_table(table: pa.Table, uri: URI, metadata: dict[str, str] | None = None) -> None:
    """Write one Parquet file atomically; ``metadata`` is merged into the schema metadata."""
    table = _with_metadata(table, metadata)
    with _atomic_output(uri) as f:
        pq.write_table(table, f)


def read_table(uri: URI) -> pa.Table:
    """Read a Parquet file, or a directory dataset (hive partitions like ``block=0/``).

    Schema metadata is kept (for a directory, from its first file). Files starting with ``.``
    or ``_`` are skipped, so in-flight temp files of concurrent writers are never read.
    """
    fs, path = filesystem(uri)
    info = _info(uri)
    if info.type == pafs.FileType.NotFound:
        raise _err(f"cannot read table {_where(uri)}: no such file or directory")
    if is_s3(uri):  # pyarrow's ranged S3 reads are not pinned to one version: read files whole
        fs = storage_s3.whole_object_filesystem(fs, lambda p: read_bytes(f"s3://{p}"))
    try:
        if info.type == pafs.FileType.Directory:
            import pyarrow.dataset as ds  # here: it imports pandas (a second, single-file read needs neither)

            dataset = ds.dataset(path, filesystem=fs, format="parquet", partitioning="hive")
            return dataset.to_table()
        with fs.open_input_file(path) as f:
            return pq.ParquetFile(f).read()  # as pq.read_table, without its pyarrow.dataset (pandas) import
    except DnaError:
        raise
    except (OSError, pa.ArrowException) as e:
        raise _err(f"cannot read table {_where(uri)}: {_describe_error(e)}") from None


def _partition_segment(column: str, value: Any) -> str:
    text = _HIVE_NULL if value is None else str(value)
    return f"{column}={quote(text, safe='')}"  # pyarrow's hive reader URL-decodes segments


def write_dataset(
    table: pa.Table,
    uri: URI,
    partition_cols: list[str],
    metadata: dict[str, str] | None = None,
) -> list[str]:
    """Write a hive-partitioned Parquet dataset: one ``part-0.parquet`` per partition.

    Each partition file is written atomically and replaces that partition's previous files;
    other partitions are left alone, so workers can each write their own partition (e.g. one
    ``block=`` per worker) into a shared dataset. Partition columns are stored in the path only.
    Returns the URIs of the files written.
    """
    missing = [c for c in partition_cols if c not in table.column_names]
    if missing:
        raise _err(
            f"partition columns {missing} not in the table (columns: {table.column_names})"
        )
    table = _with_metadata(table, metadata)
    if not partition_cols:
        target = join(uri, PART_FILE)
        write_table(table, target)
        return [target]
    keys = list(zip(*(table.column(c).to_pylist() for c in partition_cols), strict=True))
    groups: dict[tuple, list[int]] = {}
    for i, key in enumerate(keys):
        groups.setdefault(key, []).append(i)
    data = table.drop_columns(partition_cols)
    written = []
    for key, rows in groups.items():
        directory = join(
            uri, *(_partition_segment(c, v) for c, v in zip(partition_cols, key, strict=True))
        )
        target = join(directory, PART_FILE)
        write_table(data.take(pa.array(rows, type=pa.int64())), target)
        for child in listdir(directory):  # stale files of this partition from earlier writers
            name = child.rsplit("/", 1)[-1]
            if name != PART_FILE and not name.startswith((".", "_")) and not is_dir(child):
                delete(child)
        written.append(target)
    return written


# --------------------------------------------------------------------------------------------
# Torch checkpoints


def save_torch(obj: Any, uri: URI) -> None:
    """``torch.save`` to a URI, atomically (a crash never leaves a truncated checkpoint)."""
    import torch

    with _atomic_output(uri) as f:
        torch.save(obj, f)


def load_torch(uri: URI, map_location: Any = "cpu", *, weights_only: bool = True) -> Any:
    """``torch.load`` from a URI via a bytes buffer; CPU by default so any machine can read it.

    ``weights_only=True`` (torch's safe default) allows tensors, containers and primitives;
    pass False only for trusted files holding other Python objects.
    """
    import torch

    data = read_bytes(uri)
    try:
        return torch.load(io.BytesIO(data), map_location=map_location, weights_only=weights_only)
    except Exception as e:
        raise _err(f"cannot load torch checkpoint {os.fspath(uri)}: {e}") from None


# --------------------------------------------------------------------------------------------
# Buckets and object metadata (boto3)


def _bucket_key(uri: URI) -> tuple[str, str]:
    _, path = _parse(uri)
    bucket, _, key = path.partition("/")
    return bucket, key


def ensure_bucket(uri: URI, create: bool = False) -> None:
    """Check that the bucket of an S3 URI exists (create it if ``create``); no-op for local.

    Run it before a pipeline starts: a missing bucket otherwise fails late, deep in a stage.
    """
    if _parse(uri)[0] != "s3":
        return
    from botocore.exceptions import BotoCoreError, ClientError

    settings = s3_settings()
    bucket, _ = _bucket_key(uri)
    client = _s3_client(settings)
    where = settings.describe()
    try:
        client.head_bucket(Bucket=bucket)
        return
    except ClientError as e:
        code = str(e.response.get("Error", {}).get("Code", ""))
        if code not in ("404", "NoSuchBucket", "NotFound"):
            raise _err(f"cannot access S3 bucket {bucket!r} at {where}: {e}") from None
    except BotoCoreError as e:
        raise _err(f"cannot reach S3 bucket {bucket!r} at {where}: {e}") from None
    if not create:
        raise _err(
            f"S3 bucket {bucket!r} does not exist at {where}: create it first (or pass create=True)"
        )
    kwargs: dict[str, Any] = {"Bucket": bucket}
    if settings.region != "us-east-1":
        kwargs["CreateBucketConfiguration"] = {"LocationConstraint": settings.region}
    try:
        client.create_bucket(**kwargs)
    except ClientError as e:
        code = str(e.response.get("Error", {}).get("Code", ""))
        if code != "BucketAlreadyOwnedByYou":
            raise _err(f"cannot create S3 bucket {bucket!r} at {where}: {e}") from None
    except BotoCoreError as e:
        raise _err(f"cannot create S3 bucket {bucket!r} at {where}: {e}") from None


def put_metadata(uri: URI, metadata: dict[str, str]) -> None:
    """Replace the user metadata of an S3 object (e.g. provenance tags for object browsers).

    The length and checksum written with the object are kept (reads verify them). Local files
    have no such metadata, and a sidecar file is deliberately not written: this is a no-op for
    local URIs, and ``get_metadata`` returns {} for them.
    """
    if _parse(uri)[0] != "s3":
        return
    bucket, key = _bucket_key(uri)
    client = _s3_client(s3_settings())
    storage_s3.replace_user_metadata(client, bucket, key, metadata, _where(uri))


def get_metadata(uri: URI) -> dict[str, str]:
    """The user metadata of an S3 object, without dna's own integrity keys; {} for local URIs."""
    if _parse(uri)[0] != "s3":
        return {}
    bucket, key = _bucket_key(uri)
    meta = storage_s3.head(_s3_client(s3_settings()), bucket, key, _where(uri)).get("Metadata")
    return {k: v for k, v in (meta or {}).items() if k not in storage_s3.INTEGRITY_KEYS}


# --------------------------------------------------------------------------------------------
# Leftovers of killed writers

STALE_UPLOAD_S = 3600.0  # a live writer's multipart upload of a big checkpoint ends well before


def sweep_stale(root_uri: URI, older_than_s: float | None = None) -> list[str]:
    """Remove what writers killed mid-write left under ``root_uri``; returns what was removed.

    Local: hidden temp files (``.<name>.<hex>.tmp``) that no live process holds (each writer
    locks its own until it is renamed into place; where the filesystem has no locks, those not
    modified for ``older_than_s``). S3: incomplete multipart uploads under the prefix initiated
    over ``older_than_s`` (default :data:`STALE_UPLOAD_S`) ago. Neither was ever visible as a file; both cost space (S3 bills the
    parts forever). Call it at a stage's start. A failure to sweep is a warning, not an error:
    the stage's own reads and writes do not depend on it.
    """
    if older_than_s is None:
        older_than_s = STALE_UPLOAD_S
    if not isinstance(older_than_s, (int, float)) or not older_than_s >= 0:
        raise _err(f"sweep_stale: older_than_s={older_than_s!r}: expected seconds >= 0")
    kind, path = _parse(root_uri)
    try:
        if kind == "local":
            return storage_local.sweep_temp_files(path, float(older_than_s))
        bucket, key = _bucket_key(root_uri)
        prefix = f"{key}/" if key else ""
        client = _s3_client(s3_settings())
        keys = storage_s3.abort_stale_uploads(
            client, bucket, prefix, float(older_than_s), _where(root_uri)
        )
        return [f"s3://{bucket}/{k} (incomplete upload)" for k in keys]
    except DnaError as e:
        print(f"warning: {e}", file=sys.stderr)
        return []


__all__ = [
    "PART_FILE",
    "S3Settings",
    "check_readable",
    "configure_s3",
    "delete",
    "ensure_bucket",
    "exists",
    "filesystem",
    "get_metadata",
    "is_dir",
    "is_s3",
    "join",
    "listdir",
    "load_torch",
    "local_path",
    "makedirs",
    "put_metadata",
    "read_bytes",
    "read_json",
    "read_table",
    "read_text",
    "redact",
    "s3_settings",
    "save_torch",
    "sweep_stale",
    "write_bytes",
    "write_dataset",
    "write_json",
    "write_table",
]
