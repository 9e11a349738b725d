"""The pipelines' presets: the settings a run starts from (its flags override them)."""

import json
from typing import Any

# "run": overrides of dna.generation.RunConfig (nested dicts merge); "params": pipeline parameters;
# "generations": the DNA+ default. smoke is the default: the offline demo on a 2-core CPU
# (`make demo` = `python pipelines/dna_plus.py --generations 3`, measured in README.md).
# Transfer on 2 CPU cores: a quarter of the built-in train set, and a Faster R-CNN C4 head sized for
# 64 px images with 1-3 objects (7 x 7 RoIs, 32 sampled RoIs and 256 proposals per image, instead of
# torchvision's 14 x 14 / 512 / 2000 for 800 px COCO images: about 6x faster); sized down to pay
# for the demo's random-architecture baselines.
SMOKE_TRANSFER: dict[str, dict[str, Any]] = {
    "seg": {"train_size": 256},
    "det": {"train_size": 256, "epochs": 3, "lr": 0.02, "roi_size": 7, "rois_per_image": 32,
            "proposals_train": 256, "proposals_test": 100},
}
# The smoke preset's trainings (benchmarks/RESULTS.md, "Demo settings"): the generation-0 teacher sees
# 6,144 images for 4 epochs (a teacher trained on more data than the search, as a pretrained one is;
# on 2,048 it overfits at 77%); the search, the scaled teachers (6 epochs) and the final net (14) use
# the run's 2,048. A random-architecture twin per generation is retrained with the searched net's recipe.
# zero_head: every training starts its classifier at zero (timm's init, sized for 1000 classes, held
# the old teacher at 42%). 256 val images: with 512 (less noise) the demo took 15 min 10 s, with 256
# 16 min 16 s (machine noise); both are at or over the 15-minute budget, see "Demo: what 15 minutes
# on 2 cores buys" in benchmarks/RESULTS.md.

PRESETS: dict[str, dict[str, Any]] = {
    "smoke": {
        "description": "built-in shapes data at 64 px, tiny space and teacher, "
                       "CPU-sized steps, a random-architecture baseline per generation (offline demo)",
        "generations": 3,
        "run": {
            "space": "mbconv-tiny",
            "data": {"uri": "builtin:shapes", "resolution": 64, "batch_size": 32, "train_size": 2048,
                     "val_size": 256, "rating_size": 64, "num_classes": 10},
            "teacher": {"model": "tiny"},
            "teacher_train": {"epochs": 4, "train_size": 6144, "zero_head": True, "opt": "adamw", "lr": 0.005,
                              "sched": "cosine",
                              "steps_per_epoch": None, "drop_rate": 0.0, "drop_path_rate": 0.0,
                              "label_smoothing": 0.0},
            "block_epochs": 1,
            "block_max_steps": 8,
            "rate_max_batches": 1,
            "calib_batches": 1,
            "max_params": 2.5e5,
            "scale_to": "b1",
            "retrain": {"epochs": 14, "zero_head": True, "opt": "adamw", "lr": 0.005, "sched": "cosine",
                        "steps_per_epoch": None,
                        "drop_rate": 0.0, "drop_path_rate": 0.0, "label_smoothing": 0.0},
            "random_baseline": True,
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
            "random_baseline": False,       # a second 350-epoch retraining per generation: opt in
        },
        "params": {"gpus": 1, "gpus_per_block": 1, "fanout_gpus": 0, "max_concurrent_blocks": 0},
    },
}
