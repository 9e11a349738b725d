"""Fan the blocks of one generation out on Ray: supernet training and rating, one job per block.

SPEC section 4: the blocks are independent given the teacher, so each block is its own job.
One module per job:

- :mod:`~components.fanout.spec`: the fan-out spec (what travels to a Ray Job as JSON), its
  validation and its layout in the run storage (which blocks are already done);
- :mod:`~components.fanout.local_ray`: a local Ray session, connecting, sizing checks;
- :mod:`~components.fanout.tuner`: the Tune trials and the per-block TorchTrainer;
- :mod:`~components.fanout.worker`: what one Ray Train worker of a block runs;
- :mod:`~components.fanout.jobs`: the Ray Jobs API client (a KubeRay dashboard address);
- :mod:`~components.fanout.fault`: fault injection (``DNA_FAULT_BLOCK``);
- :mod:`~components.fanout.dispatch`: :func:`fan_out_blocks`, which picks the way to run;
- :mod:`~components.fanout.cli`: ``python -m components.fanout --config '<json>'`` (the job).

Training (``task="train"``)
    One Ray Tune trial per block (the Tune "driver function" pattern): the trial is a tiny
    function trainable (``{"cpu": 0.01}``) that builds and fits a
    :class:`ray.train.torch.TorchTrainer` for its block, with
    ``ScalingConfig(num_workers=workers_per_block, use_gpu=use_gpu)``. Every worker runs
    :func:`dna.train.block.train_block` on :func:`dna.generation.block_config` and reports each
    finished epoch from its ``on_epoch_end`` with ``ray.train.report`` (all ranks call it: it is a
    barrier).
    Trials run in parallel (``max_concurrent`` caps them), so the blocks train concurrently.

Rating (``task="rate"``)
    Plain Tune trials, one per block, each holding one CPU (or one GPU): rating is one inference
    pass over the rating split, so a TorchTrainer's worker group (and its ~20 s start-up) buys
    nothing. A trial runs :func:`dna.rate.block.rate` on :func:`dna.generation.rate_config`,
    which writes the block's partition ``scores/block=K/part-0.parquet`` atomically; a failed
    trial is retried by Tune (``max_failures``) and simply rates its block again.

Checkpoints and resume
    Ray Train and Tune keep their run state under ``<run root>/gen<g>/ray/`` (a local folder or
    ``s3://``: the pyarrow filesystem from :func:`dna.storage.filesystem` is passed as
    ``storage_filesystem``). ``train_block`` writes ``<gen>/supernet/block<k>/supernet.pt`` in the
    run storage after every epoch and resumes from it, and that is what a restarted worker group
    (``FailureConfig(max_failures)``) picks up, so a failed block restarts from its last finished
    epoch without touching the other blocks. Its ``on_epoch_end`` reports each stored epoch with a
    Ray checkpoint that only *points* at ``supernet.pt`` (a small JSON Ray copies into its run
    folder; copying the model state would store it twice), so Ray's Result and dashboard show the
    epochs and where the model is. Blocks whose checkpoint is complete (or whose scores partition
    exists) are read back without starting Ray at all. Every run and experiment name is unique
    (``dna-<task>-g<g>-<uuid>``), because reusing a name with the same storage path would resume
    an old Ray run.

Where it runs
    :func:`fan_out_blocks` with no address (argument or ``RAY_ADDRESS``) starts a local Ray (or
    reuses the session of this process); with a Ray address (``auto``, ``host:6379``,
    ``ray://...``) it connects and fans out from this process; with an ``http(s)://`` address
    (the KubeRay head's dashboard, ``http://dna-ray-head-svc:8265``) it submits the same fan-out
    as a Ray Job (``python -m components.fanout --config '<json>'``), waits for it, and reads
    the per-block metrics back from ``<gen>/supernet/fanout-<task>.json`` in the run storage.
    Only non-secret storage settings travel in the job's ``runtime_env``; credentials are the Ray
    pods' own (``k8s/README.md``). A live job of the same fan-out (same root, generation, task and
    blocks: a retried pipeline task) is attached to instead of submitted twice. A local Ray gets at
    least ``workers_per_block + 1`` logical CPUs, and a block that cannot fit a local session is
    refused up front (it would wait for resources forever; a cluster's autoscaler may add them).

Data parallelism
    ``workers_per_block > 1`` needs ``dna.train.block`` to train data-parallel when a
    ``torch.distributed`` process group is up (it declares ``DATA_PARALLEL = True``); without that
    the workers would train the same block independently and race on one checkpoint, so the
    fan-out refuses before starting.

The ``dna`` library imports neither Ray nor KFP; everything Ray lives here.
"""

import os

os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")

from components.fanout.dispatch import fan_out_blocks  # noqa: E402

__all__ = ["fan_out_blocks"]
