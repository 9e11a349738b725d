"""Clean interruption of a local run: SIGINT/SIGTERM end every task subprocess group, and the driver
exits 130/143 with one line saying what the run root holds, instead of KFP's KeyboardInterrupt
traceback and a task subprocess left running.

KFP's ``SubprocessRunner`` starts each task with ``subprocess.Popen`` in this process group; while
:func:`task_groups` is active its Popen starts every task in a session of its own (so a task's
children, e.g. data-loader workers, share its group) and is tracked here, and the signal handlers
end those groups (SIGTERM, then SIGKILL after a grace period) before raising :class:`Interrupted`
in the main thread.
"""

from __future__ import annotations

import os
import signal
import subprocess
import threading
import time
import types
from collections.abc import Iterator
from contextlib import contextmanager, suppress

GRACE_S = 5.0                   # a task gets this long after SIGTERM before SIGKILL
_children: set[subprocess.Popen] = set()
_lock = threading.Lock()


class Interrupted(BaseException):
    """The run was stopped by a signal (a BaseException, like KeyboardInterrupt: KFP's
    ``except Exception`` must not turn it into a task failure)."""

    def __init__(self, signum: int):
        super().__init__(signal.Signals(signum).name)
        self.signum = signum

    @property
    def exit_code(self) -> int:
        return 128 + self.signum

    @property
    def name(self) -> str:
        return signal.Signals(self.signum).name


class _TaskPopen(subprocess.Popen):
    """A task subprocess in a new session (its own process group), tracked until it ends."""

    def __init__(self, *args, **kwargs):
        kwargs["start_new_session"] = True
        super().__init__(*args, **kwargs)
        with _lock:
            _children.add(self)

    def wait(self, timeout=None):
        code = super().wait(timeout)
        with _lock:
            _children.discard(self)
        return code


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def end_task_groups(grace_s: float = GRACE_S) -> list[int]:
    """SIGTERM every tracked task's process group, SIGKILL what is left after ``grace_s``;
    returns the group ids that were signalled."""
    with _lock:
        procs = list(_children)
    groups = []
    for p in procs:
        if p.poll() is None or _group_alive(p.pid):
            with suppress(ProcessLookupError, PermissionError):
                os.killpg(p.pid, signal.SIGTERM)
                groups.append(p.pid)
    deadline = time.time() + grace_s
    while time.time() < deadline:
        for p in procs:
            p.poll()                                  # reap the task, so its group can empty
        if not any(_group_alive(g) for g in groups):
            break
        time.sleep(0.05)
    for g in groups:
        with suppress(ProcessLookupError, PermissionError):
            os.killpg(g, signal.SIGKILL)
    for p in procs:
        with suppress(subprocess.TimeoutExpired):
            p.wait(timeout=2)
    return groups


@contextmanager
def task_groups() -> Iterator[None]:
    """While active (main thread only): KFP task subprocesses get their own process groups, and
    SIGINT/SIGTERM end them and raise :class:`Interrupted`. Any group still alive when the block
    ends (an error elsewhere) is ended too."""
    from kfp.local import subprocess_task_handler as handler

    def on_signal(signum, _frame):
        for s in (signal.SIGINT, signal.SIGTERM):     # a second Ctrl-C must not cut the clean-up short
            signal.signal(s, signal.SIG_IGN)
        end_task_groups()
        raise Interrupted(signum)

    shim = types.SimpleNamespace(**{k: getattr(subprocess, k) for k in dir(subprocess) if not k.startswith("__")})
    shim.Popen = _TaskPopen
    original = handler.subprocess
    handler.subprocess = shim
    previous = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for s, h in previous.items():
            signal.signal(s, h)
        handler.subprocess = original
        end_task_groups()


def where_it_stands(root: str) -> str:
    """What the run root holds, in a few words: the stages a rerun with the same root reuses."""
    from dna import storage
    from dna.errors import DnaError
    from dna.layout import block_supernet, generation, run_files

    def count(folder: str, prefix: str, file_of) -> int:
        if not storage.is_dir(folder):
            return 0
        return sum(1 for d in storage.listdir(folder)
                   if d.rstrip("/").rsplit("/", 1)[-1].startswith(prefix) and storage.exists(file_of(d)))

    try:
        parts = ["config"] if storage.exists(run_files(root).config) else []
        g = 0
        while storage.is_dir(generation(root, g).dir):
            gen, done = generation(root, g), []
            if storage.exists(gen.teacher_files.model):
                done.append("teacher")
            blocks = count(gen.supernets, "block", block_supernet)
            if blocks:
                done.append(f"{blocks} block supernet checkpoint(s)")
            rated = count(gen.scores, "block=", lambda d: storage.join(d, storage.PART_FILE))
            if rated:
                done.append(f"scores of {rated} block(s)")
            for name, uri in (("search", gen.search_arch), ("scaled teacher", gen.scaled_files.model),
                              ("retrain", gen.retrain_files.model)):
                if storage.exists(uri):
                    done.append(name)
            parts.append(f"gen{g}: {', '.join(done) or 'nothing finished'}")
            g += 1
        if storage.exists(run_files(root).summary):
            parts.append("summary")
    except DnaError as exc:
        return f"cannot read it ({exc})"
    return "; ".join(parts) if parts else "nothing yet"


def interrupted_line(exc: Interrupted, root: str) -> str:
    """The one line a stopped local run prints."""
    return (f"interrupted ({exc.name}): the run root {root} holds {where_it_stands(root)}; run the same command "
            f"with --root {root} to resume from there")
