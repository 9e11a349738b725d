"""The pipeline scripts' command line: every flag, and the error for bad command-line input."""

import argparse

from pipelines.presets import PRESETS


class UsageError(ValueError):
    """Bad command-line input (reported before any work starts)."""


def positive_int(value: int | None, flag: str, low: int = 1) -> None:
    if value is not None and value < low:
        raise UsageError(f"{flag} {value}: expected an integer >= {low}")


def make_parser(prog: str, description: str, generations_flag: bool,
                presets: dict[str, dict] | None = None) -> argparse.ArgumentParser:
    from dna.cli._help import RawDescriptionDefaultsFormatter, add_version
    from dna.cost_registry import COSTS

    # every option's help says its default (DefaultsFormatter); None mostly means "the preset's"
    p = argparse.ArgumentParser(prog=prog, description=description,
                                formatter_class=RawDescriptionDefaultsFormatter, epilog=EPILOG)
    add_version(p)
    run = p.add_argument_group("the run")
    run.add_argument("--preset", choices=sorted(presets or PRESETS), default="smoke",
                     help="settings to start from (default smoke: the offline CPU demo); flags override them")
    run.add_argument("--root", default=None,
                     help="run root URI (local folder or s3://bucket/prefix) holding every artifact; default "
                          "./runs/<timestamp> locally, $DNA_RUN_ROOT/<run id> in the cluster. The same root "
                          "again resumes a half-finished run and reuses finished stages")
    run.add_argument("--reuse-root", action="store_true",
                     help="run on a --root whose stored config.json differs from this run's (else refused, "
                          "naming the differing keys): its finished stages are reused as they are")
    run.add_argument("--data", default=None, help="data: builtin:shapes or an ImageFolder root (local or s3://) (default: the preset's)")
    run.add_argument("--teacher", default=None,
                     help="generation-0 teacher: 'tiny', a timm model name or an architecture .json URI "
                          "(default: the preset's)")
    run.add_argument("--teacher-checkpoint", default=None, help="teacher weights URI (default: none, the teacher is trained here)")
    run.add_argument("--space", default=None, help="search space name or space .json URI (default: the preset's)")
    for c in COSTS:
        run.add_argument(c.flag, default=None, help=f"{c.help} (default: the preset's, mostly no limit)")
    run.add_argument("--epochs", type=int, default=None, help="epochs per block supernet (default: the preset's)")
    run.add_argument("--retrain-epochs", type=int, default=None, help="epochs of the final retraining (default: the preset's)")
    run.add_argument("--transfer", default=None, help="transfer tasks, comma-separated (seg,det,cls) or 'none' (default: the preset's)")
    run.add_argument("--seed", type=int, default=None, help="random seed (default: the preset's)")
    if generations_flag:
        run.add_argument("--generations", type=int, default=None,
                         help="DNA+ generations (teacher scaled between them); default from the preset")
        run.add_argument("--scale-retrain", default=None, metavar="JSON",
                         help="retrain settings of the scaled teachers only, e.g. '{\"epochs\": 30}' "
                              "(default: the preset's; empty: the run's retrain settings)")
    run.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                     help="any run config value (dna.generation.RunConfig), dotted, JSON values: "
                          "--set data.train_size=512 --set retrain.lr=0.01 (repeatable; default: none)")
    k8s = p.add_argument_group("cluster resources (pipeline parameters)")
    k8s.add_argument("--gpus", type=int, default=None, help="GPUs of each training task (teacher, retrain, scale, transfer) (default: the preset's)")
    k8s.add_argument("--gpus-per-block", type=int, default=None,
                     help="GPUs per block job on Ray (0: CPU); more than 1 needs data-parallel block training "
                          "(default: the preset's)")
    k8s.add_argument("--fanout-gpus", type=int, default=None,
                     help="GPUs of the supernet/rating tasks' own pods (a Ray started inside them) (default: the preset's)")
    k8s.add_argument("--max-concurrent-blocks", type=int, default=None,
                     help="blocks trained/rated at once on Ray; 0: as many as the Ray cluster's CPUs/GPUs fit, from "
                          "what one block needs; a number overrides that (default: the preset's, 0 in every preset)")
    k8s.add_argument("--ray-address", default=None,
                     help="Ray for the block fan-out: http://dna-ray-head-svc:8265 (KubeRay, Jobs API), "
                          "ray://..., or empty for a Ray inside the task (default: RAY_ADDRESS of dna-settings)")
    k8s.add_argument("--accelerator-type", default=None, help="accelerator resource name (default nvidia.com/gpu)")
    k8s.add_argument("--storage-secret", default=None,
                     help="Secret with the S3 credentials (mlpipeline-minio-artifact: keys accesskey/secretkey; "
                          "dna-storage: AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY; default: the preset's)")
    k8s.add_argument("--node-selector", action="append", default=[], metavar="LABEL=VALUE",
                     help="node selector of the training tasks (repeatable; default: none)")
    k8s.add_argument("--toleration", action="append", default=[], metavar="KEY[=VALUE][:EFFECT]",
                     help="toleration of the training tasks (repeatable; default: none)")
    k8s.add_argument("--pvc", default=None, help="PersistentVolumeClaim to mount in every task (at --pvc-mount; default: none)")
    k8s.add_argument("--pvc-mount", default="/mnt/dna", help="mount path of --pvc (default /mnt/dna)")
    k8s.add_argument("--task-resource", action="append", default=[], metavar="KIND.FIELD=VALUE",
                     help="CPU/memory of a task kind (light: data, search, summary; train; fanout), FIELD "
                          "cpu_request|cpu_limit|memory_request|memory_limit, e.g. train.memory_limit=64Gi "
                          "(repeatable; defaults: pipelines/task_settings.py)")
    k8s.add_argument("--task-timeout", action="append", default=[], metavar="KIND=DURATION",
                     help="timeout of a task kind, fixed in the YAML, e.g. train=3d (defaults light=6h, "
                          "train=14d, fanout=7d; repeatable)")
    k8s.add_argument("--retries", type=int, default=None,
                     help="retries of the training and fan-out tasks, fixed in the YAML (default 2)")
    k8s.add_argument("--shm-size", default=None,
                     help="size limit of the memory-backed /dev/shm of training and fan-out tasks "
                          "(default 8Gi; none: no limit)")
    k8s.add_argument("--image", default=None, help="component image (default $DNA_IMAGE or dna-nas:<package version>)")
    how = p.add_argument_group("where it runs (default: here, with KFP's local runner)")
    how.add_argument("--compile", metavar="FILE", default=None, help="write the pipeline YAML (for the KFP UI) instead of running (default: run)")
    how.add_argument("--host", default=None, help="KFP API server URL (default $KFP_HOST): submit a run")
    how.add_argument("--namespace", default=None, help="KFP namespace (multi-user Kubeflow; default: the client's)")
    how.add_argument("--experiment", default="dna", help="KFP experiment (default dna)")
    how.add_argument("--run-name", default=None, help="name of the run / recurring run (default: KFP's, from the pipeline name and time)")
    how.add_argument("--schedule", metavar="CRON", default=None,
                     help="with --host: a recurring run; KFP cron has 6 fields, seconds first: '0 0 3 * * *' "
                          "= every day at 03:00 (default: a single run)")
    how.add_argument("--no-cache", action="store_true", help="disable KFP caching for the submitted run")
    how.add_argument("--print-config", action="store_true", help="print the run config and parameters, run nothing")
    how.add_argument("--verbose", action="store_true",
                     help="local run: show everything: each task's executor input and Ray's own output (worker "
                          "logs, Ray Train and Tune progress); default: one line per block event")
    return p


EPILOG = """examples:
  python pipelines/dna_plus.py --generations 3                      # local run (make demo)
  python pipelines/dna.py --compile dna.yaml                        # upload dna.yaml in the KFP UI
  python pipelines/dna_plus.py --preset cifar --data s3://data/cifar10 --host https://kfp.example.com
  python pipelines/dna_plus.py --host https://kfp.example.com --schedule '0 0 3 * * *'
"""
