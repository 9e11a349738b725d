"""S3 objects that are read and written whole: one version per read, no orphaned uploads.

pyarrow's S3 input streams read an object in ranged GETs without pinning a version, so a reader
racing a writer got the first half of one version and the second half of the next. Here a read
is one GET; if its body stream breaks, the rest is fetched with ranged GETs pinned to the first
response's ETag (``IfMatch``), and a replaced object restarts the read. Every object we write
carries its length and SHA-256 in user metadata (``x-amz-meta-dna-length``/``-dna-sha256``); a
read checks them (a concurrent replace is retried, a persistent mismatch is an error). Objects
up to :data:`SINGLE_PUT_MAX` go as one PUT (a killed writer leaves nothing); larger ones as a
multipart upload that is aborted on any failure, and :func:`abort_stale_uploads` removes the
uploads of writers killed before they could abort.

Functions take a boto3 client plus bucket and key, and ``where`` (the redacted URI with endpoint)
for messages; they raise :class:`dna.errors.DnaError` with botocore's message redacted.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable
from typing import Any

import pyarrow as pa
import pyarrow.fs as pafs

from dna.errors import DnaError
from dna.redact import redact

SHA_KEY = "dna-sha256"
LENGTH_KEY = "dna-length"
INTEGRITY_KEYS = (SHA_KEY, LENGTH_KEY)
SINGLE_PUT_MAX = 64 * 1024 * 1024  # above this, multipart (S3 allows single PUTs up to 5 GiB)
PART_SIZE = 16 * 1024 * 1024  # S3 minimum is 5 MiB (but the last part), maximum 10,000 parts
READ_ATTEMPTS = 4  # whole-object attempts: a concurrent replace may change the object between them
_RETRY_SLEEP_S = 0.05


def _client_errors() -> tuple[type[BaseException], ...]:
    from botocore.exceptions import BotoCoreError, ClientError

    return (ClientError, BotoCoreError)


def _code(exc: BaseException) -> str:
    response = getattr(exc, "response", None) or {}
    return str(response.get("Error", {}).get("Code", ""))


def error(action: str, where: str, exc: BaseException | str) -> DnaError:
    """``cannot <action> <where>: <reason>`` with every secret masked."""
    reason = exc if isinstance(exc, str) else (str(exc).strip() or type(exc).__name__)
    return DnaError(redact(f"cannot {action} {where}: {reason}"))


def integrity_metadata(data: bytes | memoryview) -> dict[str, str]:
    """The user metadata that lets a reader verify it got exactly the bytes written."""
    return {SHA_KEY: hashlib.sha256(data).hexdigest(), LENGTH_KEY: str(len(data))}


# --------------------------------------------------------------------------------------------
# Reads


def _read_body(client: Any, bucket: str, key: str) -> tuple[bytes, dict[str, Any]]:
    """One version's bytes and its GET response; a broken stream resumes pinned to the ETag.

    Raises ``_Replaced`` if the object changed while its rest was fetched.
    """
    resp = client.get_object(Bucket=bucket, Key=key)
    total = int(resp["ContentLength"])
    etag = resp.get("ETag")
    chunks: list[bytes] = []
    got = 0
    body = resp["Body"]
    resumes = 0
    while True:
        try:
            chunk = body.read(1 << 20)
            if not chunk:
                break
            chunks.append(chunk)
            got += len(chunk)
            continue
        except _stream_errors() as e:
            if got >= total or resumes >= READ_ATTEMPTS or not etag:
                raise
            resumes += 1
            try:
                part = client.get_object(
                    Bucket=bucket, Key=key, Range=f"bytes={got}-", IfMatch=etag
                )
            except _client_errors() as e2:
                if _code(e2) in ("PreconditionFailed", "412"):
                    raise _Replaced(f"replaced while reading (ETag {etag} gone)") from None
                raise e2 from e
            body = part["Body"]
    return b"".join(chunks), resp


class _Replaced(Exception):
    """The object was replaced in the middle of a read: start again."""


def _stream_errors() -> tuple[type[BaseException], ...]:
    from botocore.exceptions import IncompleteReadError, ReadTimeoutError, ResponseStreamingError
    from urllib3.exceptions import ProtocolError

    return (ResponseStreamingError, IncompleteReadError, ReadTimeoutError, ProtocolError,
            ConnectionError)


def _mismatch(data: bytes, resp: dict[str, Any]) -> str | None:
    """Why ``data`` is not the version ``resp`` describes, or None if it is."""
    total = int(resp["ContentLength"])
    if len(data) != total:
        return f"got {len(data)} bytes, the response announced {total}"
    meta = resp.get("Metadata") or {}
    length, sha = meta.get(LENGTH_KEY), meta.get(SHA_KEY)
    if length is not None and length != str(len(data)):
        return f"got {len(data)} bytes, the object was written with {length}"
    if sha is not None and sha != hashlib.sha256(data).hexdigest():
        return "its SHA-256 differs from the one written with it (x-amz-meta-dna-sha256)"
    return None


def get_bytes(client: Any, bucket: str, key: str, where: str) -> bytes:
    """The whole object, exactly one version of it, verified against its written checksum.

    Objects written by other tools carry no checksum: their length is still checked.
    """
    reason = "no attempt made"
    for attempt in range(READ_ATTEMPTS):
        if attempt:
            time.sleep(_RETRY_SLEEP_S * 2 ** (attempt - 1))
        try:
            data, resp = _read_body(client, bucket, key)
        except _Replaced as e:
            reason = str(e)
            continue
        except _stream_errors() as e:  # before client errors: some are BotoCoreErrors too
            reason = f"connection broke ({type(e).__name__}: {e})"
            continue
        except _client_errors() as e:
            if _code(e) in ("NoSuchKey", "404", "NotFound"):
                raise error("read", where, "no such file or directory") from None
            raise error("read", where, e) from None
        reason = _mismatch(data, resp)
        if reason is None:
            return data
    raise error(
        "read",
        where,
        f"{reason} (after {READ_ATTEMPTS} attempts): the object is damaged or was changed "
        "outside dna; rewrite it",
    )


class WholeObjectReads(pafs.FileSystemHandler):
    """A pyarrow filesystem handler that lists through ``fs`` but opens every file with
    ``read(path)`` into memory: pyarrow's dataset reader then sees one version per file
    instead of ranged reads that may straddle a concurrent replace. Read-only."""

    def __init__(self, fs: pafs.FileSystem, read: Callable[[str], bytes]) -> None:
        self._fs, self._read = fs, read

    def get_type_name(self) -> str:
        return f"dna-whole-object+{self._fs.type_name}"

    def equals(self, other: Any) -> bool:
        return isinstance(other, WholeObjectReads) and other._fs.equals(self._fs)

    def normalize_path(self, path: str) -> str:
        return self._fs.normalize_path(path)

    def get_file_info(self, paths: list[str]) -> list[pafs.FileInfo]:
        return self._fs.get_file_info(paths)

    def get_file_info_selector(self, selector: pafs.FileSelector) -> list[pafs.FileInfo]:
        return self._fs.get_file_info(selector)

    def open_input_stream(self, path: str) -> pa.NativeFile:
        return pa.BufferReader(self._read(path))

    def open_input_file(self, path: str) -> pa.NativeFile:
        return pa.BufferReader(self._read(path))

    def _read_only(self, *_args: Any, **_kwargs: Any) -> Any:
        raise OSError("read-only filesystem view (dna.storage_s3.WholeObjectReads)")

    create_dir = delete_dir = delete_dir_contents = delete_root_dir_contents = _read_only
    delete_file = move = copy_file = open_output_stream = open_append_stream = _read_only


def whole_object_filesystem(fs: pafs.FileSystem, read: Callable[[str], bytes]) -> pafs.FileSystem:
    """``fs`` for pyarrow readers, every file read whole by ``read`` (see WholeObjectReads)."""
    return pafs.PyFileSystem(WholeObjectReads(fs, read))


# --------------------------------------------------------------------------------------------
# Writes


def put_bytes(client: Any, bucket: str, key: str, data: bytes | memoryview, where: str) -> None:
    """Store ``data`` with its integrity metadata: one PUT, or an aborted-on-failure multipart."""
    if not key:
        raise DnaError(redact(f"cannot write {where}: expected s3://bucket/key, not a bucket"))
    meta = integrity_metadata(data)
    if len(data) <= SINGLE_PUT_MAX:
        try:
            client.put_object(Bucket=bucket, Key=key, Body=bytes(data), Metadata=meta)
        except (*_client_errors(), OSError) as e:
            raise error("write", where, e) from None
        return
    _put_multipart(client, bucket, key, memoryview(data), meta, where)


def _put_multipart(
    client: Any, bucket: str, key: str, data: memoryview, meta: dict[str, str], where: str
) -> None:
    size = max(PART_SIZE, -(-len(data) // 10_000))
    try:
        upload_id = client.create_multipart_upload(Bucket=bucket, Key=key, Metadata=meta)[
            "UploadId"
        ]
    except (*_client_errors(), OSError) as e:
        raise error("write", where, e) from None
    completed = False
    try:
        parts = []
        for number, start in enumerate(range(0, len(data), size), start=1):
            resp = client.upload_part(
                Bucket=bucket,
                Key=key,
                UploadId=upload_id,
                PartNumber=number,
                Body=bytes(data[start : start + size]),
            )
            parts.append({"ETag": resp["ETag"], "PartNumber": number})
        client.complete_multipart_upload(
            Bucket=bucket, Key=key, UploadId=upload_id, MultipartUpload={"Parts": parts}
        )
        completed = True
    except (*_client_errors(), OSError) as e:
        raise error("write", where, e) from None
    finally:
        if not completed:
            try:
                client.abort_multipart_upload(Bucket=bucket, Key=key, UploadId=upload_id)
            except (*_client_errors(), OSError):
                pass  # the sweep at the next stage start retries (abort_stale_uploads)


# --------------------------------------------------------------------------------------------
# Metadata and clean-up


def head(client: Any, bucket: str, key: str, where: str) -> dict[str, Any]:
    """The HEAD response of an object (DnaError naming ``where`` if missing or unreachable)."""
    try:
        return client.head_object(Bucket=bucket, Key=key)
    except _client_errors() as e:
        if _code(e) in ("NoSuchKey", "404", "NotFound"):
            raise error("read metadata of", where, "no such object") from None
        raise error("read metadata of", where, e) from None


def replace_user_metadata(
    client: Any, bucket: str, key: str, metadata: dict[str, str], where: str
) -> None:
    """Set the user metadata, keeping the integrity keys, on the version just inspected."""
    current = head(client, bucket, key, where)
    kept = {k: v for k, v in (current.get("Metadata") or {}).items() if k in INTEGRITY_KEYS}
    new = {str(k): str(v) for k, v in metadata.items() if str(k) not in INTEGRITY_KEYS}
    try:
        client.copy_object(
            Bucket=bucket,
            Key=key,
            CopySource={"Bucket": bucket, "Key": key},
            CopySourceIfMatch=current["ETag"],
            Metadata={**new, **kept},
            MetadataDirective="REPLACE",
        )
    except _client_errors() as e:
        raise error("set metadata of", where, e) from None


def abort_stale_uploads(
    client: Any, bucket: str, prefix: str, older_than_s: float, where: str
) -> list[str]:
    """Abort the incomplete multipart uploads under ``prefix`` initiated over ``older_than_s``
    ago (a killed writer's; S3 keeps and bills their parts forever). Returns their keys."""
    cutoff = time.time() - older_than_s
    aborted = []
    try:
        paginator = client.get_paginator("list_multipart_uploads")
        for page in paginator.paginate(Bucket=bucket, Prefix=prefix):
            for upload in page.get("Uploads", []) or []:
                if upload["Initiated"].timestamp() > cutoff:
                    continue
                try:
                    client.abort_multipart_upload(
                        Bucket=bucket, Key=upload["Key"], UploadId=upload["UploadId"]
                    )
                except _client_errors() as e:
                    if _code(e) not in ("NoSuchUpload", "404"):
                        raise
                aborted.append(upload["Key"])
    except _client_errors() as e:
        raise error("clean up incomplete uploads under", where, e) from None
    return aborted


__all__ = [
    "INTEGRITY_KEYS",
    "LENGTH_KEY",
    "PART_SIZE",
    "READ_ATTEMPTS",
    "SHA_KEY",
    "SINGLE_PUT_MAX",
    "WholeObjectReads",
    "abort_stale_uploads",
    "error",
    "get_bytes",
    "head",
    "integrity_metadata",
    "put_bytes",
    "replace_user_metadata",
    "whole_object_filesystem",
]
