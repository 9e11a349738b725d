"""Secrets out of messages: credentials inside URLs and the S3 secret in effect become ``***``.

Endpoints and URIs reach error messages from many layers (pyarrow, botocore, our own), and
users paste those messages into tickets. So every message that may carry a URL goes through
:func:`redact` before it is raised or printed.
"""

from __future__ import annotations

import os
import re

MASK = "***"

# scheme://user:pass@host or scheme://token@host: the userinfo part (no '/', no whitespace).
_USERINFO_RE = re.compile(r"(?P<scheme>\b[A-Za-z][A-Za-z0-9+.\-]*://)(?P<userinfo>[^/\s@'\"<>]+)@")
# Presigned-URL and token query parameters (S3 SigV2/SigV4, STS, generic OAuth-style names).
_QUERY_RE = re.compile(
    r"(?P<key>[?&;](?:X-Amz-Signature|X-Amz-Credential|X-Amz-Security-Token|AWSAccessKeyId|"
    r"Signature|access_token|token|secret|password|sig)=)(?P<value>[^&;#\s'\"<>]+)",
    re.IGNORECASE,
)
# Environment variables whose values are secrets; their literal values are masked wherever found.
SECRET_ENV = ("AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "RAY_AUTH_TOKEN")
_MIN_SECRET_LEN = 8  # shorter values ("testing", "x") would mask ordinary words


def _secret_values(extra: tuple[str | None, ...]) -> list[str]:
    values = [os.environ.get(name) for name in SECRET_ENV] + list(extra)
    unique = {v for v in values if v and len(v) >= _MIN_SECRET_LEN}
    return sorted(unique, key=len, reverse=True)  # longest first: a token may contain a key


def redact(text: object, secrets: tuple[str | None, ...] = ()) -> str:
    """``text`` (a message, URI or exception) with URL credentials and known secrets masked.

    ``s3://key:secret@bucket/x`` -> ``s3://***@bucket/x``; ``?X-Amz-Signature=abc`` ->
    ``?X-Amz-Signature=***``; the values of :data:`SECRET_ENV` and ``secrets`` -> ``***``.
    """
    s = str(text)
    s = _USERINFO_RE.sub(lambda m: f"{m['scheme']}{MASK}@", s)
    s = _QUERY_RE.sub(lambda m: f"{m['key']}{MASK}", s)
    for value in _secret_values(secrets):
        s = s.replace(value, MASK)
    return s


__all__ = ["MASK", "SECRET_ENV", "redact"]
