"""Whole-config checks made before any work: declared types, bounds, and each stage's own checks.

A run config reaches a pipeline as JSON edited by ``--set``, so any field may hold any JSON value.
Without these checks a string epoch count fails as a ``TypeError`` deep in a stage, ``1.5``
epochs or ``true`` batches run, and a setting only the rating stage checks is found wrong after
the teacher and supernets have trained. :func:`check_types` walks a config (a dataclass instance
or its dict) against the dataclass's type hints; :func:`check_run` adds the bounds and runs every
stage's own ``validate`` on the config each stage will get.
"""

from __future__ import annotations

import dataclasses
import math
import re
import types
import typing
from typing import Any, Union

from dna.errors import DnaError, check_keys, field_names
from dna.redact import redact

MAX_GENERATIONS = 100         # a DNA+ DAG is unrolled at compile time, one sub-DAG per generation
MAX_EPOCHS = 10_000
MAX_STEPS = 10_000_000        # per-epoch step caps and rating / calibration batch counts

_NONE = type(None)
_BUCKET_RE = re.compile(r"^[a-z0-9][a-z0-9.\-]{1,61}[a-z0-9]$")


def _bad(path: str, value: Any, expected: str) -> DnaError:
    return DnaError(f"{path}={redact(repr(value))}: expected {expected}")


def _describe(tp: Any) -> str:
    if tp is Any:
        return "any value"
    origin = typing.get_origin(tp)
    if origin in (Union, types.UnionType):
        return " or ".join("null" if a is _NONE else _describe(a) for a in typing.get_args(tp))
    if origin is list:
        return "a JSON list"
    if origin is dict:
        return "a JSON object"
    if dataclasses.is_dataclass(tp):
        return "a JSON object"
    return {bool: "true or false", int: "an integer", float: "a finite number", str: "a string"}.get(
        tp, getattr(tp, "__name__", str(tp)))


def _matches(value: Any, tp: Any) -> bool:
    """Whether ``value`` has the shape of ``tp`` at the top level (nested values checked after)."""
    if tp is Any:
        return True
    origin = typing.get_origin(tp)
    if origin in (Union, types.UnionType):
        return any(_matches(value, a) for a in typing.get_args(tp))
    if tp is _NONE:
        return value is None
    if tp is bool:
        return isinstance(value, bool)
    if tp is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if tp is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    if tp is str:
        return isinstance(value, str)
    if origin is list or tp is list:
        return isinstance(value, list)
    if origin is dict or tp is dict:
        return isinstance(value, dict) and all(isinstance(k, str) for k in value)
    if dataclasses.is_dataclass(tp):
        return isinstance(value, (tp, dict))
    return isinstance(value, tp) if isinstance(tp, type) else True


def check_value(value: Any, tp: Any, path: str) -> None:
    """Raise :class:`DnaError` naming ``path`` and the value unless ``value`` fits the hint ``tp``."""
    if not _matches(value, tp):
        raise _bad(path, value, _describe(tp))
    origin = typing.get_origin(tp)
    if origin in (Union, types.UnionType):
        for a in typing.get_args(tp):
            if a is not _NONE and _matches(value, a):
                check_value(value, a, path)
                return
    elif origin is list:
        (item,) = typing.get_args(tp) or (Any,)
        for i, v in enumerate(value):
            check_value(v, item, f"{path}[{i}]")
    elif origin is dict:
        _, item = typing.get_args(tp) or (str, Any)
        for k, v in value.items():
            check_value(v, item, f"{path}.{k}")
    elif dataclasses.is_dataclass(tp):
        if isinstance(value, dict):
            check_keys(value, field_names(tp), f"{path} keys")
        check_types(value, tp, path)


def check_types(config: Any, cls: type, path: str = "", skip: tuple[str, ...] = ()) -> None:
    """Every field of ``config`` (an instance of the dataclass ``cls`` or a dict of its fields)
    has its declared type; keys that are not fields are left to ``from_dict``'s key check."""
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        if f.name in skip:
            continue
        if isinstance(config, dict):
            if f.name not in config:
                continue
            value = config[f.name]
        else:
            value = getattr(config, f.name)
        check_value(value, hints[f.name], f"{path}.{f.name}" if path else f.name)


def check_range(name: str, value: int | float | None, low: int | float, high: int | float) -> None:
    """``value`` (None: unset, allowed) lies in ``low..high``."""
    if value is not None and not low <= value <= high:
        raise DnaError(f"{name}={value!r}: expected {low}..{high}")


def check_at_most(name: str, value: int | float | None, high: int | float) -> None:
    """``value`` (None: unset) is at most ``high`` (its lower bound is checked where it is used)."""
    if value is not None and value > high:
        raise DnaError(f"{name}={value!r}: expected at most {high}")


def check_uri(name: str, uri: str | None) -> None:
    """A run URI is a local path or a well-formed ``s3://bucket/prefix`` (bucket naming rules)."""
    if not uri:
        return
    from dna import storage

    if re.match(r"^s3:(?!//)", uri, re.IGNORECASE):
        raise DnaError(f"{name} {redact(uri)!r}: malformed S3 URI, expected s3://bucket/prefix")
    if storage.is_s3(uri):
        bucket = uri.split("://", 1)[1].split("/", 1)[0]
        if not _BUCKET_RE.match(bucket) or ".." in bucket:
            raise DnaError(f"{name} {redact(uri)!r}: bucket {bucket!r} is not a valid S3 bucket name "
                           "(expected 3-63 lowercase letters, digits, dots and hyphens)")


def run_uris(cfg: Any) -> dict[str, str]:
    """The URIs a run config names (setting name -> URI), for format and bucket checks."""
    uris = {"root": cfg.root, "data.uri": cfg.data.uri, "teacher.checkpoint": cfg.teacher.checkpoint,
            "latency_table": cfg.latency_table}
    if cfg.teacher.model.endswith(".json"):
        uris["teacher.model"] = cfg.teacher.model
    return {k: v for k, v in uris.items() if v and not (k == "data.uri" and cfg.data.is_builtin)}


def check_run(cfg: Any, remote: bool = False) -> None:
    """Types and bounds of a :class:`dna.generation.RunConfig`, then the checks every stage makes
    of its own config, on the configs the stages will get (``remote``: open no URI from here)."""
    from dna.data import MAX_BATCH, MAX_RESOLUTION, MAX_SEED, MAX_SIZE, MIN_RESOLUTION
    from dna.generation import RunConfig

    check_types(cfg, RunConfig, skip=("limits",))        # limits: dna.cost_registry.check_limits
    for task, settings in cfg.transfer_options.items():
        cls = _transfer_classes().get(task)
        if cls is not None and isinstance(settings, dict):
            check_types(settings, cls, f"transfer_options.{task}")
            for key, high in (("resolution", MAX_RESOLUTION), ("train_size", MAX_SIZE), ("val_size", MAX_SIZE),
                              ("batch_size", MAX_BATCH), ("epochs", MAX_EPOCHS)):
                check_at_most(f"transfer_options.{task}.{key}", settings.get(key), high)
    if cfg.latency_table == "":
        raise DnaError("latency_table='': expected the URI of a `dna latency-table` JSON, or null for none")
    for name, uri in run_uris(cfg).items():
        check_uri(name, uri)
    check_range("generations", cfg.generations, 1, MAX_GENERATIONS)
    # lower bounds of these are the stages' own checks (their messages stay); the upper ones here
    check_at_most("seed", cfg.seed, MAX_SEED)
    for name in ("block_epochs", "transfer_epochs"):
        check_at_most(name, getattr(cfg, name), MAX_EPOCHS)
    for name in ("teacher_train", "retrain"):
        check_at_most(f"{name}.epochs", getattr(cfg, name).epochs, MAX_EPOCHS)
        check_at_most(f"{name}.steps_per_epoch", getattr(cfg, name).steps_per_epoch, MAX_STEPS)
    check_range("block_max_steps", cfg.block_max_steps, 1, MAX_STEPS)
    check_range("rate_max_batches", cfg.rate_max_batches, 1, MAX_STEPS)
    check_range("calib_batches", cfg.calib_batches, 0, MAX_STEPS)
    check_range("transfer_resolution", cfg.transfer_resolution, MIN_RESOLUTION, MAX_RESOLUTION)
    check_range("transfer_train_size", cfg.transfer_train_size, 1, MAX_SIZE)
    check_range("transfer_val_size", cfg.transfer_val_size, 1, MAX_SIZE)
    cfg.data.validate()
    _check_stages(cfg, remote)


def _transfer_classes() -> dict[str, type]:
    from dna.transfer_config import ClsConfig, DetConfig, SegConfig

    return {"seg": SegConfig, "det": DetConfig, "cls": ClsConfig}


def _check_stages(cfg: Any, remote: bool) -> None:
    """The block-training and rating stages' own checks, on the configs they will get."""
    from dna.generation import block_config, rate_config
    from dna.space import get_family, get_space
    from dna.teacher_config import TeacherConfig

    space = get_space(cfg.space)
    teacher = TeacherConfig(model="teacher.json", checkpoint="teacher.pt")
    if get_family(space).joint_teacher:          # DNA++: dna.dnapp.validate_pp and check_pp check its stages
        return
    for k in range(len(space.blocks)):
        try:
            block_config(cfg, 0, k, teacher).validate()
        except DnaError as exc:
            raise DnaError(f"block training: {exc}") from None
    rc = rate_config(cfg, 0, teacher)
    if remote:
        rc = dataclasses.replace(rc, latency_table=None)
    try:
        rc.validate()
    except DnaError as exc:
        raise DnaError(f"rating: {exc}") from None


def check_pp_batches(cfg: Any, pp_config: str | dict) -> None:
    """DNA++ trains on full batches only (the covariance terms): a built-in train split smaller
    than one batch (``pp.train.batch_size``, else ``data.batch_size``) would train nothing."""
    from dna.dnapp import pp_settings

    batch = (pp_settings(pp_config).get("train") or {}).get("batch_size") or cfg.data.batch_size
    if cfg.data.is_builtin and cfg.data.train_size < batch:
        raise DnaError(f"data.train_size={cfg.data.train_size}: DNA++ trains on full batches only, "
                       f"expected at least one batch of {batch}")


def check_pp_types(pp_config: str | dict) -> None:
    """Each field of a DNA++ ``pp_config``'s ``train`` (:class:`dna.ssl.PPTrainConfig`) and
    ``retrain`` (:class:`dna.retrain_vit.RetrainViTConfig`) sections has its declared type."""
    import json

    from dna.retrain_vit_config import RetrainViTConfig
    from dna.ssl_config import PPTrainConfig

    pp = json.loads(pp_config) if isinstance(pp_config, str) else pp_config
    for name, cls in (("train", PPTrainConfig), ("retrain", RetrainViTConfig)):
        section = pp.get(name) if isinstance(pp, dict) else None
        if isinstance(section, dict):
            check_types(section, cls, f"pp.{name}")
