"""What a command line asks for, checked whole before anything runs: mode, run config, parameters."""

import argparse
import dataclasses
import json
import os
import time
from typing import Any

from pipelines.flags import UsageError
from pipelines.parameters import pipeline_arguments
from pipelines.presets import PRESETS
from pipelines.run_config import (
    EXTRA_SECTIONS,
    build_run_config,
    parse_json_value,
    parse_set,
    validate_run_config,
)


@dataclasses.dataclass
class Plan:
    """What a command line asks for, fully checked."""

    mode: str                       # local | compile | submit | schedule (compile may go with submit)
    run_config: dict
    arguments: dict[str, Any]
    generations: int
    host: str | None = None
    compile_path: str | None = None
    cron: str | None = None
    cron_text: str | None = None
    run_name: str | None = None


class Extras:
    """Hooks of a pipeline with parameters beyond the run config (DNA++): more parameters from
    the preset and ``--set <section>.KEY=VALUE``, checked before any work."""

    sections: tuple[str, ...] = ()      # the --set sections (of run_config.EXTRA_SECTIONS) it reads

    def arguments(self, args: argparse.Namespace, preset: dict) -> dict[str, Any]:
        return {}

    def validate(self, run_config: dict, arguments: dict[str, Any], remote: bool) -> None:
        from dna.generation import with_retrain

        with_retrain(validate_run_config(run_config, remote=remote), check_scale_retrain(arguments))


def check_scale_retrain(arguments: dict[str, Any]) -> Any:
    """``--scale-retrain``'s JSON with finite numbers only and each field of its declared type
    (:func:`dna.generation.with_retrain` checks its keys and values)."""
    from dna.config_check import check_types
    from dna.generation import RetrainSettings

    raw = arguments.get("scale_retrain")
    if not isinstance(raw, str) or not raw.strip():
        return raw
    value = parse_json_value(raw, "--scale-retrain")
    if isinstance(value, dict):
        check_types(value, RetrainSettings, "--scale-retrain")
    return raw


def make_plan(args: argparse.Namespace, default_generations: int | None, presets: dict[str, dict] | None = None,
              extras: Extras | None = None) -> Plan:
    """Check the whole command line (raises UsageError / DnaError) before anything runs."""
    presets = presets or PRESETS
    extras = extras or Extras()
    from pipelines.cron import explain_cron, validate_cron

    host = args.host or os.environ.get("KFP_HOST") or None
    cron = None
    cron_text = None
    if args.schedule is not None:
        if not host:
            raise UsageError("--schedule needs a KFP server: give --host URL (or set KFP_HOST)")
        cron = validate_cron(args.schedule)
        cron_text = explain_cron(cron)
        if args.root:
            raise UsageError("--schedule with --root: every scheduled run would reuse that root and find the "
                             "first run's outputs; leave --root out so each run gets $DNA_RUN_ROOT/<run id>")
    if host and not host.startswith(("http://", "https://")):
        raise UsageError(f"--host {host!r}: expected a URL such as https://kfp.example.com")
    if args.image is not None and not args.image.strip():
        raise UsageError("--image: expected an image reference such as REGISTRY/dna-nas:TAG")
    gens = getattr(args, "generations", None)
    generations = default_generations if default_generations is not None else 1
    if gens is not None:
        generations = gens
    elif default_generations is not None:
        generations = presets[args.preset]["generations"]
    from dna.config_check import MAX_GENERATIONS

    if not 1 <= generations <= MAX_GENERATIONS:     # before a DAG of that many generations is built
        raise UsageError(f"--generations {generations}: expected an integer in 1..{MAX_GENERATIONS}")
    remote = bool(host or args.compile)
    mode = "schedule" if cron else "submit" if host else "compile" if args.compile else "local"
    if args.root:
        from dna.config_check import check_uri

        check_uri("--root", args.root)          # before a local path is made absolute
    if mode == "local":
        root = args.root or os.path.join("runs", time.strftime("%Y%m%d-%H%M%S"))
        from dna import storage

        root = root if storage.is_s3(root) else os.path.abspath(root)
    else:
        root = args.root or ""
    for key, _ in parse_set(args.set):
        head = key.split(".", 1)[0]
        if head in EXTRA_SECTIONS and head not in extras.sections:
            raise UsageError(f"--set {key}: this pipeline has no {head!r} settings (they belong to "
                             "pipelines/dna_pp.py)")
    d = build_run_config(args, root, generations, presets)
    cfg_d = dict(d)
    if not cfg_d["root"]:
        cfg_d["root"] = "s3://placeholder/validated-in-cluster"
    args_ = pipeline_arguments(args, json.dumps(d, sort_keys=True), presets)
    args_.update(extras.arguments(args, presets[args.preset]))
    extras.validate(cfg_d, args_, remote)
    _check_block_workers(args_["gpus_per_block"], d)
    if mode == "local" and os.environ.get("RAY_ADDRESS"):
        from pipelines.store_check import check_ray_address

        check_ray_address(os.environ["RAY_ADDRESS"], "RAY_ADDRESS")
    if mode == "local" and args_["gpus_per_block"] > 0:
        import torch

        if not torch.cuda.is_available():
            raise UsageError(f"--gpus-per-block {args_['gpus_per_block']}: this machine has no CUDA GPU for a local "
                             "run (use 0, or run on a cluster with --host)")
    return Plan(mode=mode, run_config=d, arguments=args_, generations=generations, host=host,
                compile_path=args.compile, cron=cron, cron_text=cron_text, run_name=args.run_name)


def _check_block_workers(gpus_per_block: int, run_config: dict) -> None:
    """More than one GPU per block trains data-parallel: each batch splits evenly over them."""
    batch = run_config["data"]["batch_size"]
    if gpus_per_block > 1 and batch % gpus_per_block:
        raise UsageError(f"--gpus-per-block {gpus_per_block}: data.batch_size {batch} must divide by it "
                         "(each block's batch is split over its GPUs)")
