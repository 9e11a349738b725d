"""The pipeline parameters of a command line (preset + flags): cluster resources, Ray, storage,
task CPU/memory (``--task-resource``) and the typed run parameters (from the run config)."""

import argparse
import json
from collections.abc import Sequence
from typing import Any

from pipelines.flags import UsageError, positive_int
from pipelines.presets import PRESETS


def pipeline_arguments(args: argparse.Namespace, run_config_json: str,
                       presets: dict[str, dict] | None = None) -> dict[str, Any]:
    """Every pipeline parameter's value (preset + flags)."""
    from pipelines.graph import K8S_PARAMETERS

    params = dict(K8S_PARAMETERS)
    params.update((presets or PRESETS)[args.preset]["params"])
    if args.gpus is not None:
        params["gpus"] = args.gpus
    if args.gpus_per_block is not None:
        params["gpus_per_block"] = args.gpus_per_block
    if args.fanout_gpus is not None:
        params["fanout_gpus"] = args.fanout_gpus
    if args.max_concurrent_blocks is not None:
        params["max_concurrent_blocks"] = args.max_concurrent_blocks
    if args.ray_address is not None:
        params["ray_address"] = args.ray_address
    if args.accelerator_type:
        params["accelerator_type"] = args.accelerator_type
    if args.storage_secret:
        params["storage_secret"] = args.storage_secret
    if args.node_selector:
        params["node_selector"] = parse_node_selector(args.node_selector)
    if args.toleration:
        params["tolerations"] = [parse_toleration(t) for t in args.toleration]
    if args.pvc:
        params["pvc_name"] = args.pvc
    if getattr(args, "scale_retrain", None) is not None:
        params["scale_retrain"] = args.scale_retrain
    for flag in ("gpus", "gpus_per_block", "fanout_gpus", "max_concurrent_blocks"):
        positive_int(params[flag], "--" + flag.replace("_", "-"), low=0)
    from pipelines.store_check import check_ray_address

    check_ray_address(params["ray_address"])
    from components.overrides import from_config
    from pipelines.task_settings import check_resources, parse_task_resources

    params.update(parse_task_resources(getattr(args, "task_resource", None) or []))
    check_resources(params)
    params.update(from_config(json.loads(run_config_json or "{}")))    # the typed run parameters agree with it
    if getattr(args, "reuse_root", False):
        params["reuse_root"] = True
    params["run_config"] = run_config_json
    return params


def parse_node_selector(items: Sequence[str]) -> dict[str, str]:
    out = {}
    for item in items:
        k, eq, v = item.partition("=")
        if not eq or not k:
            raise UsageError(f"--node-selector {item!r}: expected LABEL=VALUE, e.g. nvidia.com/gpu.present=true")
        out[k] = v
    return out


def parse_toleration(spec: str) -> dict[str, str]:
    """``KEY[=VALUE][:EFFECT]`` -> a toleration (``Exists`` without a value)."""
    effects = ("NoSchedule", "PreferNoSchedule", "NoExecute")
    body, colon, effect = spec.partition(":")
    key, eq, value = body.partition("=")
    if not key or (colon and effect not in effects):
        raise UsageError(f"--toleration {spec!r}: expected KEY[=VALUE][:EFFECT], EFFECT one of {', '.join(effects)} "
                         "(e.g. nvidia.com/gpu:NoSchedule)")
    t = {"key": key, "operator": "Equal" if eq else "Exists"}
    if eq:
        t["value"] = value
    if colon:
        t["effect"] = effect
    return t
