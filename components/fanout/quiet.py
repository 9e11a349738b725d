"""How much of Ray's own output reaches the terminal: quiet by default, everything with ``--verbose``.

Only Ray's own settings, no output filtering: ``ray.init(log_to_driver=..., logging_level=...)``
(worker, actor and Ray Train controller logs stay in Ray's session logs instead of streaming to
this process), Tune's ``RunConfig(verbose=0)`` with ``RAY_AIR_NEW_OUTPUT=0`` (the new output
engine prints its experiment table and a TensorBoard hint into ``/tmp/ray`` even at verbosity 0).
The fan-out prints its own one line per block event instead (:mod:`components.fanout.events`).

``DNA_VERBOSE=1`` (set by the pipelines' ``--verbose`` for every task subprocess) restores Ray's
defaults.
"""

from __future__ import annotations

import logging
import os

VERBOSE_ENV = "DNA_VERBOSE"
# What quiet mode sets in the environment of this process (Ray reads these itself).
QUIET_ENV = {"RAY_AIR_NEW_OUTPUT": "0", "RAY_DEDUP_LOGS": "1"}


def is_verbose() -> bool:
    return os.environ.get(VERBOSE_ENV, "").strip().lower() in ("1", "true", "yes")


def set_verbose(verbose: bool) -> None:
    """Make ``verbose`` the setting of this process and of the subprocesses it starts."""
    if verbose:
        os.environ[VERBOSE_ENV] = "1"
    else:
        os.environ.pop(VERBOSE_ENV, None)


def ray_init_kwargs(verbose: bool | None = None) -> dict:
    """``ray.init`` keyword arguments: Ray's defaults when verbose, else no streamed worker logs
    and only Ray's warnings."""
    verbose = is_verbose() if verbose is None else verbose
    if verbose:
        return {"log_to_driver": True, "logging_level": logging.INFO}
    return {"log_to_driver": False, "logging_level": logging.WARNING}


def tune_verbosity(verbose: bool | None = None) -> int:
    """Tune's ``RunConfig(verbose=...)``: 0 (silent) when quiet, Tune's default (1) when verbose."""
    return 1 if (is_verbose() if verbose is None else verbose) else 0


def apply_quiet_env(verbose: bool | None = None) -> None:
    """Set (quiet) or clear (verbose) the environment settings of :data:`QUIET_ENV`, which Tune
    reads when a Tuner is fitted."""
    verbose = is_verbose() if verbose is None else verbose
    for k, v in QUIET_ENV.items():
        if verbose:
            if os.environ.get(k) == v:
                os.environ.pop(k)
        else:
            os.environ[k] = v
