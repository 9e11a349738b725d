"""dna rate: Algorithm 1 over trained block supernets, writing the Parquet scores table."""

from __future__ import annotations

from dna.cli._common import add_data_arguments, add_teacher_arguments, data_config, teacher_config

HELP = "rate every path of every cell (Algorithm 1) and write the scores table (Parquet) to a URI"


def add_arguments(p) -> None:
    p.add_argument("--supernets", required=True, help="folder URI holding block<K>/supernet.pt")
    p.add_argument("--out", required=True, help="scores folder URI (partitioned by block)")
    p.add_argument("--block", type=int, default=None, help="rate one block only (default: all)")
    p.add_argument("--space", default="mbconv-tiny", help="search space name or .json URI (the supernets')")
    p.add_argument("--calib-batches", type=int, default=2, help="BatchNorm recalibration batches")
    p.add_argument("--max-batches", type=int, default=None, help="cap on rating batches (default: the whole rating split)")
    p.add_argument("--latency-table", default=None, help="URI of a `dna latency-table` (adds latency_ms; default: none)")
    p.add_argument("--generation", type=int, default=0, help="DNA+ generation recorded in the table")
    p.add_argument("--device", default=None, help="cpu, cuda or auto (default)")
    add_teacher_arguments(p)
    add_data_arguments(p)


def run(args) -> dict:
    from dna.rate.block import RateConfig, rate

    cfg = RateConfig(
        supernets=args.supernets, out=args.out, block=args.block, space=args.space,
        teacher=teacher_config(args), data=data_config(args), calib_batches=args.calib_batches,
        max_batches=args.max_batches, latency_table=args.latency_table, generation=args.generation,
        device=args.device,
    )
    return rate(cfg)
