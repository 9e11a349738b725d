"""One live run per run root: a lease object ``<root>/.dna-lease.json``, and the root's stored config.

Two runs on one root silently mix their outputs (each reuses the other's stages as its own), so
a run first takes the root's lease: an object holding its run id, host, pid, start time and a
heartbeat, written with a conditional create (S3 ``put_object(IfNoneMatch="*")``, locally a hard
link that fails if the name exists), refreshed by a heartbeat thread with a compare-and-swap
(S3 ``IfMatch=<etag>``, locally a short lock file and a byte comparison). A second live run is
refused (:class:`LeaseHeld`, a :class:`DnaError`: exit 2) naming the holder; a lease without a
heartbeat for ``stale_after`` seconds (``DNA_LEASE_STALE_S``, default 600), or held by a dead pid
on this host, is taken over with the same compare-and-swap, and the run says so.

The processes of one run share its run id (``DNA_RUN_ID``: the local pipeline driver sets it for
its component subprocesses, KFP tasks get the pipeline run's id): one whose id matches the holder
joins the lease (and keeps it fresh) instead of being refused; only the process that created the
lease removes it when it ends.
"""

from __future__ import annotations

import json
import os
import socket
import threading
import time
import uuid
from collections.abc import Callable
from contextlib import suppress
from dataclasses import asdict, dataclass
from typing import Any

from dna import storage
from dna.errors import DnaError

LEASE_FILE = ".dna-lease.json"
RUN_ID_ENV = "DNA_RUN_ID"
STALE_ENV = "DNA_LEASE_STALE_S"
DEFAULT_STALE_S = 600.0
_LOCK_STALE_S = 30.0        # a local compare-and-swap lock older than this was left by a crash


class LeaseHeld(DnaError):
    """Another live run holds the lease of a root."""


def new_run_id() -> str:
    return f"{time.strftime('%Y%m%d-%H%M%S')}-{uuid.uuid4().hex[:8]}"


def env_run_id() -> str | None:
    """``DNA_RUN_ID`` when set to a real id (not empty, not an unresolved ``{{...}}`` placeholder)."""
    rid = os.environ.get(RUN_ID_ENV, "").strip()
    return rid if rid and "{{" not in rid else None


def stale_after_s() -> float:
    raw = os.environ.get(STALE_ENV, "").strip()
    if not raw:
        return DEFAULT_STALE_S
    try:
        value = float(raw)
    except ValueError:
        value = -1.0
    if not value > 0:
        raise DnaError(f"{STALE_ENV}={raw!r}: expected a number of seconds > 0")
    return value


@dataclass(frozen=True)
class Holder:
    """What a lease object holds."""

    run_id: str
    host: str
    pid: int
    started: float
    heartbeat: float
    token: str
    pid_ns: str = ""            # the pid namespace its pid belongs to (containers sharing a host name)

    def age(self, now: float | None = None) -> float:
        return max(0.0, (time.time() if now is None else now) - self.heartbeat)

    def describe(self, now: float | None = None) -> str:
        started = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(self.started))
        return (f"run {self.run_id!r} (host {self.host}, pid {self.pid}, started {started}, "
                f"last heartbeat {self.age(now):.0f} s ago)")

    def dumps(self) -> bytes:
        return json.dumps(asdict(self), indent=1, sort_keys=True).encode()

    @classmethod
    def loads(cls, data: bytes, mtime: float) -> Holder:
        """The holder of a lease object; an unreadable one (torn by a crash, edited by hand)
        counts as an unknown holder whose heartbeat is the object's modification time."""
        try:
            d = json.loads(data)
            return cls(run_id=str(d["run_id"]), host=str(d["host"]), pid=int(d["pid"]),
                       started=float(d["started"]), heartbeat=float(d["heartbeat"]), token=str(d["token"]),
                       pid_ns=str(d.get("pid_ns", "")))
        except (ValueError, KeyError, TypeError):
            return cls(run_id="<unreadable lease>", host="?", pid=-1, started=mtime, heartbeat=mtime, token="")


def _pid_ns() -> str:
    try:
        return os.readlink("/proc/self/ns/pid")
    except OSError:
        return ""


def _pid_alive(pid: int) -> bool:
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


# ----- the two stores: a local file and an S3 object, both compare-and-swap -------------------------------
class _LocalStore:
    """The lease as a local file; the version of its content is the content itself."""

    def __init__(self, path: str):
        self.path = path
        self.made_dir = False           # this process created the folder (removed again if left empty)

    def read(self) -> tuple[bytes, Any, float] | None:
        try:
            with open(self.path, "rb") as f:
                data = f.read()
            return data, data, os.path.getmtime(self.path)
        except FileNotFoundError:
            return None

    def _tmp(self, data: bytes) -> str:
        folder = os.path.dirname(self.path)
        if not os.path.isdir(folder):
            os.makedirs(folder, exist_ok=True)
            self.made_dir = True
        tmp = f"{self.path}.{uuid.uuid4().hex[:12]}.tmp"
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        return tmp

    def create(self, data: bytes) -> Any:
        """Exclusive create of a complete file: a hard link fails if the name exists."""
        tmp = self._tmp(data)
        try:
            os.link(tmp, self.path)
        except FileExistsError:
            return None
        except OSError:                          # no hard links here: an exclusive open instead
            try:
                fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                return None
            with os.fdopen(fd, "wb") as f:
                f.write(data)
        finally:
            with suppress(OSError):
                os.unlink(tmp)
        return data

    def _locked(self) -> bool:
        lock = self.path + ".lock"
        for _ in range(200):
            try:
                os.close(os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644))
                return True
            except FileExistsError:
                with suppress(OSError):
                    if time.time() - os.path.getmtime(lock) > _LOCK_STALE_S:
                        os.unlink(lock)
                        continue
                time.sleep(0.01)
        return False

    def _unlock(self) -> None:
        with suppress(OSError):
            os.unlink(self.path + ".lock")

    def swap(self, data: bytes | None, version: Any) -> Any:
        """Replace (``data``) or remove (None) the file if it still holds ``version``."""
        if not self._locked():
            return None
        try:
            current = self.read()
            if current is None or current[1] != version:
                return None
            if data is None:
                os.unlink(self.path)
                return True
            os.replace(self._tmp(data), self.path)
            return data
        finally:
            self._unlock()
            if data is None and self.made_dir:       # e.g. a bad input refused after the lease: no empty folder
                with suppress(OSError):
                    os.rmdir(os.path.dirname(self.path))


_UNSUPPORTED = ("NotImplemented", "501")   # an S3 store that does not know conditional writes


class _S3Store:
    """The lease as an S3 object; its version is the ETag (conditional PUT and DELETE)."""

    def __init__(self, uri: str):
        self.uri = uri
        self.bucket, self.key = storage._bucket_key(uri)

    def _client(self):
        return storage._s3_client(storage.s3_settings())

    @staticmethod
    def _code(exc) -> str:
        return str(getattr(exc, "response", {}).get("Error", {}).get("Code", ""))

    def _fail(self, exc) -> DnaError:
        return DnaError(f"cannot use the lease {storage._where(self.uri)}: {exc}")

    def read(self) -> tuple[bytes, Any, float] | None:
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            r = self._client().get_object(Bucket=self.bucket, Key=self.key)
            return r["Body"].read(), r["ETag"], r["LastModified"].timestamp()
        except ClientError as e:
            if self._code(e) in ("NoSuchKey", "404", "NotFound"):
                return None
            raise self._fail(e) from e
        except BotoCoreError as e:
            raise self._fail(e) from e

    def _put(self, data: bytes, **cond: str) -> Any:
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            return self._client().put_object(Bucket=self.bucket, Key=self.key, Body=data,
                                              ContentType="application/json", **cond)["ETag"]
        except ClientError as e:
            # 412: the condition failed; 409: a concurrent conditional write won the race
            if self._code(e) in ("PreconditionFailed", "412", "ConditionalRequestConflict", "409"):
                return None
            if cond and self._code(e) in _UNSUPPORTED:
                return self._unconditional(data, cond)
            raise self._fail(e) from e
        except BotoCoreError as e:
            raise self._fail(e) from e

    def _unconditional(self, data: bytes, cond: dict[str, str]) -> Any:
        """A store without conditional writes: check the condition with a read, then a plain PUT
        (a race between the two remains possible there; AWS S3 and MinIO have conditional writes)."""
        got = self.read()
        if (got is not None) if "IfNoneMatch" in cond else (got is None or got[1] != cond["IfMatch"]):
            return None
        return self._put(data)

    def create(self, data: bytes) -> Any:
        return self._put(data, IfNoneMatch="*")

    def swap(self, data: bytes | None, version: Any) -> Any:
        if data is not None:
            return self._put(data, IfMatch=version)
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            self._client().delete_object(Bucket=self.bucket, Key=self.key, IfMatch=version)
            return True
        except ClientError as e:
            if self._code(e) in ("PreconditionFailed", "412", "NoSuchKey", "404"):
                return None
            if self._code(e) in _UNSUPPORTED:
                got = self.read()
                if got is None or got[1] != version:
                    return None
                self._client().delete_object(Bucket=self.bucket, Key=self.key)
                return True
            raise self._fail(e) from e
        except BotoCoreError as e:
            raise self._fail(e) from e


def _store(uri: str):
    path = storage.local_path(uri)
    return _LocalStore(path) if path is not None else _S3Store(uri)


def lease_uri(root: str) -> str:
    return storage.join(root, LEASE_FILE)


def read_holder(root: str) -> Holder | None:
    """Who holds the lease of ``root`` now (None: nobody)."""
    got = _store(lease_uri(root)).read()
    return None if got is None else Holder.loads(got[0], got[2])


# ----- the lease ---------------------------------------------------------------------------------------------
class Lease:
    """The lease of one root for this process (a context manager): :meth:`acquire` creates,
    joins (same run id) or takes over (stale) the lease, or raises :class:`LeaseHeld`; a daemon
    thread refreshes the heartbeat every ``heartbeat_s``; :meth:`release` stops it and removes
    the lease if this process created it."""

    def __init__(self, root: str, run_id: str | None = None, *, what: str = "run root",
                 stale_after: float | None = None, heartbeat_s: float | None = None,
                 log: Callable[[str], Any] = print):
        self.root, self.uri, self.what, self.log = root, lease_uri(root), what, log
        self.run_id = run_id or env_run_id() or new_run_id()
        self.stale_after = stale_after_s() if stale_after is None else float(stale_after)
        self.heartbeat_s = heartbeat_s if heartbeat_s is not None else min(60.0, self.stale_after / 4)
        self.owned = False                    # this process created the lease (removes it at release)
        self.lost = False                     # another run took it over while this one ran
        self._store = _store(self.uri)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # -- taking it
    def _mine(self) -> Holder:
        now = time.time()
        return Holder(run_id=self.run_id, host=socket.gethostname(), pid=os.getpid(), started=now, heartbeat=now,
                      token=uuid.uuid4().hex, pid_ns=_pid_ns())

    def stale(self, holder: Holder, now: float | None = None) -> str | None:
        """Why ``holder`` no longer counts (None: it is live)."""
        if holder.age(now) > self.stale_after:
            return f"no heartbeat for {holder.age(now):.0f} s (stale after {self.stale_after:.0f} s, {STALE_ENV})"
        same_pids = holder.host == socket.gethostname() and holder.pid_ns == _pid_ns()
        if same_pids and not _pid_alive(holder.pid):
            return f"its pid {holder.pid} is no longer running on this host"
        return None

    def refusal(self, holder: Holder) -> LeaseHeld:
        return LeaseHeld(
            f"the {self.what} {self.root} is in use: its lease {self.uri} is held by {holder.describe()}. "
            f"Wait for that run to end, or use another {self.what}; a lease without a heartbeat for "
            f"{self.stale_after:.0f} s ({STALE_ENV}) is taken over")

    def acquire(self) -> Lease:
        for _ in range(20):
            got = self._store.read()
            if got is None:
                mine = self._mine()
                version = self._store.create(mine.dumps())
                if version is not None:
                    self._took(owned=True)
                    return self
                continue                                      # another run created it first
            data, version, mtime = got
            holder = Holder.loads(data, mtime)
            if holder.run_id == self.run_id:                  # a process of this same run
                self._took(owned=False)
                return self
            why = self.stale(holder)
            if why is None:
                raise self.refusal(holder)
            mine = self._mine()
            new_version = self._store.swap(mine.dumps(), version)
            if new_version is not None:
                self.log(f"took over the stale lease of the {self.what} {self.root} from {holder.describe()}: {why}")
                self._took(owned=True)
                return self
        raise DnaError(f"cannot take the lease {self.uri}: it changed 20 times while this run tried; "
                       "several runs are starting on this root at once")

    def _took(self, owned: bool) -> None:
        self.owned = owned
        if not owned:
            self.refresh()                                    # a joiner's start is a heartbeat too
        self._thread = threading.Thread(target=self._beat, name=f"dna-lease {self.root}", daemon=True)
        self._thread.start()

    # -- keeping it
    def refresh(self) -> bool:
        """One heartbeat: the lease, still this run's, gets the time now (False: lost)."""
        for _ in range(5):
            got = self._store.read()
            holder = None if got is None else Holder.loads(got[0], got[2])
            if holder is None or holder.run_id != self.run_id:
                if not self.lost:
                    self.lost = True
                    who = holder.describe() if holder else "nobody (it was removed)"
                    self.log(f"warning: the lease of the {self.what} {self.root} is now held by {who}; "
                             "this run no longer owns the root")
                return False
            beat = Holder(**{**asdict(holder), "heartbeat": time.time()})
            if self._store.swap(beat.dumps(), got[1]) is not None:
                return True
        return True                                           # busy with other heartbeats of this run

    def _beat(self) -> None:
        while not self._stop.wait(self.heartbeat_s):
            try:
                if not self.refresh():
                    return
            except DnaError as exc:                           # a storage hiccup: try again next time
                self.log(f"warning: lease heartbeat failed: {exc}")

    # -- giving it back
    def release(self) -> None:
        self._stop.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout=5)
        self._thread = None
        if not self.owned or self.lost:
            return
        self.owned = False
        with suppress(DnaError):
            got = self._store.read()
            if got is not None and Holder.loads(got[0], got[2]).run_id == self.run_id:
                self._store.swap(None, got[1])

    def __enter__(self) -> Lease:
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()


def check_free(root: str, what: str = "run root", log: Callable[[str], Any] = print) -> None:
    """Raise :class:`LeaseHeld` if a live run holds the lease of ``root`` (for a process with no
    run id of its own, which neither joins nor takes the lease)."""
    holder = read_holder(root)
    if holder is not None:
        probe = Lease(root, run_id="", what=what, log=log)
        if probe.stale(holder) is None:
            raise probe.refusal(holder)


def end_run(root: str, run_id: str | None = None) -> bool:
    """The run's last step removes the root's lease, if run ``run_id`` (default ``DNA_RUN_ID``)
    holds it and its creator is not a live process here that removes it itself (the local
    driver). In KFP the creating task's pod is gone by then; without this the lease would block
    the next run on the same root until it went stale. True if removed."""
    run_id = run_id or env_run_id()
    store = _store(lease_uri(root)) if root and run_id else None
    got = store.read() if store else None
    if got is None:
        return False
    holder = Holder.loads(got[0], got[2])
    if holder.run_id != run_id:
        return False
    if holder.host == socket.gethostname() and holder.pid_ns == _pid_ns() and _pid_alive(holder.pid):
        return False                                          # its creator lives and releases it
    return store.swap(None, got[1]) is not None


# ----- the root's stored config ----------------------------------------------------------------------------
def differing_keys(stored: Any, new: Any, prefix: str = "") -> list[str]:
    """Dotted keys whose values differ between two JSON values (nested dicts compared key by key)."""
    if isinstance(stored, dict) and isinstance(new, dict):
        out = []
        for k in sorted(set(stored) | set(new), key=str):
            name = f"{prefix}{k}"
            if k not in stored or k not in new:
                out.append(name)
            else:
                out += differing_keys(stored[k], new[k], f"{name}.")
        return out
    return [] if stored == new else [prefix.rstrip(".")]


def _at(d: Any, dotted: str) -> Any:
    for k in dotted.split("."):
        if not isinstance(d, dict) or k not in d:
            return "<absent>"
        d = d[k]
    return d


RESUMABLE_KEYS = ("generations",)


def check_stored_config(config_uri: str, new: dict, reuse: bool, log: Callable[[str], Any] = print) -> None:
    """Refuse a root whose stored ``config.json`` differs from this run's config (its outputs are
    another run's), naming the differing keys, unless ``reuse`` (``--reuse-root``)."""
    from dna.run_summary import read_optional_json

    stored = read_optional_json(config_uri)
    if stored is None or stored == new:
        return
    # more (or fewer) generations of the same config resume it: each generation's outputs depend on
    # the other keys only (DNA on a root, then DNA+ with --generations 3 on it, reuses generation 0)
    keys = [k for k in differing_keys(stored, new) if k not in RESUMABLE_KEYS]
    if not keys:
        return
    shown = ", ".join(f"{k} ({_at(stored, k)!r} stored, {_at(new, k)!r} now)" for k in keys[:8])
    more = f" and {len(keys) - 8} more" if len(keys) > 8 else ""
    if reuse:
        log(f"--reuse-root: {config_uri} holds another config (differing: {shown}{more}); outputs already stored "
            "under the root are reused where their stage finds them")
        return
    raise DnaError(f"{config_uri} holds another run's config: differing keys {shown}{more}. The stored outputs "
                   "were made with that config; use another --root, or pass --reuse-root to reuse them anyway")
