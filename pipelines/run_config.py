"""The run config of a command line: a preset with the flags applied, and its checks."""

import argparse
import copy
import json
import math
from collections.abc import Sequence
from typing import Any

from pipelines.flags import UsageError, positive_int
from pipelines.presets import PRESETS


def _merge(base: dict, over: dict) -> dict:
    out = dict(base)
    for k, v in over.items():
        if isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = _merge(out[k], v)
        else:
            out[k] = copy.deepcopy(v)
    return out


# run config values that are open maps (their keys are checked by RunConfig.validate; limits'
# cost names by dna.cost_registry.check_limits)
OPEN_SECTIONS = ("transfer_options", "limits")


def _set_path(d: dict, dotted: str, value: Any) -> None:
    keys = dotted.split(".")
    open_map = keys[0] in OPEN_SECTIONS
    cur = d
    for k in keys[:-1]:
        if open_map and k not in cur:
            cur[k] = {}
        if not isinstance(cur.get(k), dict):
            raise UsageError(f"--set {dotted}: {k!r} is not a section of the run config")
        cur = cur[k]
    if keys[-1] not in cur and not (open_map and len(keys) > 1):
        raise UsageError(f"--set {dotted}: unknown run config key {keys[-1]!r} "
                         f"(expected one of {sorted(cur)})")
    cur[keys[-1]] = value


def parse_json_value(raw: str, what: str) -> Any:
    """A JSON value with finite numbers only (``1e400``, ``NaN``, ``Infinity`` are rejected by
    name: JSON would turn them into floats no setting means); not JSON: the string itself."""
    def finite(text: str) -> float:
        value = float(text)
        if not math.isfinite(value):
            raise UsageError(f"{what}: {text} is not a finite number")
        return value

    def constant(text: str) -> float:
        raise UsageError(f"{what}: {text} is not a finite number")

    try:
        return json.loads(raw, parse_float=finite, parse_constant=constant)
    except json.JSONDecodeError:
        return raw


def parse_set(items: Sequence[str]) -> list[tuple[str, Any]]:
    """``KEY=VALUE`` (VALUE as JSON, else a string) -> pairs."""
    out = []
    for item in items or ():
        key, eq, raw = item.partition("=")
        if not eq or not key.strip():
            raise UsageError(f"--set {item!r}: expected KEY=VALUE, e.g. data.train_size=512")
        out.append((key.strip(), parse_json_value(raw, f"--set {item}")))
    return out


def _count(value: str | None, name: str):
    if value is None:
        return None
    from dna.search.run import parse_count

    return parse_count(value, name)


def _limits(d: dict, args: argparse.Namespace) -> dict:
    """The preset's limits (``limits`` or the old ``max_<cost>`` keys) with the ``--max-*`` flags
    applied: one mapping, cost name -> limit."""
    from dna.cost_registry import COSTS, merge_limits, pop_legacy

    limits = merge_limits(d.get("limits"), pop_legacy(d, "max_"))
    for c in COSTS:
        v = getattr(args, c.limit_key, None)
        if v is not None:
            limits[c.name] = _count(v, c.flag)
    return limits


def build_run_config(args: argparse.Namespace, root: str, generations: int,
                     presets: dict[str, dict] | None = None) -> dict:
    """The RunConfig dict of a preset with the command-line flags applied (not validated yet)."""
    from dna.generation import RunConfig

    preset = (presets or PRESETS)[args.preset]
    d = _merge(RunConfig(root=root).to_dict(), preset["run"])
    d["root"] = root
    d["generations"] = generations
    if args.space:
        d["space"] = args.space
    if args.data:
        d["data"]["uri"] = args.data
    if args.teacher:
        d["teacher"] = {"model": args.teacher, "checkpoint": None, "pretrained": False, "num_classes": None}
    if args.teacher_checkpoint:
        d["teacher"]["checkpoint"] = args.teacher_checkpoint
        d["teacher"]["pretrained"] = False
    d["limits"] = _limits(d, args)
    positive_int(args.epochs, "--epochs")
    positive_int(args.retrain_epochs, "--retrain-epochs")
    if args.epochs is not None:
        d["block_epochs"] = args.epochs
    if args.retrain_epochs is not None:
        d["retrain"]["epochs"] = args.retrain_epochs
    if args.transfer is not None:
        tasks = [t.strip() for t in args.transfer.split(",") if t.strip()]
        d["transfer"] = [] if tasks in ([], ["none"]) else tasks
    if args.seed is not None:
        d["seed"] = args.seed
    for key, value in parse_set(args.set):
        if key in FLAG_KEYS:
            raise UsageError(f"--set {key}={value!r}: {key} is set with {FLAG_KEYS[key]}")
        if key.split(".", 1)[0] not in EXTRA_SECTIONS:
            _set_path(d, key, value)
    return d


# run config values a flag owns: --set would bypass the flag's own use (the DAG is unrolled from
# --generations; a local --root is made absolute and a scheduled run must not share one)
FLAG_KEYS = {"generations": "--generations (dna_plus.py; DNA and DNA++ run one)", "root": "--root"}

# --set keys starting with one of these go to a pipeline's extra config (e.g. DNA++'s pp_config).
EXTRA_SECTIONS = ("pp",)


def load_run_config(d: dict, remote: bool) -> Any:
    """The :class:`dna.generation.RunConfig` of ``d`` once every value has its declared type
    (checked before ``from_dict`` builds the nested configs) and, for a local run (not
    ``remote``), every S3 bucket it names exists; not validated yet."""
    from typing import Any as AnyValue

    from dna.config_check import check_types, check_value
    from dna.generation import RunConfig

    check_types(d, RunConfig, skip=("limits",))     # limits: dna.cost_registry.check_limits
    check_value(d.get("limits") or {}, dict[str, AnyValue], "limits")
    cfg = RunConfig.from_dict(d)
    if not remote:
        from pipelines.store_check import check_buckets

        check_buckets(cfg)
    return cfg


def validate_run_config(d: dict, remote: bool) -> Any:
    """A checked :class:`dna.generation.RunConfig` (:meth:`RunConfig.validate` makes every check;
    ``remote``: the run happens in a cluster, so URIs are not opened from here)."""
    return load_run_config(d, remote).validate(remote=remote)
