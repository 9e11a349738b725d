"""Every bad input to the `dna` command line: exit code 2, one `error:` line naming the bad value,
no traceback, and (for the up-front checks) no work started.

Cases run ``dna.cli.main(argv)`` in-process (fast); a few run ``python -m dna`` as a subprocess.
"""

from __future__ import annotations

import itertools
import json
import os
import subprocess
import sys
from types import SimpleNamespace

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from dna.cli import main
from dna.rate.scores import ScoresMeta, make_table, write_scores
from dna.space.mbconv import Block, Cell, MBConvSpace
from tests.s3fixture import s3_bucket  # noqa: F401

OPS = ("k3e3", "k3e6")
# 3 blocks, 48 architectures: small enough to ask for more than all of them
SPACE = MBConvSpace(
    name="bad-input-tiny", ops=OPS,
    blocks=(Block((Cell(1, 8), Cell(2, 16)), 2), Block((Cell(1, 24), Cell(1, 32)), 2), Block((Cell(1, 40),), 1)),
    stem_channels=8, first_channels=16, head_channels=64, resolution=32, num_classes=10,
)
FIXED = {"params": 1000, "flops": 20000}
ARCH_OK = [["ds_r1_k3_s1_e1_c16_se0.25"], ["ir_r1_k3_s2_e6_c24_se0.25"]]


def _rows(latency: bool = False) -> dict[str, list]:
    rng = np.random.default_rng(0)
    rows: dict[str, list] = {k: [] for k in ("block", "cell", "ops", "in_channels", "out_channels", "loss",
                                             "params", "flops")}
    if latency:
        rows["latency_ms"] = []
    for k, block in enumerate(SPACE.blocks):
        for c, cell in enumerate(block.cells):
            for ops in itertools.product(OPS, repeat=cell.layers):
                for w in SPACE.in_widths(k):
                    p = 100 * (k + 1) + 10 * len(ops) + w
                    rows["block"].append(k)
                    rows["cell"].append(c)
                    rows["ops"].append("-".join(ops))
                    rows["in_channels"].append(w)
                    rows["out_channels"].append(cell.channels)
                    rows["loss"].append(float(rng.uniform(0.1, 1.0)))
                    rows["params"].append(p)
                    rows["flops"].append(10 * p)
                    if latency:
                        rows["latency_ms"].append(0.01 * p)
    return rows


def _meta(**kw) -> ScoresMeta:
    base = dict(space=SPACE.to_json(), resolution=32, teacher="tiny-teacher", generation=0, fixed=dict(FIXED))
    base.update(kw)
    return ScoresMeta(**base)


def _raw(path: str, table: pa.Table, md: dict[str, str]) -> str:
    """Write a Parquet file as given (no validation): what a broken or foreign writer leaves."""
    pq.write_table(table.replace_schema_metadata({k.encode(): v.encode() for k, v in md.items()}), path)
    return path


def _image(path: str, ok: bool = True) -> None:
    from PIL import Image

    os.makedirs(os.path.dirname(path), exist_ok=True)
    if ok:
        Image.new("RGB", (8, 8), (200, 30, 30)).save(path)
    else:
        with open(path, "wb") as f:
            f.write(b"\x89PNG\r\n\x1a\n but not really a png")


@pytest.fixture(scope="module")
def fx(tmp_path_factory):
    d = tmp_path_factory.mktemp("bad_input")
    p = lambda *parts: str(d.joinpath(*parts))  # noqa: E731
    md = _meta().to_metadata()
    good = make_table(_rows(), _meta())
    f = SimpleNamespace(tmp=str(d), good=write_scores(good, p("good.parquet")))

    t = good.to_pydict()
    f.str_params = _raw(p("str_params.parquet"), good.set_column(
        good.schema.get_field_index("params"), "params", pa.array([f"{v} params" for v in t["params"]])), md)
    f.frac_block = _raw(p("frac_block.parquet"), good.set_column(
        0, "block", pa.array([b + 0.5 for b in t["block"]], pa.float64())), md)
    f.huge = _raw(p("huge.parquet"), good.set_column(
        good.schema.get_field_index("params"), "params", pa.array([2**62] * good.num_rows, pa.int64())), md)
    f.neg_fixed = _raw(p("neg_fixed.parquet"), good, {**md, "fixed_params": "-5"})
    f.neg_loss = _raw(p("neg_loss.parquet"), good.set_column(
        good.schema.get_field_index("loss"), "loss", pa.array([-0.5] + t["loss"][1:])), md)
    lat = make_table(_rows(latency=True), _meta(fixed={**FIXED, "latency_ms": 1.0}))
    f.neg_latency = _raw(p("neg_latency.parquet"), lat.set_column(
        lat.schema.get_field_index("latency_ms"), "latency_ms",
        pa.array([-1.0] + lat.column("latency_ms").to_pylist()[1:])), _meta(fixed={**FIXED, "latency_ms": 1.0}).to_metadata())
    keep = [i for i in range(good.num_rows) if not (t["block"][i] == 1 and t["cell"][i] == 1)]
    f.missing_cell = write_scores(good.take(pa.array(keep)), p("missing_cell.parquet"))
    # a re-rate killed mid-way: block 1 of generation 1 beside the rest of generation 0
    f.mixed_gen = write_scores(good, p("mixed_gen"), partitioned=True)
    block1 = [i for i in range(good.num_rows) if t["block"][i] == 1]
    write_scores(make_table(good.take(pa.array(block1)).to_pydict(), _meta(generation=1)), f.mixed_gen,
                 partitioned=True)
    f.mixed_teacher = write_scores(good, p("mixed_teacher"), partitioned=True)
    write_scores(make_table(good.take(pa.array(block1)).to_pydict(), _meta(teacher="another-teacher")),
                 f.mixed_teacher, partitioned=True)
    f.garbage = p("garbage.parquet")
    with open(f.garbage, "wb") as fh:
        fh.write(b"this is not parquet at all")

    def arch(name, arch_def):
        with open(p(name), "w") as fh:
            json.dump({"arch_def": arch_def, "resolution": 32, "num_classes": 10}, fh)
        return p(name)

    f.ok = arch("ok.json", ARCH_OK)
    for key, block in {"e0": "ir_r1_k3_s2_e0_c24", "c0": "ir_r1_k3_s2_e6_c0", "x5": "ir_r1_k3_s2_e6_c24_x5",
                       "k0": "ir_r1_k0_s2_e6_c24", "r0": "ir_r0_k3_s2_e6_c24", "nfoo": "ir_r1_k3_s2_e6_c24_nfoo",
                       "twice": "ir_r1_k3_k5_s2_e6_c24", "ds_e6": "ds_r1_k3_s1_e6_c24"}.items():
        setattr(f, key, arch(f"{key}.json", [ARCH_OK[0], [block]]))

    bad_space = SPACE.to_json()
    bad_space["blocks"][0]["cells"][0] = [1, 0]
    f.space_c0 = p("space_c0.json")
    with open(f.space_c0, "w") as fh:
        json.dump(bad_space, fh)
    from dna.space import get_space

    vit = get_space("vit-tiny").to_json()
    for key, path in {"vit_h0": "h0-r2-d1", "vit_x": "h2-r2-d1-x3"}.items():
        setattr(f, key, p(f"{key}.json"))
        with open(getattr(f, key), "w") as fh:
            json.dump({"space": vit, "arch_def": [path] * len(vit["blocks"])}, fh)
    f.vit_res = p("vit_res.json")
    with open(f.vit_res, "w") as fh:
        json.dump({**vit, "resolution": 100000}, fh)
    bad_space = SPACE.to_json()
    bad_space["ops"] = ["k3e3", "k4e6"]
    f.space_op = p("space_op.json")
    with open(f.space_op, "w") as fh:
        json.dump(bad_space, fh)

    # data folders
    f.empty = p("data_empty")
    os.makedirs(os.path.join(f.empty, "train"))
    os.makedirs(os.path.join(f.empty, "val"))
    f.noimg = p("data_noimg")
    os.makedirs(os.path.join(f.noimg, "train", "cat"))
    with open(os.path.join(f.noimg, "train", "cat", "notes.txt"), "w") as fh:
        fh.write("no images here")
    f.corrupt = p("data_corrupt")
    _image(os.path.join(f.corrupt, "train", "cat", "broken.png"), ok=False)
    _image(os.path.join(f.corrupt, "val", "cat", "fine.png"))
    f.noval = p("data_noval")
    _image(os.path.join(f.noval, "train", "cat", "a.png"))
    _image(os.path.join(f.noval, "train", "dog", "b.png"))
    f.a_file = p("a_file")
    with open(f.a_file, "w") as fh:
        fh.write("a file, not a folder")
    return f


def run_cli(argv, capsys) -> tuple[int, str]:
    try:
        rc = main([str(a) for a in argv])
    except SystemExit as exc:  # argparse's own errors (e.g. --top-k abc)
        rc = exc.code
    return rc, capsys.readouterr().err


RO = "/proc/dna-bad-input/out"  # not writable, even for root


# (id, argv builder(fx), text the message must contain (builder too: paths live in fx))
CASES = [
    # ----- search: scores tables
    ("search-str-column", lambda f: ["search", f.str_params], lambda f: "column 'params' has type string"),
    ("search-fraction-block", lambda f: ["search", f.frac_block], lambda f: "column 'block'"),
    ("search-int64-overflow", lambda f: ["search", f.huge, "--max-params", "1e18"],
     lambda f: f"{2**62:,}"),
    ("search-negative-fixed", lambda f: ["search", f.neg_fixed], lambda f: "fixed_params=-5"),
    ("search-negative-loss", lambda f: ["search", f.neg_loss], lambda f: "loss is -0.5"),
    ("search-negative-latency", lambda f: ["search", f.neg_latency], lambda f: "latency_ms is -1.0"),
    ("search-missing-cell", lambda f: ["search", f.missing_cell], lambda f: "no rows for cell 1 of block 1"),
    ("search-mixed-generation", lambda f: ["search", f.mixed_gen], lambda f: "differ in 'generation'"),
    ("search-mixed-teacher", lambda f: ["search", f.mixed_teacher], lambda f: "another-teacher"),
    ("search-top-k-0", lambda f: ["search", f.good, "--top-k", "0"], lambda f: "--top-k 0"),
    ("search-top-k-huge", lambda f: ["search", f.good, "--top-k", "100000000"], lambda f: "--top-k 100000000"),
    ("search-top-k-over-count", lambda f: ["search", f.good, "--top-k", "100"], lambda f: "top_k=100"),
    ("search-top-k-text", lambda f: ["search", f.good, "--top-k", "many"], lambda f: "'many'"),
    ("search-out-readonly", lambda f: ["search", f.good, "--out", RO + "/arch.json"], lambda f: RO),
    ("search-out-under-file", lambda f: ["search", f.good, "--out", f.a_file + "/arch.json"], lambda f: f.a_file),
    ("search-out-is-a-folder", lambda f: ["search", f.good, "--out", f.tmp], lambda f: f"{f.tmp!r} is a folder"),
    ("search-max-params-text", lambda f: ["search", f.good, "--max-params", "lots"], lambda f: "'lots'"),
    ("search-lambdas", lambda f: ["search", f.good, "--lambdas", "1,x,1"], lambda f: "'1,x,1'"),
    ("search-missing-file", lambda f: ["search", f.tmp + "/nope.parquet"], lambda f: "nope.parquet"),
    ("search-not-parquet", lambda f: ["search", f.garbage], lambda f: "garbage.parquet"),
    # ----- build: block strings and sizes
    ("build-e0", lambda f: ["build", f.e0], lambda f: "'e0'"),
    ("build-c0", lambda f: ["build", f.c0], lambda f: "'c0'"),
    ("build-unknown-option", lambda f: ["build", f.x5], lambda f: "'x5'"),
    ("build-k0", lambda f: ["build", f.k0], lambda f: "'k0'"),
    ("build-r0", lambda f: ["build", f.r0], lambda f: "'r0'"),
    ("build-bad-activation", lambda f: ["build", f.nfoo], lambda f: "'nfoo'"),
    ("build-option-twice", lambda f: ["build", f.twice], lambda f: "'k' given twice"),
    ("build-ds-expansion", lambda f: ["build", f.ds_e6], lambda f: "'e6'"),
    ("build-vit-zero-heads", lambda f: ["build", f.vit_h0], lambda f: "'h0-r2-d1'"),
    ("build-vit-unknown-part", lambda f: ["build", f.vit_x], lambda f: "'h2-r2-d1-x3'"),
    ("build-resolution-huge", lambda f: ["build", f.ok, "--resolution", "100000"], lambda f: "--resolution 100000"),
    ("build-num-classes-0", lambda f: ["build", f.ok, "--num-classes", "0"], lambda f: "--num-classes 0"),
    ("build-seed-negative", lambda f: ["build", f.ok, "--seed", "-1"], lambda f: "--seed -1"),
    ("build-out-readonly", lambda f: ["build", f.ok, "--out", RO + "/w.pt"], lambda f: RO),
    # ----- scale
    ("scale-width-0", lambda f: ["scale", f.ok, "--width", "0"], lambda f: "--width 0.0"),
    ("scale-depth-1e400", lambda f: ["scale", f.ok, "--depth", "1e400"], lambda f: "--depth inf"),
    ("scale-resolution-4", lambda f: ["scale", f.ok, "--resolution", "4"], lambda f: "--resolution 4"),
    ("scale-c0", lambda f: ["scale", f.c0, "--width", "1.2"], lambda f: "'c0'"),
    ("scale-out-under-file", lambda f: ["scale", f.ok, "--to", "b1", "--out", f.a_file + "/x.json"],
     lambda f: f.a_file),
    # ----- export
    ("export-opset-1", lambda f: ["export", f.ok, "--format", "onnx", "--opset", "1", "--out", f.tmp + "/m.onnx"],
     lambda f: "opset 1:"),
    ("export-opset-99", lambda f: ["export", f.ok, "--format", "onnx", "--opset", "99", "--out", f.tmp + "/m.onnx"],
     lambda f: "opset 99:"),
    ("export-batch-0", lambda f: ["export", f.ok, "--batch-size", "0", "--out", f.tmp + "/m.pt"],
     lambda f: "--batch-size 0"),
    ("export-batch-huge", lambda f: ["export", f.ok, "--batch-size", "1000000", "--out", f.tmp + "/m.pt"],
     lambda f: "--batch-size 1000000"),
    ("export-resolution-huge", lambda f: ["export", f.ok, "--resolution", "5000", "--out", f.tmp + "/m.pt"],
     lambda f: "--resolution 5000"),
    ("export-out-readonly", lambda f: ["export", f.ok, "--out", RO + "/m.pt"], lambda f: RO),
    ("export-missing-checkpoint",
     lambda f: ["export", f.ok, "--checkpoint", f.tmp + "/none.pt", "--out", f.tmp + "/m.pt"],
     lambda f: "none.pt"),
    ("export-e0", lambda f: ["export", f.e0, "--out", f.tmp + "/m.pt"], lambda f: "'e0'"),
    # ----- latency-table
    ("latency-repeats-0", lambda f: ["latency-table", "mbconv-tiny", "--repeats", "0", "--out", f.tmp + "/l.json"],
     lambda f: "--repeats 0"),
    ("latency-threads-0", lambda f: ["latency-table", "mbconv-tiny", "--threads", "0", "--out", f.tmp + "/l.json"],
     lambda f: "--threads 0"),
    ("latency-resolution-huge",
     lambda f: ["latency-table", "mbconv-tiny", "--resolution", "65536", "--out", f.tmp + "/l.json"],
     lambda f: "--resolution 65536"),
    ("latency-out-under-file", lambda f: ["latency-table", "mbconv-tiny", "--out", f.a_file + "/l.json"],
     lambda f: f.a_file),
    ("latency-unknown-device", lambda f: ["latency-table", "mbconv-tiny", "--device", "tpu", "--out", f.tmp + "/l.json"],
     lambda f: "'tpu'"),
    ("latency-unknown-space", lambda f: ["latency-table", "no-such-space", "--out", f.tmp + "/l.json"],
     lambda f: "'no-such-space'"),
    # ----- space
    ("space-unknown", lambda f: ["space", "no-such-space"], lambda f: "'no-such-space'"),
    ("space-zero-channels", lambda f: ["space", f.space_c0], lambda f: "channels=0"),
    ("space-resolution-huge", lambda f: ["space", f.vit_res], lambda f: "resolution=100000"),
    ("space-bad-op", lambda f: ["space", f.space_op], lambda f: "'k4e6'"),
    # ----- rate
    ("rate-calib-negative", lambda f: ["rate", "--supernets", f.tmp, "--out", f.tmp + "/s", "--calib-batches", "-1"],
     lambda f: "--calib-batches -1"),
    ("rate-max-batches-0", lambda f: ["rate", "--supernets", f.tmp, "--out", f.tmp + "/s", "--max-batches", "0"],
     lambda f: "--max-batches 0"),
    ("rate-generation-negative",
     lambda f: ["rate", "--supernets", f.tmp, "--out", f.tmp + "/s", "--generation", "-1"],
     lambda f: "--generation -1"),
    ("rate-resolution-huge", lambda f: ["rate", "--supernets", f.tmp, "--out", f.tmp + "/s", "--resolution", "2048"],
     lambda f: "--resolution 2048"),
    ("rate-data-zero-classes", lambda f: ["rate", "--supernets", f.tmp, "--out", f.tmp + "/s", "--data", f.empty],
     lambda f: f.empty),
    ("rate-data-no-images", lambda f: ["rate", "--supernets", f.tmp, "--out", f.tmp + "/s", "--data", f.noimg],
     lambda f: "train/cat"),
    ("rate-data-corrupt", lambda f: ["rate", "--supernets", f.tmp, "--out", f.tmp + "/s", "--data", f.corrupt],
     lambda f: "broken.png"),
    ("rate-data-missing", lambda f: ["rate", "--supernets", f.tmp, "--out", f.tmp + "/s", "--data", f.tmp + "/none"],
     lambda f: f.tmp + "/none"),
    ("rate-rating-size-over-images",
     lambda f: ["rate", "--supernets", f.tmp, "--out", f.tmp + "/s", "--data", f.noval, "--rating-size", "5"],
     lambda f: "rating_size 5"),
    ("rate-out-readonly", lambda f: ["rate", "--supernets", f.tmp, "--out", RO], lambda f: RO),
    # ----- train-block
    ("train-block-epochs-0", lambda f: ["train-block", "--block", "0", "--supernets", f.tmp, "--epochs", "0"],
     lambda f: "--epochs 0"),
    ("train-block-max-steps-negative",
     lambda f: ["train-block", "--block", "0", "--supernets", f.tmp, "--max-steps", "-5"], lambda f: "--max-steps -5"),
    ("train-block-lr-nan", lambda f: ["train-block", "--block", "0", "--supernets", f.tmp, "--lr", "nan"],
     lambda f: "--lr nan"),
    ("train-block-lr-decay-0", lambda f: ["train-block", "--block", "0", "--supernets", f.tmp, "--lr-decay", "0"],
     lambda f: "--lr-decay 0.0"),
    ("train-block-batch-0", lambda f: ["train-block", "--block", "0", "--supernets", f.tmp, "--batch-size", "0"],
     lambda f: "--batch-size 0"),
    ("train-block-block-negative", lambda f: ["train-block", "--block", "-1", "--supernets", f.tmp],
     lambda f: "--block -1"),
    ("train-block-workers-huge", lambda f: ["train-block", "--block", "0", "--supernets", f.tmp, "--workers", "5000"],
     lambda f: "--workers 5000"),
    ("train-block-supernets-readonly", lambda f: ["train-block", "--block", "0", "--supernets", RO],
     lambda f: RO),
    ("train-block-data-corrupt",
     lambda f: ["train-block", "--block", "0", "--supernets", f.tmp + "/sn", "--data", f.corrupt],
     lambda f: "broken.png"),
    ("train-block-block-out-of-space",
     lambda f: ["train-block", "--block", "9", "--supernets", f.tmp + "/sn", "--epochs", "1"], lambda f: "9"),
    ("train-block-unknown-space", lambda f: ["train-block", "--block", "0", "--supernets", f.tmp, "--space", "nope"],
     lambda f: "'nope'"),
    ("train-block-unknown-device", lambda f: ["train-block", "--block", "0", "--supernets", f.tmp, "--device", "tpu"],
     lambda f: "'tpu'"),
    # ----- train-pp
    ("train-pp-proj-dim-0", lambda f: ["train-pp", "--out", f.tmp + "/pp", "--proj-dim", "0"],
     lambda f: "--proj-dim 0"),
    ("train-pp-gamma-negative", lambda f: ["train-pp", "--out", f.tmp + "/pp", "--gamma", "-1"],
     lambda f: "--gamma -1.0"),
    ("train-pp-lambda-nan", lambda f: ["train-pp", "--out", f.tmp + "/pp", "--lambda-3", "nan"],
     lambda f: "--lambda-3 nan"),
    ("train-pp-scores-readonly", lambda f: ["train-pp", "--out", f.tmp + "/pp", "--scores", RO],
     lambda f: RO),
    # ----- retrain
    ("retrain-epochs-0", lambda f: ["retrain", f.ok, "--out", f.tmp + "/rt", "--epochs", "0"],
     lambda f: "--epochs 0"),
    ("retrain-label-smoothing", lambda f: ["retrain", f.ok, "--out", f.tmp + "/rt", "--label-smoothing", "1.5"],
     lambda f: "--label-smoothing 1.5"),
    ("retrain-kd-alpha", lambda f: ["retrain", f.ok, "--out", f.tmp + "/rt", "--kd-alpha", "2"],
     lambda f: "--kd-alpha 2.0"),
    ("retrain-ema-decay", lambda f: ["retrain", f.ok, "--out", f.tmp + "/rt", "--ema-decay", "1.5"],
     lambda f: "--ema-decay 1.5"),
    ("retrain-steps-0", lambda f: ["retrain", f.ok, "--out", f.tmp + "/rt", "--steps-per-epoch", "0"],
     lambda f: "--steps-per-epoch 0"),
    ("retrain-data-no-val", lambda f: ["retrain", f.ok, "--out", f.tmp + "/rt", "--data", f.noval],
     lambda f: f.noval + "/val"),
    ("retrain-unknown-optimizer", lambda f: ["retrain", f.ok, "--out", f.tmp + "/rt", "--opt", "nosuchopt"],
     lambda f: "'nosuchopt'"),
    ("retrain-out-is-a-file", lambda f: ["retrain", f.ok, "--out", f.a_file], lambda f: f"{f.a_file!r} is a file"),
    ("retrain-out-readonly", lambda f: ["retrain", f.ok, "--out", RO], lambda f: RO),
    # ----- transfer
    ("transfer-cls-data-corrupt",
     lambda f: ["transfer", "cls", f.ok, "--random-init", "--out", f.tmp + "/tr", "--data", f.corrupt],
     lambda f: "broken.png"),
    ("transfer-samples-negative", lambda f: ["transfer", "seg", f.ok, "--out", f.tmp + "/tr", "--samples", "-1"],
     lambda f: "--samples -1"),
    ("transfer-output-stride", lambda f: ["transfer", "seg", f.ok, "--out", f.tmp + "/tr", "--output-stride", "4"],
     lambda f: "--output-stride 4"),
    ("transfer-max-train-batches-0",
     lambda f: ["transfer", "det", f.ok, "--out", f.tmp + "/tr", "--max-train-batches", "0"],
     lambda f: "--max-train-batches 0"),
    ("transfer-min-size-huge", lambda f: ["transfer", "det", f.ok, "--out", f.tmp + "/tr", "--min-size", "100000"],
     lambda f: "--min-size 100000"),
    ("transfer-model-kwargs", lambda f: ["transfer", "cls", f.ok, "--out", f.tmp + "/tr", "--model-kwargs", "{oops"],
     lambda f: "'{oops'"),
    ("transfer-anchor-sizes", lambda f: ["transfer", "det", f.ok, "--out", f.tmp + "/tr", "--anchor-sizes", "a,b"],
     lambda f: "'a,b'"),
    ("transfer-out-readonly", lambda f: ["transfer", "cls", f.ok, "--random-init", "--out", RO], lambda f: RO),
]


@pytest.mark.parametrize("argv,expect", [pytest.param(a, e, id=i) for i, a, e in CASES])
def test_bad_input_exits_2_naming_the_value(fx, capsys, argv, expect):
    rc, err = run_cli(argv(fx), capsys)
    assert rc == 2, err
    assert "Traceback" not in err
    assert expect(fx) in err, err
    assert sum("error:" in line for line in err.splitlines()) == 1, err  # one error line


class _AnyPath:
    def __getattr__(self, name: str) -> str:
        return "/x"


def test_every_sub_command_has_cases():
    from dna.cli import _commands

    assert {argv(_AnyPath())[0] for _, argv, _ in CASES} == set(_commands())
    assert len(CASES) >= 40


# ----- checks that run before any work -------------------------------------------------------

BEFORE_WORK = [
    ("search", lambda f: ["search", f.good, "--out", RO + "/a.json"], RO),
    ("search", lambda f: ["search", f.good, "--top-k", "0"], "--top-k 0"),
    ("rate", lambda f: ["rate", "--supernets", f.tmp, "--out", f.tmp + "/s", "--data", f.corrupt], "broken.png"),
    ("train_block", lambda f: ["train-block", "--block", "0", "--supernets", RO], RO),
    ("retrain", lambda f: ["retrain", f.ok, "--out", f.tmp + "/rt", "--data", f.noval], "val"),
    ("export", lambda f: ["export", f.ok, "--out", RO + "/m.pt"], RO),
    ("latency_table", lambda f: ["latency-table", "mbconv-tiny", "--out", RO + "/l.json"], RO),
]


@pytest.mark.parametrize("module,argv,expect", BEFORE_WORK, ids=[f"{m}-{e}" for m, _, e in BEFORE_WORK])
def test_checks_run_before_the_command_starts(fx, capsys, monkeypatch, module, argv, expect):
    """The sub-command's run() (the search, the training...) is never entered."""
    import importlib

    mod = importlib.import_module(f"dna.cli.{module}")

    def no_work(args):
        raise AssertionError("the work started before the bad input was reported")

    monkeypatch.setattr(mod, "run", no_work)
    rc, err = run_cli(argv(fx), capsys)
    assert rc == 2 and expect in err and "Traceback" not in err, err


def test_search_out_readonly_fails_before_reading_the_scores(fx, capsys, monkeypatch):
    import dna.rate.scores

    monkeypatch.setattr(dna.rate.scores, "read_scores", lambda uri: pytest.fail("the search ran"))
    rc, err = run_cli(["search", fx.good, "--out", RO + "/arch.json"], capsys)
    assert rc == 2 and RO in err


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders")
def test_read_only_folder(fx, capsys, tmp_path):
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o555)
    try:
        rc, err = run_cli(["search", fx.good, "--out", str(ro / "arch.json")], capsys)
    finally:
        ro.chmod(0o755)
    assert rc == 2 and str(ro) in err


def test_unreadable_data_folder(fx, capsys, monkeypatch):
    """An OS error listing the folder (permission denied, an NFS failure) is one clear line."""
    from pyarrow import fs as pafs

    import dna.data.imagefolder as imf

    real = imf._filesystem

    class Denied:
        def __init__(self, inner):
            self.inner = inner

        def get_file_info(self, what):
            if isinstance(what, pafs.FileSelector):
                raise PermissionError(13, "Permission denied", what.base_dir)
            return self.inner.get_file_info(what)

    monkeypatch.setattr(imf, "_filesystem", lambda uri: (Denied(real(uri)[0]), real(uri)[1]))
    rc, err = run_cli(["rate", "--supernets", fx.tmp, "--out", fx.tmp + "/s", "--data", fx.noval], capsys)
    assert rc == 2 and "Permission denied" in err and fx.noval in err and "Traceback" not in err, err


def test_library_calls_name_the_bad_column():
    """The same checks hold for tables handed to the search directly (not read from a URI)."""
    from dna.errors import DnaError
    from dna.search.traversal import search

    table = make_table(_rows(), _meta())
    bad = table.set_column(table.schema.get_field_index("loss"), "loss",
                           pa.array(["low"] * table.num_rows))
    with pytest.raises(DnaError, match="column 'loss' has type string"):
        search(bad, _meta())
    with pytest.raises(DnaError, match="fixed_flops=-1"):
        search(table, _meta(fixed={"params": 1000, "flops": -1}))
    rows = _rows()
    rows["params"][3] = "many"
    with pytest.raises(DnaError, match="scores column 'params'"):
        make_table(rows, _meta())


def test_low_opset_in_range_is_written_as_asked(fx, capsys, tmp_path):
    """The accepted range is real: an opset below the torch.export exporter's goes to the legacy
    exporter and the file carries that opset (never a silent 18)."""
    onnx = pytest.importorskip("onnx")
    out = str(tmp_path / "m.onnx")
    rc, err = run_cli(["export", fx.ok, "--format", "onnx", "--opset", "13", "--no-verify", "--out", out], capsys)
    assert rc == 0, err
    assert [o.version for o in onnx.load(out).opset_import if o.domain in ("", "ai.onnx")] == [13]


def test_good_inputs_still_work(fx, capsys):
    """The checks reject only bad values: the same tables and architectures, unbroken, run."""
    rc, err = run_cli(["search", fx.good, "--top-k", "48", "--json"], capsys)
    assert rc == 0, err
    rc, err = run_cli(["search", fx.mixed_gen.replace("mixed_gen", "good.parquet")], capsys)
    assert rc == 0, err
    rc, err = run_cli(["build", fx.ok, "--resolution", "64"], capsys)
    assert rc == 0, err


def test_timm_block_strings_all_accepted():
    """Every block string in timm's own EfficientNet-family definitions parses strictly."""
    import re

    import timm

    from dna.space.block_string import parse_block_string

    root = os.path.join(os.path.dirname(timm.__file__), "models")
    found = set()
    for name in ("efficientnet.py", "mobilenetv3.py", "mobilenetv5.py", "_efficientnet_builder.py"):
        path = os.path.join(root, name)
        if os.path.exists(path):
            with open(path) as fh:
                found |= set(re.findall(r"['\"]((?:ir|ds|dsa|er|cn|uir|mha|mqa)_[a-z0-9_.]+)['\"]", fh.read()))
    assert len(found) > 50
    for s in sorted(found):
        parse_block_string(s)


# ----- a few through the real entry point ----------------------------------------------------


SUBPROCESS = [
    (lambda f: ["build", f.e0], "'e0'"),
    (lambda f: ["search", f.good, "--top-k", "0"], "--top-k 0"),
    (lambda f: ["rate", "--supernets", f.tmp, "--out", f.tmp + "/s", "--data", f.corrupt], "broken.png"),
]


def test_subprocess_entry_point(fx):
    """``python -m dna``: exit 2, no traceback (the three run side by side to keep the file fast)."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([os.getcwd(), os.environ.get("PYTHONPATH", "")])}
    procs = [subprocess.Popen([sys.executable, "-m", "dna", *argv(fx)], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True, env=env) for argv, _ in SUBPROCESS]
    try:
        results = [p.communicate(timeout=180) for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
    for p, (_, err), (_, expect) in zip(procs, results, SUBPROCESS, strict=True):
        assert p.returncode == 2, err
        assert "Traceback" not in err
        assert expect in err, err


# ----- OS and pyarrow errors, S3 --------------------------------------------------------------


@pytest.mark.parametrize("exc,expect", [
    (PermissionError(13, "Permission denied", "/data/out/part-0.parquet"), "Permission denied"),
    (pa.ArrowInvalid("Column 'params' cannot be cast"), "ArrowInvalid"),
])
def test_os_and_pyarrow_errors_are_one_line(fx, capsys, monkeypatch, exc, expect):
    import dna.cli.space

    def fail(args):
        raise exc

    monkeypatch.setattr(dna.cli.space, "run", fail)
    rc, err = run_cli(["space", "mbconv-tiny"], capsys)
    assert rc == 2 and expect in err and "Traceback" not in err, err
    if isinstance(exc, OSError):
        assert exc.filename in err


def test_other_errors_keep_their_traceback(monkeypatch):
    """Only bad input is reported as exit 2; a bug still shows where it is."""
    import dna.cli.space

    def fail(args):
        raise RuntimeError("a bug")

    monkeypatch.setattr(dna.cli.space, "run", fail)
    with pytest.raises(RuntimeError, match="a bug"):
        main(["space", "mbconv-tiny"])


def test_s3_inputs_and_outputs(fx, capsys, monkeypatch, s3_bucket):  # noqa: F811
    import dna.rate.scores
    from dna import storage

    real_read = dna.rate.scores.read_scores
    monkeypatch.setattr(dna.rate.scores, "read_scores", lambda uri: pytest.fail("the search ran"))
    rc, err = run_cli(["search", fx.good, "--out", s3_bucket + "-missing/arch.json"], capsys)
    assert rc == 2 and s3_bucket[5:] + "-missing" in err and "does not exist" in err, err
    monkeypatch.setattr(dna.rate.scores, "read_scores", real_read)

    table = make_table(_rows(), _meta())
    mixed = s3_bucket + "/scores"
    write_scores(table, mixed, partitioned=True)
    t = table.to_pydict()
    block2 = [i for i in range(table.num_rows) if t["block"][i] == 2]
    write_scores(make_table(table.take(pa.array(block2)).to_pydict(), _meta(generation=3)), mixed,
                 partitioned=True)
    rc, err = run_cli(["search", mixed], capsys)
    assert rc == 2 and "differ in 'generation'" in err and "'3'" in err, err

    storage.write_bytes(b"not an image", s3_bucket + "/data/train/cat/broken.png")
    rc, err = run_cli(["rate", "--supernets", fx.tmp, "--out", fx.tmp + "/s", "--data", s3_bucket + "/data"], capsys)
    assert rc == 2 and "broken.png" in err and "Traceback" not in err, err


def test_a_pipeline_rerate_replaces_partitions_of_another_rating(tmp_path):
    """The refused mix never arises from a rerun: a stored partition of another generation or
    teacher counts as unrated, so the rating step rates it again instead of keeping it."""
    import shutil

    from dna.generation import unrated

    scores = str(tmp_path / "scores")
    shutil.copytree(_mixed_gen_folder(tmp_path), scores)
    assert unrated(scores, [0, 1]) == []                              # stored: kept, as before
    assert unrated(scores, [0, 1], {"generation": "0", "teacher": "tiny-teacher"}) == [1]
    assert unrated(scores, [0, 1], {"generation": "1"}) == [0]
    assert unrated(scores, [0, 1], {"teacher": "another"}) == [0, 1]
    assert unrated(scores, [0, 1, 2], {"generation": "0"})[-1] == 2   # missing: rated


def _mixed_gen_folder(tmp_path) -> str:
    good = make_table(_rows(), _meta())
    d = str(tmp_path / "src")
    write_scores(good.filter(pa.compute.equal(good.column("block"), 0)), d, partitioned=True)
    write_scores(make_table(good.filter(pa.compute.equal(good.column("block"), 1)).to_pydict(), _meta(generation=1)),
                 d, partitioned=True)
    return d
