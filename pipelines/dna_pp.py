"""DNA++ (SPEC section 8) as a Kubeflow pipeline: a ViT search space, a CNN teacher trained jointly
with the ViT supernet of every block and without labels (Eq. 10-11), rating, then the final stage
(search -> ViT retrain -> transfer -> summary).

    python pipelines/dna_pp.py                               # run here (KFP local runner)
    python pipelines/dna_pp.py --compile dna_pp.yaml         # YAML for the KFP UI
    python pipelines/dna_pp.py --host https://KFP [--schedule '0 0 3 * * *']

Besides the run config (space, data, epochs via --epochs, retrain via --retrain-epochs ...) the
pipeline takes ``pp_config``: ``{"train": dna.ssl.PPTrainConfig fields, "retrain":
dna.retrain_vit.RetrainViTConfig fields}``; set single values with ``--set pp.train.lr=0.1``.
"""

import os
import sys

if __name__ == "__main__":  # run as a script: this folder must not shadow the `dna` package
    _here = os.path.dirname(os.path.abspath(__file__))
    sys.path[:] = [p for p in sys.path if os.path.abspath(p or os.curdir) != _here]
    sys.path.insert(0, os.path.dirname(_here))

import copy  # noqa: E402
import json  # noqa: E402

from pipelines import cli  # noqa: E402
from pipelines.flags import UsageError  # noqa: E402
from pipelines.graph import BuildOptions, build_pp_pipeline  # noqa: E402
from pipelines.plan import Extras  # noqa: E402
from pipelines.presets import SMOKE_TRANSFER  # noqa: E402
from pipelines.run_config import parse_set  # noqa: E402

NAME = "dna-pp"
DESCRIPTION = "DNA++: self-supervised block-wise ViT search with a jointly trained CNN teacher"
_PLAIN_RETRAIN = {"warmup_epochs": 0.0, "mixup": 0.0, "cutmix": 0.0, "reprob": 0.0}

PRESETS: dict[str, dict] = {
    "smoke": {
        "description": "vit-tiny on the built-in shapes at 32 px, CPU-sized steps (offline demo)",
        "generations": 1,
        "run": {
            "space": "vit-tiny",
            "data": {"uri": "builtin:shapes", "resolution": 32, "batch_size": 32, "train_size": 1024,
                     "val_size": 256, "rating_size": 64, "num_classes": 10},
            "teacher": {"model": "default"},
            "block_epochs": 6,
            "block_max_steps": None,
            "rate_max_batches": 1,
            "retrain": {"epochs": 20, "lr": 0.001, "sched": "cosine", "steps_per_epoch": None, "drop_rate": 0.0,
                        "drop_path_rate": 0.0, "label_smoothing": 0.0, "auto_augment": None},
            "transfer": ["seg", "det"],
            "transfer_epochs": 2,
            "transfer_options": SMOKE_TRANSFER,
        },
        "pp": {"train": {"mode": "dnapp", "lr": 0.2, "proj_dim": 64, "proj_hidden": 64},
               "retrain": dict(_PLAIN_RETRAIN)},
        "params": {"gpus": 0},
    },
    "cifar": {
        "description": "vit-tiny (patch 4) on CIFAR-10 as an ImageFolder (--data) at 32 px, one GPU per task",
        "generations": 1,
        "run": {
            "space": "vit-tiny",
            "data": {"resolution": 32, "batch_size": 256, "rating_size": 5000},
            "teacher": {"model": "default"},
            "block_epochs": 20,
            "rate_max_batches": None,
            "retrain": {"epochs": 100, "lr": None, "sched": "cosine", "drop_path_rate": 0.1, "label_smoothing": 0.1,
                        "auto_augment": "rand-m9-mstd0.5-inc1"},
            "transfer": [],
        },
        "pp": {"train": {"mode": "dnapp"}, "retrain": {}},
        "params": {"gpus": 1},
    },
    "imagenet": {
        "description": "the paper's DeiT-style ViT space at 224 px, EfficientNet-B1 teacher trained jointly, "
                       "20 epochs per cell (LARS, cosine), DeiT retraining",
        "generations": 1,
        "run": {
            "space": "vit",
            "data": {"resolution": 224, "batch_size": 256, "rating_size": 50000, "num_workers": 8},
            "teacher": {"model": "efficientnet_b1"},
            "block_epochs": 20,
            "rate_max_batches": None,
            "retrain": {"epochs": 300, "lr": None, "sched": "cosine", "drop_path_rate": 0.1, "label_smoothing": 0.1,
                        "auto_augment": "rand-m9-mstd0.5-inc1"},
            "transfer": [],
        },
        "pp": {"train": {"mode": "dnapp"}, "retrain": {}},
        "params": {"gpus": 1},
    },
}


class PPExtras(Extras):
    """``pp_config`` from the preset and ``--set pp.train.KEY=VALUE`` / ``pp.retrain.KEY=VALUE``."""

    sections = ("pp",)

    def arguments(self, args, preset: dict) -> dict:
        pp = copy.deepcopy(preset.get("pp") or {})
        for key, value in parse_set(args.set):
            parts = key.split(".")
            if parts[0] != "pp":
                continue
            if len(parts) < 3 or parts[1] not in ("train", "retrain"):
                raise UsageError(f"--set {key}: expected pp.train.KEY=VALUE or pp.retrain.KEY=VALUE")
            cur = pp.setdefault(parts[1], {})
            for p in parts[2:-1]:
                cur = cur.setdefault(p, {})
            cur[parts[-1]] = value
        return {"pp_config": json.dumps(pp, sort_keys=True)}

    def validate(self, run_config: dict, arguments: dict, remote: bool) -> None:
        from dna.config_check import check_pp_batches, check_pp_types
        from dna.dnapp import validate_pp
        from pipelines.run_config import load_run_config

        check_pp_types(arguments["pp_config"])
        cfg = validate_pp(load_run_config(run_config, remote), arguments["pp_config"], remote)
        check_pp_batches(cfg, arguments["pp_config"])


def build(generations: int = 1, opts: BuildOptions | None = None):
    """The DNA++ pipeline (one generation)."""
    return build_pp_pipeline(NAME, opts, DESCRIPTION)


def main(argv=None, **kw) -> int:
    return cli.main(argv, prog="pipelines/dna_pp.py", description=DESCRIPTION, build=build, presets=PRESETS,
                       extras=PPExtras(), **kw)


if __name__ == "__main__":
    sys.exit(main())
