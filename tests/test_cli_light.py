"""The command line stays light and consistent: ``--help``, ``dna search`` and the pipeline scripts'
``--help`` and ``--compile`` import neither torch nor timm nor ray; ``--version``; every option has help that says
its default; one flag name per concept, old spellings kept as aliases of the same dest.

Imports are checked in a fresh interpreter (this one has torch already, from conftest). No timing
asserts here: measured start-up times are in benchmarks/RESULTS.md ("Command-line start-up").
"""

from __future__ import annotations

import argparse
import importlib.metadata
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

import dna
from dna.cli import _commands, build_parser, main
from dna.cli._help import help_says_default
from pipelines.flags import make_parser

ROOT = Path(__file__).resolve().parents[1]
HEAVY = ("torch", "timm", "ray", "torchvision")

# Runs a sequence of command lines in ONE interpreter (``dna`` or a pipeline script), each as
# ``python -m dna ...`` / ``python pipelines/x.py ...`` would, and reports the heavy modules
# loaded after each: a later command cannot hide an earlier one's imports.
_RUNNER = r"""
import contextlib, io, json, runpy, sys
target, runs, heavy = sys.argv[1], json.loads(sys.argv[2]), json.loads(sys.argv[3])
report = []
for argv in runs:
    sys.argv = [target, *argv]
    out, err, code = io.StringIO(), io.StringIO(), 0
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            if target.endswith(".py"):
                runpy.run_path(target, run_name="__main__")
            else:
                runpy.run_module(target, run_name="__main__", alter_sys=True)
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    report.append({"argv": argv, "code": code, "out": out.getvalue(), "err": err.getvalue(),
                   "heavy": sorted(m for m in heavy if m in sys.modules)})
print(json.dumps(report))
"""


def _run(target: str, runs: list[list[str]], cwd: Path = ROOT) -> list[dict]:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE": "1"}
    proc = subprocess.run([sys.executable, "-c", _RUNNER, target, json.dumps(runs), json.dumps(HEAVY)],
                          cwd=cwd, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _assert_light(report: list[dict]) -> None:
    for r in report:
        assert r["code"] == 0, (r["argv"], r["err"][-2000:])
        assert r["heavy"] == [], f"{r['argv']} imported {r['heavy']}"


def _sub_parsers(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    (sub,) = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    return dict(sub.choices)


def _tiny_scores(path: Path) -> str:
    """A scores table of the built-in `mbconv-tiny` space with made-up costs (no torch needed)."""
    import numpy as np

    from dna.rate.scores import ScoresMeta, make_table, write_scores
    from dna.space import get_space

    space = get_space("mbconv-tiny")
    rng = np.random.default_rng(0)
    rows: dict[str, list] = {k: [] for k in ("block", "cell", "ops", "in_channels", "out_channels",
                                             "loss", "params", "flops")}
    for k in range(len(space.blocks)):
        for c, cell in enumerate(space.blocks[k].cells):
            for ops in space.paths(k, c):
                for w in space.in_widths(k):
                    for col, v in zip(rows, (k, c, "-".join(ops), w, cell.channels, float(rng.random()),
                                             int(rng.integers(100, 5000)), int(rng.integers(10**4, 10**6))),
                                      strict=True):
                        rows[col].append(v)
    meta = ScoresMeta(space=space.to_json(), resolution=space.resolution, fixed_params=1000,
                      fixed_flops=20000, teacher="t", generation=0)
    return write_scores(make_table(rows, meta), str(path))


# ----- imports ------------------------------------------------------------------------------


def test_dna_help_and_every_command_help_import_no_torch_timm_ray():
    runs = [["--help"], *[[name, "--help"] for name in _commands()]]
    report = _run("dna", runs)
    _assert_light(report)
    assert "COMMAND" in report[0]["out"] and "search" in report[0]["out"]
    assert all("--json" in r["out"] for r in report[1:])


def test_dna_search_command_imports_no_torch_timm_ray(tmp_path):
    scores = _tiny_scores(tmp_path / "scores.parquet")
    arch = tmp_path / "arch.json"
    report = _run("dna", [["search", scores, "--max-params", "20k", "--top-k", "3", "--json"],
                          ["search", scores, "--max-params", "20k", "--max-flops", "3M", "--out", str(arch)],
                          ["search", scores, "--pareto", "--json"]])
    _assert_light(report)
    top = json.loads(report[0]["out"])["architectures"]
    assert len(top) == 3 and all(a["params"] <= 20_000 for a in top)
    assert [a["loss"] for a in top] == sorted(a["loss"] for a in top)
    written = json.loads(arch.read_text())
    assert written["arch_def"] and written["params"] <= 20_000 and written["flops"] <= 3_000_000
    assert len(json.loads(report[2]["out"])["architectures"]) >= 2


def test_pipeline_help_and_version_import_no_torch_timm_ray():
    for script in ("pipelines/dna.py", "pipelines/dna_plus.py", "pipelines/dna_pp.py"):
        report = _run(script, [["--help"], ["--version"]])
        _assert_light(report)
        assert "--compile" in report[0]["out"]
        assert report[1]["out"].strip() == f"dna-nas {dna.__version__}"


@pytest.mark.parametrize("script", ["pipelines/dna.py", "pipelines/dna_plus.py", "pipelines/dna_pp.py"])
def test_pipeline_compile_imports_no_torch_timm_ray(tmp_path, script):
    """--compile checks the whole run config (every stage's own config included) and writes the
    YAML without importing torch, timm or ray: the stage configs live in torch-free modules, and a
    timm teacher (the cifar and imagenet presets') is looked up in dna.timm_names."""
    outs = [tmp_path / f"{preset}.yaml" for preset in ("smoke", "cifar", "imagenet")]
    gens = ["--generations", "2"] if script.endswith("dna_plus.py") else []
    report = _run(script, [["--compile", str(out), "--preset", out.stem, *gens] for out in outs])
    _assert_light(report)
    for out in outs:
        assert out.stat().st_size > 1000 and "pipelineInfo" in out.read_text()


def test_compile_still_checks_the_stage_configs(tmp_path):
    """The torch-free checks still refuse a bad stage setting at --compile, with the stage named."""
    out = tmp_path / "p.yaml"
    for argv, says in ((["--set", "retrain.opt=nosuchopt"], "opt 'nosuchopt' is not a timm optimizer"),
                       (["--set", "device=gpu7"], "gpu7"),
                       (["--set", "transfer_options.det.score_thresh=2"], "score_thresh 2 must be in [0, 1)")):
        (r,) = _run("pipelines/dna.py", [["--compile", str(out), *argv]])
        assert r["code"] == 2 and says in r["err"], (argv, r["err"][-1000:])
    assert not out.exists()


def test_timm_names_match_timm():
    """The model and optimizer names checked without timm are the installed timm's registries
    (regenerate dna/timm_names.py from them when timm is upgraded)."""
    import timm
    import timm.models._registry as registry
    from timm.optim import list_optimizers

    from dna import timm_names
    from dna.retrain_config import TIMM_OPTIMIZERS

    assert TIMM_OPTIMIZERS is timm_names.OPTIMIZERS == frozenset(list_optimizers())
    assert timm_names.MODELS == frozenset(registry._model_entrypoints)
    assert set(timm.list_models()) <= timm_names.MODELS
    for name in ("efficientnet_b1", "efficientnet_b0.ra_in1k", "vit_tiny_patch16_224", "nosuchnet", "", "b0."):
        assert timm_names.is_model(name) == timm.is_model(name), name


def test_torch_free_device_checks_match_torch():
    """dna.device_check says what dna.device said (same messages), without torch for the
    common strings."""
    import torch

    from dna.device import resolve_device
    from dna.device_check import check_device, check_device_spec
    from dna.errors import DnaError

    for good in ("auto", "cpu"):
        check_device(good)
        check_device_spec(good)
    check_device_spec(None)
    with pytest.raises(DnaError, match="device 'gpu' must be auto, cpu, cuda or cuda:N"):
        check_device("gpu")
    for bad in ("gpu", "cpu:x"):
        with pytest.raises(DnaError) as spec:
            check_device_spec(bad)
        with pytest.raises(DnaError) as direct:
            resolve_device(bad)
        assert str(spec.value) == str(direct.value)
    if not torch.cuda.is_available():
        with pytest.raises(DnaError, match="'cuda:0' asked for but CUDA is not available"):
            check_device("cuda:0")
        with pytest.raises(DnaError, match="requested but CUDA is not available here"):
            check_device_spec("cuda")


def test_config_modules_import_no_torch():
    """What a run config is made of (data, teacher, recipe, export formats) is importable without
    torch or timm; the modules that build networks re-export the same objects."""
    code = ("import sys, dna.data, dna.teacher_config, dna.retrain_recipe, dna.model.export_formats, "
            "dna.generation, dna.retrain_config, dna.retrain_vit_config, dna.train.config, dna.rate.config, "
            "dna.transfer_config, dna.ssl_config, dna.device_check, dna.dnapp; "
            "print(sorted(m for m in ('torch', 'timm', 'ray') if m in sys.modules))")
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True,
                         timeout=120, check=True).stdout
    assert out.strip() == "[]"
    import dna.data
    import dna.model.export as export
    import dna.retrain as retrain
    import dna.teacher as teacher
    from dna.data.shapes import ShapesDataset
    from dna.model.export_formats import FORMATS, ONNX_OPSET
    from dna.retrain_recipe import FAST_RECIPE, SCHEDULES
    from dna.teacher_config import TeacherConfig

    assert teacher.TeacherConfig is TeacherConfig and dna.data.ShapesDataset is ShapesDataset
    assert (export.FORMATS, export.ONNX_OPSET) == (FORMATS, ONNX_OPSET)
    assert retrain.FAST_RECIPE is FAST_RECIPE and retrain.SCHEDULES is SCHEDULES

    import dna.rate.block
    import dna.retrain_config
    import dna.retrain_vit
    import dna.retrain_vit_config
    import dna.ssl
    import dna.ssl.train
    import dna.train.block
    import dna.train.state
    import dna.transfer
    import dna.transfer_config
    from dna.rate.config import RateConfig
    from dna.ssl_config import PPLossConfig, PPTrainConfig, ViewAugment
    from dna.train.config import BlockTrainConfig, check_count

    assert retrain.RetrainConfig is dna.retrain_config.RetrainConfig
    assert dna.retrain_vit.RetrainViTConfig is dna.retrain_vit_config.RetrainViTConfig
    assert dna.train.block.BlockTrainConfig is BlockTrainConfig and dna.train.state.check_count is check_count
    assert dna.rate.block.RateConfig is RateConfig
    assert (dna.ssl.PPTrainConfig, dna.ssl.PPLossConfig, dna.ssl.ViewAugment) == (PPTrainConfig, PPLossConfig,
                                                                                  ViewAugment)
    assert dna.ssl.train.PPTrainConfig is PPTrainConfig
    for name in ("TransferConfig", "SegConfig", "DetConfig", "ClsConfig"):
        assert getattr(dna.transfer, name) is getattr(dna.transfer_config, name)


def test_retrain_help_shows_the_config_defaults():
    """`dna retrain --help` reads the paper's defaults from dna.retrain_recipe (no torch); they
    must be RetrainConfig's own."""
    from dna.retrain import RetrainConfig
    from dna.retrain_recipe import PAPER_RECIPE

    cfg = RetrainConfig()
    assert {k: getattr(cfg, k) for k in PAPER_RECIPE} == PAPER_RECIPE
    p = _sub_parsers(build_parser())["retrain"]
    defaults = {a.dest: a.default for a in p._actions}
    for k in ("epochs", "ema_decay", "kd_alpha", "kd_temperature"):
        assert defaults[k] == getattr(cfg, k)
    assert f"paper: {cfg.opt}" in " ".join(p.format_help().split())


# ----- --version ----------------------------------------------------------------------------


def test_version(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["--version"])
    assert exc.value.code == 0
    assert capsys.readouterr().out.strip() == f"dna-nas {dna.__version__}"
    try:
        installed = importlib.metadata.version("dna-nas")
    except importlib.metadata.PackageNotFoundError:
        pytest.skip("dna-nas is not installed: nothing to compare dna.__version__ with")
    assert installed == dna.__version__


# ----- help texts and flag names ------------------------------------------------------------


def _all_parsers() -> dict[str, argparse.ArgumentParser]:
    parsers = {f"dna {name}": p for name, p in _sub_parsers(build_parser()).items()}
    parsers["dna"] = build_parser()
    parsers["pipelines (DNA+)"] = make_parser("x", "", generations_flag=True)
    parsers["pipelines (DNA)"] = make_parser("x", "", generations_flag=False)
    return parsers


def test_every_option_has_help_that_says_its_default():
    missing, silent = [], []
    for where, p in _all_parsers().items():
        for a in p._actions:
            if isinstance(a, (argparse._HelpAction, argparse._SubParsersAction)):
                continue
            name = a.option_strings[0] if a.option_strings else a.dest
            if not (a.help or "").strip():
                missing.append(f"{where} {name}")
            elif not help_says_default(a):
                silent.append(f"{where} {name} (default {a.default!r})")
    assert not missing, f"options without help: {missing}"
    assert not silent, f"options whose help does not say the default: {silent}"
    text = _sub_parsers(build_parser())["train-block"].format_help()
    assert "(default: 20)" in text and "(default: mbconv-tiny)" in text


# canonical spelling first, then the old spellings it replaces
CONCEPTS = (
    ("--num-workers", "--workers"),
    ("--teacher-pretrained", "--pretrained"),
    ("--max-steps", "--steps-per-epoch", "--max-train-batches"),
    ("--optimizer", "--opt"),
)


def test_one_flag_name_per_concept():
    for where, p in _all_parsers().items():
        for a in p._actions:
            for canonical, *old in CONCEPTS:
                if set(a.option_strings) & {canonical, *old}:
                    assert a.option_strings[0] == canonical, f"{where}: {a.option_strings} should start with {canonical}"


ALIASES = [
    ("train-block", ["--block", "0", "--supernets", "s"], "--num-workers", "--workers", "3"),
    ("train-block", ["--block", "0", "--supernets", "s"], "--teacher-pretrained", "--pretrained", None),
    ("rate", ["--supernets", "s", "--out", "o"], "--num-workers", "--workers", "2"),
    ("rate", ["--supernets", "s", "--out", "o"], "--teacher-pretrained", "--pretrained", None),
    ("train-pp", ["--out", "o"], "--teacher-pretrained", "--pretrained", None),
    ("train-pp", ["--out", "o"], "--num-workers", "--workers", "1"),
    ("retrain", ["m", "--out", "o"], "--num-workers", "--workers", "4"),
    ("retrain", ["m", "--out", "o"], "--optimizer", "--opt", "adamw"),
    ("retrain", ["m", "--out", "o"], "--max-steps", "--steps-per-epoch", "7"),
    ("transfer", ["cls", "a.json", "--out", "o"], "--num-workers", "--workers", "2"),
    ("transfer", ["cls", "a.json", "--out", "o"], "--optimizer", "--opt", "adamw"),
    ("transfer", ["cls", "a.json", "--out", "o"], "--max-steps", "--max-train-batches", "5"),
]


@pytest.mark.parametrize("cmd, base, canonical, alias, value", ALIASES,
                         ids=[f"{c}{a}" for c, _, _, a, _ in ALIASES])
def test_old_spellings_parse_to_the_same_dest(cmd, base, canonical, alias, value):
    parser = build_parser()
    extra = [] if value is None else [value]
    new = vars(parser.parse_args([cmd, *base, canonical, *extra]))
    old = vars(parser.parse_args([cmd, *base, alias, *extra]))
    default = vars(parser.parse_args([cmd, *base]))
    assert new == old != default


def test_a_bad_value_is_named_with_the_spelling_typed(tmp_path, capsys):
    for flag in ("--workers", "--num-workers"):
        code = main(["train-block", "--block", "0", "--supernets", str(tmp_path), flag, "5000"])
        assert code == 2
        assert f"{flag} 5000: expected an integer in 0..256" in capsys.readouterr().err
    code = main(["retrain", "x.json", "--out", str(tmp_path / "r"), "--max-steps", "0"])
    assert code == 2 and "--max-steps 0" in capsys.readouterr().err
