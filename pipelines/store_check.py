"""The run's endpoints checked before a local run starts: every S3 bucket it names exists, and
the Ray address has a form Ray accepts.

Without these a missing bucket surfaces as a pyarrow error in the first stage that writes, and a
malformed Ray address only when the supernet stage connects, after the teacher has trained.
"""

from __future__ import annotations

import re
from typing import Any

from dna.config_check import check_uri, run_uris
from dna.redact import redact
from pipelines.flags import UsageError

_HOST = r"(?:[A-Za-z0-9](?:[A-Za-z0-9\-]{0,61}[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9\-]{0,61}[A-Za-z0-9])?)*" \
        r"|\[[0-9A-Fa-f:.]+\])"
_PORT = r"(?P<port>[0-9]{1,5})"
_RAY_FORMS = (
    re.compile(rf"^https?://(?:[^/@\s]+@)?{_HOST}(?::{_PORT})?(?:/[A-Za-z0-9._~\-/]*)?$"),  # Jobs API
    re.compile(rf"^ray://{_HOST}:{_PORT}$"),                          # Ray Client
    re.compile(rf"^{_HOST}:{_PORT}$"),                                # a Ray cluster's GCS
)
RAY_KEYWORDS = ("auto", "local")


def check_ray_address(address: str | None, what: str = "--ray-address") -> None:
    """``address`` is empty (a Ray inside the task), ``auto``/``local``, ``http(s)://HOST[:PORT]``,
    ``ray://HOST:PORT`` or ``HOST:PORT`` with a port in 1..65535."""
    if not address or address in RAY_KEYWORDS:
        return
    for form in _RAY_FORMS:
        m = form.match(address)
        if m and (m.group("port") is None or 1 <= int(m.group("port")) <= 65535):
            return
    raise UsageError(f"{what} {redact(address)!r}: expected http(s)://HOST:PORT (the Ray Jobs API, e.g. "
                     "http://dna-ray-head-svc:8265), ray://HOST:PORT, HOST:PORT (a Ray cluster's GCS), "
                     "'auto', or empty for a Ray inside the task")


def check_buckets(cfg: Any) -> None:
    """Each URI of the run config is well formed, and the bucket of each S3 one answers a HEAD
    (one request per bucket) with the endpoint and credentials this machine's stages will use."""
    from dna import storage
    from dna.errors import DnaError

    seen: set[str] = set()
    for name, uri in run_uris(cfg).items():
        check_uri(name, uri)
        if not storage.is_s3(uri):
            continue
        bucket = uri.split("://", 1)[1].split("/", 1)[0]
        if bucket in seen:
            continue
        seen.add(bucket)
        try:
            storage.ensure_bucket(uri)
        except DnaError as exc:
            why = str(exc).replace(" (or pass create=True)", "")      # a pipeline creates no bucket
            raise UsageError(f"{name} {redact(uri)}: {redact(why)}") from None
