"""Local files written atomically, and the temp files of killed writers swept away.

A write goes to a hidden temp file ``.<name>.<random>.tmp`` beside the target, is fsynced and
renamed over the target (atomic on POSIX; readers holding the old file keep reading the old
version, so a local read is always one version). The writer holds an exclusive ``flock`` on its
temp file from creation until after the rename; the kernel drops it when the process dies, so
:func:`sweep_temp_files` can tell a killed writer's leftover (unlocked) from a live one's.
Files stay plain: no sidecars or trailers, users read them with any tool.
"""

from __future__ import annotations

import os
import re
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from typing import IO

try:
    import fcntl
except ImportError:  # not POSIX: no locks, the sweep judges temp files by age alone
    fcntl = None  # type: ignore[assignment]

TEMP_RE = re.compile(r"^\..+\.[0-9a-f]{12}\.tmp$")
# A writer locks its temp file right after creating it; one younger than this may not be locked yet.
GRACE_S = 2.0


def temp_name(path: str) -> str:
    """The hidden temp file for ``path`` (dot first: pyarrow dataset discovery skips it)."""
    return os.path.join(
        os.path.dirname(path), f".{os.path.basename(path)}.{uuid.uuid4().hex[:12]}.tmp"
    )


@contextmanager
def atomic_file(path: str) -> Iterator[IO[bytes]]:
    """A binary file that replaces ``path`` only if the block succeeds (old content kept until)."""
    os.makedirs(os.path.dirname(path), exist_ok=True)
    tmp = temp_name(path)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)  # umask applies
    try:
        with os.fdopen(fd, "wb") as f:
            with suppress(OSError, AttributeError):  # no locks here: the sweep judges by age
                fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
            yield f
            f.flush()
            os.fsync(f.fileno())
            os.replace(tmp, path)  # still locked: a sweep never sees an unlocked finished file
    except BaseException:
        with suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def read_file(path: str) -> bytes:
    """The whole file as one version: the open descriptor pins the inode a rename replaces."""
    with open(path, "rb") as f:
        size = os.fstat(f.fileno()).st_size
        data = f.read()
    if len(data) != size:  # only an in-place writer (not ours) can cause this
        raise OSError(f"read {len(data)} bytes of a {size}-byte file: it changed while read")
    return data


def _is_stale(path: str, now: float, older_than_s: float) -> bool:
    """No live process holds the temp file's lock (or, without locks, it is old)."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return False
    if now - st.st_mtime < GRACE_S:
        return False
    try:
        fd = os.open(path, os.O_RDONLY)
    except FileNotFoundError:
        return False
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False  # a live writer holds it
        except (OSError, AttributeError):
            return now - st.st_mtime >= older_than_s  # no lock support here: judge by age
        # Ours now; the writer (if it finished meanwhile) renamed it away: same inode, same path?
        with suppress(FileNotFoundError):
            return os.stat(path).st_ino == os.fstat(fd).st_ino
        return False
    finally:
        os.close(fd)


def sweep_temp_files(root: str, older_than_s: float) -> list[str]:
    """Remove the temp files of dead writers under ``root``; returns their paths."""
    removed: list[str] = []
    if not os.path.isdir(root):
        return removed
    now = time.time()
    for directory, _dirs, files in os.walk(root, onerror=_warn):
        for name in files:
            if not TEMP_RE.match(name):
                continue
            path = os.path.join(directory, name)
            if _is_stale(path, now, older_than_s):
                try:
                    os.unlink(path)
                except FileNotFoundError:
                    continue
                except OSError as e:
                    _warn(e)
                    continue
                removed.append(path)
    return removed


def _warn(exc: OSError) -> None:
    print(f"warning: stale temp file sweep skipped {exc.filename or ''}: {exc.strerror or exc}",
          file=sys.stderr)


__all__ = ["GRACE_S", "TEMP_RE", "atomic_file", "read_file", "sweep_temp_files", "temp_name"]
