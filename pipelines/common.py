"""What the pipeline scripts share: presets, argument parsing, and the four ways to use a pipeline.

- no KFP host: run the whole pipeline here with KFP's own local runner
  (``kfp.local.SubprocessRunner(use_venv=False)``: every component runs as a subprocess of this
  Python, the same code that runs in the cluster), then print the summary;
- ``--compile FILE``: write the pipeline YAML (upload it in the KFP UI); the preset's values are
  the parameters' defaults;
- ``--host URL`` (or ``KFP_HOST``): submit a run to a KFP API server and print its URL;
- ``--host URL --schedule CRON``: create a recurring run (six-field cron, seconds first).
"""

import argparse
import copy
import dataclasses
import datetime
import json
import os
import sys
import tempfile
import time
import warnings
from collections.abc import Callable, Sequence
from typing import Any

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# ----- presets -----------------------------------------------------------------------------------
# "run": overrides of dna.generation.RunConfig (nested dicts merge); "params": pipeline parameters;
# "generations": the DNA+ default. smoke is the default: the offline demo on a 2-core CPU
# (`make demo` = `python pipelines/dna_plus.py --generations 3`, measured in README.md).
# Transfer on 2 CPU cores: half the built-in train set, and a Faster R-CNN C4 head sized for 64 px
# images with 1-3 objects (7 x 7 RoIs, 32 sampled RoIs and 256 proposals per image, instead of
# torchvision's 14 x 14 / 512 / 2000 for 800 px COCO images: about 6x faster).
SMOKE_TRANSFER: dict[str, dict[str, Any]] = {
    "seg": {"train_size": 512},
    "det": {"train_size": 512, "epochs": 4, "lr": 0.02, "roi_size": 7, "rois_per_image": 32,
            "proposals_train": 256, "proposals_test": 100},
}

PRESETS: dict[str, dict[str, Any]] = {
    "smoke": {
        "description": "built-in shapes data at 64 px, tiny space and teacher, CPU-sized steps (offline demo)",
        "generations": 3,
        "run": {
            "space": "mbconv-tiny",
            "data": {"uri": "builtin:shapes", "resolution": 64, "batch_size": 32, "train_size": 2048,
                     "val_size": 256, "rating_size": 64, "num_classes": 10},
            "teacher": {"model": "tiny"},
            "teacher_train": {"epochs": 10, "opt": "adamw", "lr": 0.005, "sched": "cosine",
                              "steps_per_epoch": None, "drop_rate": 0.0, "drop_path_rate": 0.0,
                              "label_smoothing": 0.0},
            "block_epochs": 1,
            "block_max_steps": 8,
            "rate_max_batches": 1,
            "calib_batches": 1,
            "max_params": 2.5e5,
            "scale_to": "b1",
            "retrain": {"epochs": 14, "opt": "adamw", "lr": 0.005, "sched": "cosine", "steps_per_epoch": None,
                        "drop_rate": 0.0, "drop_path_rate": 0.0, "label_smoothing": 0.0},
            "transfer": ["seg", "det"],
            "transfer_epochs": 2,
            "transfer_options": SMOKE_TRANSFER,
        },
        "params": {"gpus": 0, "gpus_per_block": 0, "fanout_gpus": 0, "max_concurrent_blocks": 0,
                   "scale_retrain": json.dumps({"epochs": 6})},
    },
    "cifar": {
        "description": "CIFAR-10 as an ImageFolder (--data, train/ and val/ class folders) at 32 px, "
                       "the paper's space, a teacher trained on the data, one GPU per task",
        "generations": 2,
        "run": {
            "space": "mbconv",
            "data": {"resolution": 32, "batch_size": 128, "rating_size": 5000},
            "teacher": {"model": "efficientnet_b0"},
            "teacher_train": {"epochs": 30, "opt": "adamw", "lr": 0.003, "sched": "cosine"},
            "block_epochs": 20,
            "rate_max_batches": None,
            "calib_batches": 2,
            "scale_to": "b1",
            "retrain": {"epochs": 50, "opt": "adamw", "lr": 0.003, "sched": "cosine"},
            "transfer": [],
        },
        "params": {"gpus": 1, "gpus_per_block": 1, "fanout_gpus": 0, "max_concurrent_blocks": 0},
    },
    "imagenet": {
        "description": "ImageNet as an ImageFolder (--data) at 224 px, the paper's recipe: EfficientNet-B1 "
                       "teacher (--teacher-checkpoint, or pretrained timm weights), 20 epochs per cell, "
                       "params <= 5.3M, paper retraining",
        "generations": 2,
        "run": {
            "space": "mbconv",
            "data": {"resolution": 224, "batch_size": 256, "rating_size": 50000, "num_workers": 8},
            "teacher": {"model": "efficientnet_b1", "pretrained": True},
            "block_epochs": 20,
            "rate_max_batches": None,
            "calib_batches": 2,
            "max_params": 5.3e6,
            "scale_to": "b1",
            "retrain": {"epochs": 350, "opt": "rmsproptf", "lr": None, "sched": "step",
                        "auto_augment": "rand-m9-mstd0.5", "ema": True},
            "transfer": [],
        },
        "params": {"gpus": 1, "gpus_per_block": 1, "fanout_gpus": 0, "max_concurrent_blocks": 0},
    },
}


class UsageError(ValueError):
    """Bad command-line input (reported before any work starts)."""


# ----- building the run config ---------------------------------------------------------------------
def _merge(base: dict, over: dict) -> dict:
    out = dict(base)
    for k, v in over.items():
        if isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = _merge(out[k], v)
        else:
            out[k] = copy.deepcopy(v)
    return out


# run config values that are open maps (their keys are checked by RunConfig.validate)
OPEN_SECTIONS = ("transfer_options",)


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


def parse_set(items: Sequence[str]) -> list[tuple[str, Any]]:
    """``KEY=VALUE`` (VALUE as JSON, else a string) -> pairs."""
    out = []
    for item in items or ():
        key, eq, raw = item.partition("=")
        if not eq or not key.strip():
            raise UsageError(f"--set {item!r}: expected KEY=VALUE, e.g. data.train_size=512")
        try:
            value = json.loads(raw)
        except json.JSONDecodeError:
            value = raw
        out.append((key.strip(), value))
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


def _positive_int(value: int | None, flag: str, low: int = 1) -> None:
    if value is not None and value < low:
        raise UsageError(f"{flag} {value}: expected an integer >= {low}")


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
    _positive_int(args.epochs, "--epochs")
    _positive_int(args.retrain_epochs, "--retrain-epochs")
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
        if key.split(".", 1)[0] not in EXTRA_SECTIONS:
            _set_path(d, key, value)
    return d


# --set keys starting with one of these go to a pipeline's extra config (e.g. DNA++'s pp_config).
EXTRA_SECTIONS = ("pp",)



def validate_run_config(d: dict, remote: bool, builtin_teachers: tuple[str, ...] | None = None) -> Any:
    """A checked :class:`dna.generation.RunConfig` (raises :class:`dna.errors.DnaError`).

    ``remote``: the run happens in a cluster, so URIs are not opened from here (this machine may
    have no access to the cluster's storage). ``builtin_teachers``: the teacher names that stand
    for the pipeline's own default teacher, which takes no weights (default: DNA's tiny teacher)."""
    import timm

    from dna import storage
    from dna.errors import DnaError
    from dna.generation import TINY_TEACHERS, RunConfig, _retrain_config

    builtin_teachers = TINY_TEACHERS if builtin_teachers is None else builtin_teachers
    cfg = RunConfig.from_dict(d)
    checkpoint = cfg.teacher.checkpoint
    model = cfg.teacher.model
    if model in builtin_teachers and (checkpoint or cfg.teacher.pretrained):
        raise DnaError("--teacher-checkpoint / pretrained need --teacher: the timm name or architecture .json "
                       "URI the weights belong to")
    if model.endswith(".json"):
        if not remote:
            storage.check_readable(model)
    elif model not in builtin_teachers and not timm.is_model(model):
        raise DnaError(f"teacher {model!r}: expected {' or '.join(repr(t) for t in builtin_teachers if t)} (the "
                       "default), a timm model name (e.g. efficientnet_b1) or an architecture .json URI")
    if remote and checkpoint:
        cfg.teacher.checkpoint = None
    try:
        cfg.validate()
    finally:
        cfg.teacher.checkpoint = checkpoint
    if not cfg.data.is_builtin and not remote:
        storage.check_readable(cfg.data.uri)
    for name in ("teacher_train", "retrain"):
        try:
            _retrain_config(getattr(cfg, name), "model.json", "out", cfg.data, cfg.seed, cfg.device).validate()
        except DnaError as exc:
            raise DnaError(f"{name}: {exc}") from None
    if cfg.transfer_epochs < 1:
        raise DnaError(f"transfer_epochs={cfg.transfer_epochs}: expected >= 1")
    return cfg


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
        _positive_int(params[flag], "--" + flag.replace("_", "-"), low=0)
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


# ----- the command line ------------------------------------------------------------------------------
def make_parser(prog: str, description: str, generations_flag: bool,
                presets: dict[str, dict] | None = None) -> argparse.ArgumentParser:
    from dna.cost_registry import COSTS

    p = argparse.ArgumentParser(prog=prog, description=description,
                                formatter_class=argparse.RawDescriptionHelpFormatter, epilog=EPILOG)
    run = p.add_argument_group("the run")
    run.add_argument("--preset", choices=sorted(presets or PRESETS), default="smoke",
                     help="settings to start from (default smoke: the offline CPU demo); flags override them")
    run.add_argument("--root", default=None,
                     help="run root URI (local folder or s3://bucket/prefix) holding every artifact; default "
                          "./runs/<timestamp> locally, $DNA_RUN_ROOT/<run id> in the cluster. The same root "
                          "again resumes a half-finished run and reuses finished stages")
    run.add_argument("--data", default=None, help="data: builtin:shapes or an ImageFolder root (local or s3://)")
    run.add_argument("--teacher", default=None,
                     help="generation-0 teacher: 'tiny', a timm model name or an architecture .json URI")
    run.add_argument("--teacher-checkpoint", default=None, help="teacher weights URI (else it is trained here)")
    run.add_argument("--space", default=None, help="search space name or space .json URI")
    for c in COSTS:
        run.add_argument(c.flag, default=None, help=c.help)
    run.add_argument("--epochs", type=int, default=None, help="epochs per block supernet")
    run.add_argument("--retrain-epochs", type=int, default=None, help="epochs of the final retraining")
    run.add_argument("--transfer", default=None, help="transfer tasks, comma-separated (seg,det,cls) or 'none'")
    run.add_argument("--seed", type=int, default=None, help="random seed")
    if generations_flag:
        run.add_argument("--generations", type=int, default=None,
                         help="DNA+ generations (teacher scaled between them); default from the preset")
        run.add_argument("--scale-retrain", default=None, metavar="JSON",
                         help="retrain settings of the scaled teachers only, e.g. '{\"epochs\": 30}' "
                              "(default: the preset's; empty: the run's retrain settings)")
    run.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                     help="any run config value (dna.generation.RunConfig), dotted, JSON values: "
                          "--set data.train_size=512 --set retrain.lr=0.01 (repeatable)")
    k8s = p.add_argument_group("cluster resources (pipeline parameters)")
    k8s.add_argument("--gpus", type=int, default=None, help="GPUs of each training task (teacher, retrain, scale, transfer)")
    k8s.add_argument("--gpus-per-block", type=int, default=None,
                     help="GPUs per block job on Ray (0: CPU); more than 1 needs data-parallel block training")
    k8s.add_argument("--fanout-gpus", type=int, default=None,
                     help="GPUs of the supernet/rating tasks' own pods (a Ray started inside them)")
    k8s.add_argument("--max-concurrent-blocks", type=int, default=None, help="cap on blocks running at once (0: no cap)")
    k8s.add_argument("--ray-address", default=None,
                     help="Ray for the block fan-out: http://dna-ray-head-svc:8265 (KubeRay, Jobs API), "
                          "ray://..., or empty for a Ray inside the task (default: RAY_ADDRESS of dna-settings)")
    k8s.add_argument("--accelerator-type", default=None, help="accelerator resource name (default nvidia.com/gpu)")
    k8s.add_argument("--storage-secret", default=None,
                     help="Secret with the S3 credentials (mlpipeline-minio-artifact: keys accesskey/secretkey; "
                          "dna-storage: AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY)")
    k8s.add_argument("--node-selector", action="append", default=[], metavar="LABEL=VALUE",
                     help="node selector of the training tasks (repeatable)")
    k8s.add_argument("--toleration", action="append", default=[], metavar="KEY[=VALUE][:EFFECT]",
                     help="toleration of the training tasks (repeatable)")
    k8s.add_argument("--pvc", default=None, help="PersistentVolumeClaim to mount in every task (at --pvc-mount)")
    k8s.add_argument("--pvc-mount", default="/mnt/dna", help="mount path of --pvc (default /mnt/dna)")
    k8s.add_argument("--image", default=None, help="component image (default $DNA_IMAGE or dna-nas:latest)")
    how = p.add_argument_group("where it runs (default: here, with KFP's local runner)")
    how.add_argument("--compile", metavar="FILE", default=None, help="write the pipeline YAML (for the KFP UI)")
    how.add_argument("--host", default=None, help="KFP API server URL (default $KFP_HOST): submit a run")
    how.add_argument("--namespace", default=None, help="KFP namespace (multi-user Kubeflow)")
    how.add_argument("--experiment", default="dna", help="KFP experiment (default dna)")
    how.add_argument("--run-name", default=None, help="name of the run / recurring run")
    how.add_argument("--schedule", metavar="CRON", default=None,
                     help="with --host: a recurring run; KFP cron has 6 fields, seconds first: '0 0 3 * * *' "
                          "= every day at 03:00")
    how.add_argument("--no-cache", action="store_true", help="disable KFP caching for the submitted run")
    how.add_argument("--print-config", action="store_true", help="print the run config and parameters, run nothing")
    how.add_argument("--verbose", action="store_true", help="local run: also show each task's executor input")
    return p


EPILOG = """examples:
  python pipelines/dna_plus.py --generations 3                      # local run (make demo)
  python pipelines/dna.py --compile dna.yaml                        # upload dna.yaml in the KFP UI
  python pipelines/dna_plus.py --preset cifar --data s3://data/cifar10 --host https://kfp.example.com
  python pipelines/dna_plus.py --host https://kfp.example.com --schedule '0 0 3 * * *'
"""


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

    def arguments(self, args: argparse.Namespace, preset: dict) -> dict[str, Any]:
        return {}

    def validate(self, run_config: dict, arguments: dict[str, Any], remote: bool) -> None:
        cfg = validate_run_config(run_config, remote=remote)
        if arguments.get("scale_retrain"):
            from components._runtime import with_retrain
            from dna.generation import _retrain_config

            scaled = with_retrain(cfg, arguments["scale_retrain"]).retrain
            _retrain_config(scaled, "model.json", "out", cfg.data, cfg.seed, cfg.device).validate()


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
    if generations < 1:
        raise UsageError(f"--generations {generations}: expected an integer >= 1")
    remote = bool(host or args.compile)
    mode = "schedule" if cron else "submit" if host else "compile" if args.compile else "local"
    if mode == "local":
        root = args.root or os.path.join("runs", time.strftime("%Y%m%d-%H%M%S"))
        from dna import storage

        root = root if storage.is_s3(root) else os.path.abspath(root)
    else:
        root = args.root or ""
    d = build_run_config(args, root, generations, presets)
    cfg_d = dict(d)
    if not cfg_d["root"]:
        cfg_d["root"] = "s3://placeholder/validated-in-cluster"
    args_ = pipeline_arguments(args, json.dumps(d, sort_keys=True), presets)
    args_.update(extras.arguments(args, presets[args.preset]))
    extras.validate(cfg_d, args_, remote)
    if mode == "local" and args_["gpus_per_block"] > 0:
        import torch

        if not torch.cuda.is_available():
            raise UsageError(f"--gpus-per-block {args_['gpus_per_block']}: this machine has no CUDA GPU for a local "
                             "run (use 0, or run on a cluster with --host)")
    return Plan(mode=mode, run_config=d, arguments=args_, generations=generations, host=host,
                compile_path=args.compile, cron=cron, cron_text=cron_text, run_name=args.run_name)


# ----- compile / submit / schedule -------------------------------------------------------------------
def compile_pipeline(pipeline_func, path: str, arguments: dict[str, Any]) -> str:
    """Write the pipeline YAML with ``arguments`` as the parameters' defaults."""
    from kfp import compiler

    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    compiler.Compiler().compile(pipeline_func, package_path=path, pipeline_parameters=dict(arguments))
    return path


def make_client(host: str, namespace: str | None = None):
    import kfp

    return kfp.Client(host=host, namespace=namespace)


def run_url(host: str, run_id: str) -> str:
    return f"{host.rstrip('/')}/#/runs/details/{run_id}"


def recurring_run_url(host: str, recurring_run_id: str) -> str:
    return f"{host.rstrip('/')}/#/recurringrun/details/{recurring_run_id}"


def submit(client, pipeline_func, arguments: dict[str, Any], host: str, experiment: str,
           run_name: str | None = None, namespace: str | None = None, enable_caching: bool | None = None) -> str:
    """One run on the KFP server; returns its URL."""
    name = run_name or f"{pipeline_func.name} {datetime.datetime.now():%Y-%m-%d %H-%M-%S}"
    result = client.create_run_from_pipeline_func(
        pipeline_func, arguments=dict(arguments), run_name=name, experiment_name=experiment,
        namespace=namespace, enable_caching=enable_caching)
    return run_url(host, result.run_id)


def schedule(client, pipeline_func, arguments: dict[str, Any], host: str, cron: str, experiment: str,
             job_name: str | None = None, namespace: str | None = None, enable_caching: bool | None = None,
             description: str | None = None) -> str:
    """A recurring run (KFP six-field cron); returns its URL."""
    from pipelines.cron import explain_cron, validate_cron

    cron = validate_cron(cron)
    job_name = job_name or f"{pipeline_func.name} ({cron})"
    with tempfile.TemporaryDirectory() as tmp:
        path = compile_pipeline(pipeline_func, os.path.join(tmp, "pipeline.yaml"), arguments)
        exp = client.create_experiment(name=experiment, namespace=namespace)
        rr = client.create_recurring_run(
            experiment_id=exp.experiment_id, job_name=job_name,
            description=description or f"{pipeline_func.name}: {explain_cron(cron)}",
            cron_expression=cron, max_concurrency=1, no_catchup=True, params=dict(arguments),
            pipeline_package_path=path, enable_caching=enable_caching)
    return recurring_run_url(host, rr.recurring_run_id)


# ----- local run ---------------------------------------------------------------------------------------
class _HideExecutorInput:
    """A stdout filter for local runs: drops the JSON executor input KFP's executor logs for every
    task (tens of lines each; it is in the task's folder under ``<root>/kfp/``)."""

    def __init__(self, stream):
        self.stream, self.skip, self.buf = stream, False, ""

    def write(self, text: str) -> int:
        self.buf += text
        while "\n" in self.buf:
            line, self.buf = self.buf.split("\n", 1)
            if self.skip:
                self.skip = line.rstrip() != "    }"
            elif line.rstrip().endswith("Got executor_input:"):
                self.skip = True
            else:
                self.stream.write(line + "\n")
        return len(text)

    def flush(self) -> None:
        if self.buf and not self.skip:
            self.stream.write(self.buf)
        self.buf = ""
        self.stream.flush()

    def __getattr__(self, name):
        return getattr(self.stream, name)


def run_local(pipeline_func, arguments: dict[str, Any], root: str, log: Callable[[str], Any] = print,
              verbose: bool = False) -> dict:
    """The whole pipeline here, on KFP's local runner; returns the run's summary.json."""
    import kfp.local

    from dna import storage

    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    # One torch thread per process: tasks and Ray workers share the few local cores, and torch's
    # default (a thread per core, spinning) is many times slower on a busy CPU.
    os.environ.setdefault("DNA_TORCH_THREADS", "1")
    os.environ.setdefault("OMP_NUM_THREADS", os.environ["DNA_TORCH_THREADS"])
    os.environ["PYTHONPATH"] = os.pathsep.join(p for p in (REPO_ROOT, os.environ.get("PYTHONPATH", "")) if p)
    if os.path.isfile("dna.py") or os.path.abspath(os.getcwd()) == os.path.join(REPO_ROOT, "pipelines"):
        os.chdir(REPO_ROOT)        # component subprocesses import `dna` from the working directory
    local_root = storage.local_path(root) if not storage.is_s3(root) else None
    kfp_root = os.path.join(local_root, "kfp") if local_root else tempfile.mkdtemp(prefix="dna-kfp-")
    kfp.local.init(runner=kfp.local.SubprocessRunner(use_venv=False), pipeline_root=kfp_root,
                   raise_on_error=True)
    warnings.filterwarnings("ignore", message=".*non-Python base image.*")
    warnings.filterwarnings("ignore", message=".*have no effect in the current local runner.*")
    t0 = time.time()
    log(f"running pipeline {pipeline_func.name!r} locally (KFP local runner, one subprocess per task); "
        f"run root {root}")
    ray = None
    if not arguments.get("ray_address") and not os.environ.get("RAY_ADDRESS") and "ray_address" in arguments:
        ray = start_local_ray(log)
    stdout = sys.stdout
    if not verbose:
        sys.stdout = _HideExecutorInput(stdout)
    try:
        pipeline_func(**arguments)
    finally:
        if sys.stdout is not stdout:
            sys.stdout.flush()
            sys.stdout = stdout
        if ray is not None:
            ray.shutdown()
            os.environ.pop("RAY_ADDRESS", None)
    summary = storage.read_json(storage.join(root, "summary.json"))
    summary["seconds"] = time.time() - t0
    summary["kfp_outputs"] = kfp_root
    return summary


def start_local_ray(log: Callable[[str], Any] = print):
    """One local Ray for every task of a local run (``RAY_ADDRESS`` for the task subprocesses),
    instead of a Ray started and stopped by each fan-out task; stopped when the run ends."""
    import ray

    from components.ray_blocks import init_local_ray

    init_local_ray(log_to_driver=False)
    os.environ["RAY_ADDRESS"] = ray.get_runtime_context().gcs_address
    log(f"local Ray for the block fan-outs: {os.environ['RAY_ADDRESS']}")
    return ray


def format_summary(s: dict) -> str:
    from components.reports import human

    final = s.get("final") or {}
    best = final.get("search") or {}
    acc = final.get("retrain") or {}
    lines = [f"finished in {s.get('seconds', 0):.0f} s, {len(s.get('generations', []))} generation(s)", ""]
    if best:
        lines.append("searched architecture (last generation):")
        for b in best.get("blocks", []):
            lines.append(f"  block {b['block']}: cell {b['cell']}  {b['ops']}")
        lines.append(f"  params {best['params']:,} ({human(best['params'])}), FLOPs {best['flops']:,} "
                     f"({human(best['flops'])}), summed block loss {best['loss']:.4f}")
    if acc:
        lines.append(f"retrained: top-1 {acc.get('top1', float('nan')):.2f}% (top-5 {acc.get('top5', float('nan')):.2f}%)"
                     f" after {acc.get('epochs')} epochs")
    for task, m in (final.get("transfer") or {}).items():
        nums = ", ".join(f"{k} {v:.4g}" for k, v in m.items() if isinstance(v, float)
                         and not isinstance(v, bool) and not k.endswith(("_s", "time", "lr")))
        lines.append(f"transfer {task}: {nums}")
    for g in s.get("generations", []):
        sc = (g.get("scaled") or {}).get("metrics")
        extra = f"; scaled teacher top-1 {sc['top1']:.2f}%" if sc else ""
        gs = g.get("search") or {}
        lines.append(f"gen {g['generation']}: teacher {g.get('teacher', {}).get('model', '?')}; searched "
                     f"loss {gs.get('loss', float('nan')):.4f}, params {human(gs.get('params'))}{extra}")
    lines += ["", f"run root: {s.get('root')}"]
    for k, v in (s.get("artifacts") or {}).items():
        lines.append(f"  {k}: {v}")
    if s.get("kfp_outputs"):
        lines.append(f"  KFP local outputs (task artifacts, reports): {s['kfp_outputs']}")
    return "\n".join(lines)


# ----- main ----------------------------------------------------------------------------------------------
def main(argv: Sequence[str] | None, prog: str, description: str,
         build: Callable[[int, Any], Any], default_generations: int | None = None,
         client_factory: Callable[..., Any] = make_client, out=None, presets: dict[str, dict] | None = None,
         extras: Extras | None = None) -> int:
    """The scripts' entry point; returns the exit status (2 for bad input)."""
    from dna.errors import DnaError
    from pipelines.cron import CronError
    from pipelines.graph import BuildOptions

    out = out or sys.stdout
    parser = make_parser(prog, description, generations_flag=default_generations is not None, presets=presets)
    args = parser.parse_args(argv)
    try:
        plan = make_plan(args, default_generations, presets, extras)
        opts = BuildOptions(image=args.image, pvc_mount=args.pvc_mount if args.pvc else None)
        opts = opts.with_secret(plan.arguments["storage_secret"])
        pipeline_func = build(plan.generations, opts)
        inputs = set(pipeline_func.component_spec.inputs or {})
        plan.arguments = {k: v for k, v in plan.arguments.items() if k in inputs}
    except (UsageError, DnaError, CronError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if args.print_config:
        print(json.dumps({"mode": plan.mode, "generations": plan.generations, "arguments":
                          {**plan.arguments, "run_config": plan.run_config}}, indent=1), file=out)
        return 0
    if plan.compile_path:
        compile_pipeline(pipeline_func, plan.compile_path, plan.arguments)
        print(f"wrote {plan.compile_path}: upload it in the KFP UI (Pipelines > Upload pipeline); the "
              f"'{args.preset}' preset is every parameter's default", file=out)
    if plan.mode == "schedule":
        client = client_factory(plan.host, args.namespace)
        url = schedule(client, pipeline_func, plan.arguments, plan.host, plan.cron, args.experiment,
                       job_name=plan.run_name, namespace=args.namespace,
                       enable_caching=False if args.no_cache else None)
        print(f"recurring run created: {plan.cron!r} runs {plan.cron_text} (scheduler time zone, usually UTC)",
              file=out)
        print(f"each run stores its artifacts under $DNA_RUN_ROOT/<run id>\n{url}", file=out)
    elif plan.mode == "submit":
        client = client_factory(plan.host, args.namespace)
        url = submit(client, pipeline_func, plan.arguments, plan.host, args.experiment, run_name=plan.run_name,
                     namespace=args.namespace, enable_caching=False if args.no_cache else None)
        root = plan.run_config["root"] or "$DNA_RUN_ROOT/<run id>"
        print(f"submitted; run root {root}\n{url}", file=out)
    elif plan.mode == "local":
        try:
            summary = run_local(pipeline_func, plan.arguments, plan.run_config["root"],
                                log=lambda m: print(m, file=out, flush=True), verbose=args.verbose)
        except RuntimeError as exc:
            print(f"error: {exc}\nthe run root {plan.run_config['root']} keeps every finished stage: run the same "
                  "command with --root to resume", file=sys.stderr)
            return 1
        print("\n" + format_summary(summary), file=out)
    return 0
