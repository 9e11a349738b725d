"""KFP components: report rendering, runtime helpers, component specs, component bodies run
directly (``component.python_func``) on small stored inputs. No KFP runner here (see
test_pipelines.py for whole local runs)."""

from __future__ import annotations

import base64
import json
import os

import numpy as np
import pytest

from components import _runtime as rt
from components import reports
from dna import storage
from dna.generation import RunConfig, fix_teacher_classes
from dna.rate.block import scores_meta
from dna.rate.path_costs import PathCosts
from dna.rate.scores import make_table, write_scores
from dna.run_summary import run_summary
from dna.space.mbconv import MBCONV_TINY
from tests.helpers import FakeArtifact

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def artifact(tmp_path, name: str) -> FakeArtifact:
    return FakeArtifact(str(tmp_path / "kfp" / name))


def embedded_pngs(html: str) -> list[bytes]:
    out = []
    for part in html.split('src="data:image/png;base64,')[1:]:
        out.append(base64.b64decode(part.split('"', 1)[0]))
    return out


SEARCHED = {
    "arch_def": [["ds_r1_k3_s1_e1_c8_se0.25"], ["ir_r1_k3_s2_e3_c16_se0.25", "ir_r1_k5_s1_e6_c16_se0.25"],
                 ["ir_r1_k5_s2_e6_c24_se0.25"], ["ir_r2_k3_s2_e3_c40_se0.25"]],
    "resolution": 32, "num_classes": 10, "stem_channels": 16, "head_channels": 320,
    "blocks": [{"block": 0, "cell": 1, "ops": "k3e3-k5e6"}, {"block": 1, "cell": 0, "ops": "k5e6"},
               {"block": 2, "cell": 1, "ops": "k3e3-k3e3"}],
}
BEST = {"loss": 1.2345, "params": 123456, "flops": 2345678, "blocks": SEARCHED["blocks"],
        "arch_def": SEARCHED["arch_def"]}


# ----- reports ---------------------------------------------------------------------------------------
def test_arch_layers_come_from_the_library():
    layers = reports.arch_layers(SEARCHED)
    assert len(layers) == 6 and [x["stage"] for x in layers] == [0, 1, 1, 2, 3, 3]
    assert layers[2] == {"stage": 1, "type": "ir", "kernel": 5, "kernels": [5], "expansion": 6.0, "stride": 1,
                         "channels": 16, "se": 0.25}
    assert layers[0]["type"] == "ds" and layers[0]["expansion"] == 1.0
    assert layers[4]["stride"] == 2 and layers[5]["stride"] == 1          # only a stage's first layer
    deeper = reports.arch_layers(dict(SEARCHED, depth_multiplier=1.5))
    assert len(deeper) > len(layers)
    assert reports.stage_labels(SEARCHED) == ["fixed", "block 0", "block 1", "block 2"]


def test_drawings_are_png():
    png = reports.draw_architecture(SEARCHED, title="t")
    assert png.startswith(PNG_MAGIC) and len(png) > 2000
    fronts = {"params": [{"loss": 2.0, "params": 100, "flops": 10}, {"loss": 1.0, "params": 300, "flops": 30}],
              "flops": [{"loss": 2.0, "params": 100, "flops": 10}]}
    png = reports.draw_pareto(fronts, {"loss": 1.0, "params": 300, "flops": 30}, {"params": 350})
    assert png.startswith(PNG_MAGIC)


def test_search_report_html():
    fronts = {"params": [{"loss": 2.0, "params": 100000, "flops": 10}, BEST], "flops": [BEST]}
    html = reports.search_report({"architectures": [BEST]}, SEARCHED, fronts, {"params": 2e5, "flops": None}, 0,
                                 where={"architecture": "/r/gen0/search/arch.json"})
    assert html.startswith("<!DOCTYPE html>")
    for needle in ("k3e3-k5e6", "k5e6", "123,456", "2,345,678", "123K", "/r/gen0/search/arch.json", "Pareto"):
        assert needle in html
    pngs = embedded_pngs(html)
    assert len(pngs) == 2 and all(p.startswith(PNG_MAGIC) for p in pngs)


def test_retrain_transfer_summary_reports():
    m = {"top1": 71.5, "top5": 98.0, "best_top1": 72.0, "best_epoch": 2, "epochs": 3, "params": 5000,
         "flops": 90000, "history": [{"epoch": 1, "train_loss": 2.0, "val_loss": 1.9, "val_top1": 40.0}]}
    html = reports.retrain_report(m, reports.draw_architecture(SEARCHED), SEARCHED)
    assert "71.5" in html and len(embedded_pngs(html)) == 2
    assert "no transfer tasks" in reports.transfer_report({})
    t = reports.transfer_report({"seg": {"miou": 0.4321, "history": [1], "config": {"lr": 1}}},
                                {"seg": reports.draw_architecture(SEARCHED)})
    assert "0.4321" in t and "Segmentation" in t and len(embedded_pngs(t)) == 1
    summary = {"root": "/r", "final": {"search": BEST, "retrain": m, "transfer": {"det": {"map": 0.25}}},
               "generations": [{"generation": 0, "teacher": {"model": "tiny"}, "search": BEST}],
               "artifacts": {"final model (retrained)": "/r/gen0/retrain/model.pt"}}
    s = reports.summary_report(summary, SEARCHED, {"params": [BEST]}, None, {})
    for needle in ("71.5", "123,456", "transfer det: map", "/r/gen0/retrain/model.pt", "k3e3-k5e6"):
        assert needle in s
    md = reports.blocks_report("train", {0: {"epochs": 1, "loss": 0.5, "cached": True}, 1: {"loss": 0.7}}, 0)
    assert md.startswith("# Block supernets") and "| 0 | 1 | 0.5 | yes |" in md


# ----- runtime helpers ------------------------------------------------------------------------------------
def test_runtime_helpers(tmp_path, monkeypatch):
    from dna.teacher import TeacherConfig

    a = artifact(tmp_path, "teacher")
    x, w = str(tmp_path / "x.json"), str(tmp_path / "w.pt")
    for f in (x, w):
        open(f, "w").close()
    rt.write_teacher(a, TeacherConfig(model=x, checkpoint=w), 1)
    assert rt.read_teacher(a) == TeacherConfig(model=x, checkpoint=w)
    assert a.metadata["checkpoint"] == w and a.metadata["generation"] == 1
    m = FakeArtifact(str(tmp_path / "m"))
    rt.log_metrics(m, {"a": 1, "b": {"c": 2.5, "s": "text"}, "nan": float("nan"), "flag": True})
    assert m.metadata == {"a": 1.0, "b.c": 2.5}
    monkeypatch.setenv("DNA_RUN_ROOT", "s3://bucket/runs")
    assert rt.resolve_root("", "abc-123") == "s3://bucket/runs/abc-123"
    assert rt.resolve_root("/given", "abc") == "/given"
    monkeypatch.delenv("DNA_RUN_ROOT")
    with pytest.raises(ValueError, match="DNA_RUN_ROOT"):
        rt.resolve_root("", "abc")
    data = RunConfig(root=str(tmp_path)).data
    t = fix_teacher_classes(TeacherConfig(model="efficientnet_b0", checkpoint="/w.pt"), data)
    assert t.num_classes == 10                      # a timm teacher trained here predicts the data's classes
    assert fix_teacher_classes(TeacherConfig(model="a.json", checkpoint="/w.pt"), data).num_classes is None


def test_run_limits_drop_no_cost():
    from dna.run_summary import limits

    assert limits(RunConfig(root="r")) == {"params": None, "flops": None}
    cfg = RunConfig(root="r", limits={"flops": 4e8, "latency_ms": 12.5})
    assert limits(cfg) == {"params": None, "flops": 4e8, "latency_ms": 12.5}
    html = reports.search_report({"architectures": [{"loss": 1.0, "params": 10, "flops": 20, "latency_ms": 3.0,
                                                     "blocks": []}]}, {"arch_def": [["ds_r1_k3_s1_e1_c8"]]}, None, limits(cfg))
    assert "latency (ms)" in html and "12.5" in html


def test_components_are_lightweight_and_offline():
    from components import settings
    from components.data import prepare_data
    from components.random_baseline import random_baseline
    from components.rate import rate_blocks
    from components.retrain import retrain
    from components.scale import scale_teacher
    from components.search import search
    from components.summary import summarize
    from components.supernet import train_supernets
    from components.teacher import train_teacher
    from components.transfer import transfer

    for comp in (prepare_data, train_teacher, train_supernets, rate_blocks, search, retrain, scale_teacher,
                 transfer, summarize, random_baseline):
        container = comp.component_spec.implementation.container
        command = " ".join(container.command or []) + " ".join(container.args or [])
        assert container.image == settings.IMAGE
        assert "pip install" not in command and "kfp.dsl.executor_main" in command
        assert comp.component_spec.inputs["run_config"].type == "String"


# ----- component bodies on stored inputs -------------------------------------------------------------------------
def synthetic_scores(uri: str, seed: int = 0) -> None:
    """A complete scores table of mbconv-tiny: real costs, seeded losses falling with cost."""
    rng = np.random.default_rng(seed)
    space = MBCONV_TINY
    costs = PathCosts(space, space.resolution)
    for k in range(len(space.blocks)):
        rows = {c: [] for c in ("block", "cell", "ops", "in_channels", "out_channels", "loss", "params", "flops")}
        for c, cell in enumerate(space.blocks[k].cells):
            for path in space.paths(k, c):
                for w in space.in_widths(k):
                    p, f = (costs.path(k, c, path, w)[n] for n in ("params", "flops"))
                    for col, v in zip(rows, (k, c, "-".join(path), w, cell.channels,
                                             1.0 / (1 + p / 1e4) + 0.05 * rng.random(), p, f), strict=True):
                        rows[col].append(v)
        write_scores(make_table(rows, scores_meta(space, space.resolution, "t", 0)), uri, partitioned=True)


def test_prepare_search_summary_bodies(tmp_path, monkeypatch):
    from components.data import prepare_data
    from components.search import search
    from components.summary import summarize
    from dna.layout import generation

    monkeypatch.setenv("DNA_RUN_ROOT", str(tmp_path / "runs"))
    cfg = RunConfig(root="", transfer=[], max_params=4e5)
    out = prepare_data.python_func(run_config=json.dumps(cfg.to_dict()), generations=1, run_id="run-7",
                                   data=artifact(tmp_path, "data"), report=artifact(tmp_path, "data.md"))
    resolved = json.loads(out)
    root = str(tmp_path / "runs" / "run-7")
    assert resolved["root"] == root and storage.exists(os.path.join(root, "config.json"))
    assert "circle" in open(tmp_path / "kfp" / "data.md").read()

    synthetic_scores(generation(root, 0).scores)
    arch, metrics, report, scores = (artifact(tmp_path, n) for n in ("arch", "metrics", "search.html", "scores"))
    rt.write_pointer(scores, "scores", generation(root, 0).scores, 0)
    search.python_func(run_config=out, generation=0, scores=scores, arch=arch, metrics=metrics, report=report)
    stored = storage.read_json(os.path.join(root, "gen0", "search", "arch.json"))
    assert json.load(open(arch.path)) == stored and metrics.metadata["params"] <= 4e5
    html = open(report.path).read()
    assert stored["blocks"][0]["ops"] in html and len(embedded_pngs(html)) == 2
    assert open(os.path.join(root, "gen0", "reports", "search.html")).read() == html
    pareto = storage.read_json(os.path.join(root, "gen0", "search", "pareto.json"))
    assert len(pareto["params"]) >= 2

    summary = run_summary(RunConfig.from_dict(json.loads(out)))
    assert summary["final"]["search"]["params"] == metrics.metadata["params"]
    assert summary["artifacts"]["final architecture"].endswith("gen0/search/arch.json")

    # summarize reads the answer from its inputs and writes the one summary shape
    weights = os.path.join(root, "gen0", "retrain", "model.pt")
    storage.write_bytes(b"weights", weights)
    model, transfer = artifact(tmp_path, "model"), artifact(tmp_path, "transfer")
    model.metadata["uri"] = weights
    rt.write_pointer(transfer, "transfer", generation(root, 0).transfer, 0, tasks=[])
    out_summary = artifact(tmp_path, "summary")
    summarize.python_func(run_config=out, arch=arch, model=model, transfer=transfer, summary=out_summary,
                          metrics=artifact(tmp_path, "m"), report=artifact(tmp_path, "summary.html"))
    stored = storage.read_json(os.path.join(root, "summary.json"))
    assert stored == json.load(open(out_summary.path)) == summary


def test_dnapp_bodies_train_rate_search_retrain(tmp_path):
    """DNA++ end to end through the component bodies (tiny ViT space, one step each)."""
    from components.dnapp import rate_pp, retrain_vit, train_pp_supernet
    from components.search import search

    root = str(tmp_path / "run")
    cfg = RunConfig.from_dict({
        "root": root, "space": "vit-tiny", "teacher": {"model": "default"}, "block_epochs": 1, "block_max_steps": 1,
        "rate_max_batches": 1, "transfer": [],
        "data": {"train_size": 64, "val_size": 32, "rating_size": 32, "batch_size": 32},
        "retrain": {"epochs": 1, "steps_per_epoch": 1, "lr": 1e-3, "auto_augment": None, "drop_path_rate": 0.0}})
    run_config = json.dumps(cfg.to_dict())
    pp = json.dumps({"train": {"lr": 0.2, "proj_dim": 16, "proj_hidden": 16},
                     "retrain": {"warmup_epochs": 0.0, "mixup": 0.0, "cutmix": 0.0, "reprob": 0.0}})
    supernet, teacher, data = artifact(tmp_path, "supernet"), artifact(tmp_path, "teacher"), artifact(tmp_path, "data")
    rt.write_json_artifact(data, {"data": cfg.data.to_dict()}, uri=cfg.data.uri)
    train_pp_supernet.python_func(run_config=run_config, pp_config=pp, data=data,
                                  supernet=supernet, teacher=teacher, metrics=artifact(tmp_path, "m1"),
                                  report=artifact(tmp_path, "r1.md"))
    assert rt.read_teacher(teacher).checkpoint.endswith("gen0/supernet/teacher.pt")
    scores = artifact(tmp_path, "scores")
    rate_pp.python_func(run_config=run_config, supernet=supernet, scores=scores, metrics=artifact(tmp_path, "m2"),
                        report=artifact(tmp_path, "r2.md"))
    assert json.load(open(scores.path))["uri"].endswith("gen0/scores")
    arch, report = artifact(tmp_path, "arch"), artifact(tmp_path, "search.html")
    search.python_func(run_config=run_config, generation=0, scores=scores, arch=arch,
                       metrics=artifact(tmp_path, "m3"), report=report)
    arch_json = json.load(open(arch.path))
    assert reports.is_vit(arch_json) and len(arch_json["blocks"]) == 4
    assert arch_json["blocks"][0]["ops"] in open(report.path).read()
    model, report = artifact(tmp_path, "model"), artifact(tmp_path, "retrain.html")
    retrain_vit.python_func(run_config=run_config, pp_config=pp, generation=0, arch=arch, model=model,
                            metrics=artifact(tmp_path, "m4"), report=report)
    assert model.metadata["top1"] >= 0 and os.path.getsize(model.path) > 0
    assert storage.exists(os.path.join(root, "gen0", "retrain", "metrics.json"))
    assert len(embedded_pngs(open(report.path).read())) >= 1


# ----- KFP edges carry the data -------------------------------------------------------------------------
def all_components():
    from components import dnapp, summary
    from components.data import prepare_data
    from components.random_baseline import random_baseline
    from components.rate import rate_blocks
    from components.retrain import retrain
    from components.scale import scale_teacher
    from components.search import search
    from components.supernet import train_supernets
    from components.teacher import train_teacher
    from components.transfer import transfer

    return [prepare_data, train_teacher, train_supernets, rate_blocks, search, retrain, scale_teacher, transfer,
            summary.summarize, dnapp.train_pp_supernet, dnapp.rate_pp, dnapp.retrain_vit, random_baseline]


class AllInputsRead(Exception):
    """Raised when a component body has touched every input artifact it declares."""


class RecordingInput(FakeArtifact):
    """An input artifact that notes when the component reads it (its file or its metadata)."""

    def __init__(self, path: str, uri: str, name: str, seen: set, declared: set):
        super().__init__(path)
        self._meta = {"uri": uri}
        self._name, self._seen, self._declared = name, seen, declared

    def _touch(self):
        self._seen.add(self._name)
        if self._seen >= self._declared:
            raise AllInputsRead(sorted(self._seen))

    def __getattribute__(self, attr):
        if attr in ("path", "metadata"):
            object.__getattribute__(self, "_touch")()
            return object.__getattribute__(self, "_meta" if attr == "metadata" else "path")
        return object.__getattribute__(self, attr)


def _arguments(comp, tmp_path, seen: set):
    """Parameters with harmless values, recording inputs (valid pointers), plain outputs."""
    spec = comp.component_spec
    declared = {n for n, s in (spec.inputs or {}).items() if "@" in s.type}
    existing = tmp_path / "exists"
    existing.mkdir(exist_ok=True)
    pointer = tmp_path / "pointer.json"
    pointer.write_text(json.dumps({"uri": str(existing), "tasks": ["seg"], "data": {"uri": "builtin:shapes"},
                                   "teacher": {"model": "efficientnet_b0", "checkpoint": str(existing)}}))
    kw = {}
    for name, s in (spec.inputs or {}).items():
        if name in declared:
            kw[name] = RecordingInput(str(pointer), str(existing), name, seen, declared)
        elif s.type == "Integer":
            kw[name] = 0
        elif name == "run_config":
            kw[name] = json.dumps(RunConfig(root=str(tmp_path / "run"), space=_space(comp), transfer=[]).to_dict())
        else:
            kw[name] = "{}" if name == "pp_config" else ""
    for name in spec.outputs or {}:
        if name != "Output":
            kw[name] = artifact(tmp_path, name)
    return kw, declared


def _space(comp) -> str:
    return "vit-tiny" if comp.name in ("train-pp-supernet", "rate-pp", "retrain-vit") else "mbconv-tiny"


@pytest.mark.parametrize("comp", all_components(), ids=lambda c: c.name)
def test_every_declared_input_is_read(tmp_path, comp):
    """A component reads every input artifact it declares before it does any work, so the DAG's
    edges are what it consumes (an input it never read would let the component finish here)."""
    seen: set = set()
    kw, declared = _arguments(comp, tmp_path, seen)
    if not declared:
        return                                           # prepare_data: parameters only
    with pytest.raises(AllInputsRead):
        comp.python_func(**kw)
    assert seen == declared


def test_an_edge_to_a_deleted_uri_fails_naming_it(tmp_path):
    """A KFP cache hit can hand a stage an artifact of a run root deleted since: a clear error."""
    from components.retrain import retrain
    from components.search import search

    cfg = json.dumps(RunConfig(root=str(tmp_path / "run"), transfer=[]).to_dict())
    gone = str(tmp_path / "deleted-run" / "gen0" / "scores")
    scores = artifact(tmp_path, "scores")
    rt.write_pointer(scores, "scores", gone, 0)
    scores.metadata.clear()                              # the pointer JSON alone names the URI
    with pytest.raises(ValueError, match=rf"input 'scores' points at {gone}, which does not exist"):
        search.python_func(run_config=cfg, generation=0, scores=scores, arch=artifact(tmp_path, "a"),
                           metrics=artifact(tmp_path, "m"), report=artifact(tmp_path, "r"))
    arch, teacher = artifact(tmp_path, "arch"), artifact(tmp_path, "teacher")
    arch.metadata["uri"] = str(tmp_path / "deleted-run" / "gen0" / "search" / "arch.json")
    with pytest.raises(ValueError, match="input 'arch' points at .*deleted-run/gen0/search/arch.json"):
        retrain.python_func(run_config=cfg, generation=0, arch=arch, teacher=teacher, model=artifact(tmp_path, "w"),
                            metrics=artifact(tmp_path, "m"), report=artifact(tmp_path, "r"))
    from dna.teacher import TeacherConfig

    rt.write_teacher(teacher, TeacherConfig(model="efficientnet_b0", checkpoint=str(tmp_path / "gone.pt")), 0)
    with pytest.raises(ValueError, match="input 'teacher' points at .*gone.pt"):
        rt.read_teacher(teacher)
    with pytest.raises(ValueError, match="names no URI"):
        rt.input_uri(artifact(tmp_path, "empty"), "empty")


def test_a_local_runs_tasks_use_every_core_and_its_ray_workers_one(monkeypatch):
    """KFP's local runner runs one task at a time: a training task on one thread left cores idle."""
    from components._runtime import TASK_THREADS_ENV
    from pipelines.local_run import local_cores, set_thread_env

    for name in ("DNA_TORCH_THREADS", "OMP_NUM_THREADS", TASK_THREADS_ENV):
        monkeypatch.delenv(name, raising=False)
    set_thread_env()
    assert os.environ["DNA_TORCH_THREADS"] == os.environ["OMP_NUM_THREADS"] == "1"   # the Ray workers
    assert rt.task_threads() == local_cores() >= 1
    monkeypatch.setenv(TASK_THREADS_ENV, "3")       # what a user set is kept
    set_thread_env()
    assert rt.task_threads() == 3
    monkeypatch.delenv(TASK_THREADS_ENV)            # outside a local run: the workers' cap, else torch's default
    assert rt.task_threads() == 1
    monkeypatch.delenv("DNA_TORCH_THREADS")
    assert rt.task_threads() is None
