"""The pipelines: compile + load back, presets as defaults, bad input, submission and scheduling
against a fake KFP client, cron, and whole local runs on KFP's local runner (small overrides)."""

from __future__ import annotations

import io
import json
import os

import pytest
import yaml
from google.protobuf import json_format
from kfp.kubernetes import kubernetes_executor_config_pb2 as k8s_pb
from kfp.pipeline_spec import pipeline_spec_pb2

from dna import storage
from pipelines import cli, dna_plus, dna_pp
from pipelines import dna as dna_pipeline
from pipelines.cron import CronError, explain_cron, validate_cron
from pipelines.flags import make_parser
from pipelines.graph import BuildOptions
from pipelines.local_run import _HideExecutorInput
from pipelines.parameters import pipeline_arguments
from pipelines.presets import PRESETS
from pipelines.submit import compile_pipeline

# A two-block space (the tiny teacher's last two stages) keeps the Ray fan-outs of the local runs
# to one wave of two jobs.
SPACE = {"name": "test-2blocks", "kind": "mbconv", "ops": ["k3e3", "k5e3"],
         "blocks": [{"stride": 2, "cells": [[1, 32], [2, 32]]}, {"stride": 1, "cells": [[1, 48]]}],
         "se_ratio": 0.25, "stem_channels": 16, "first_channels": 8, "head_channels": 64, "resolution": 32,
         "num_classes": 10}
TINY = ["--set", "data.train_size=64", "--set", "data.val_size=32", "--set", "data.batch_size=32",
        "--set", "data.resolution=32", "--set", "data.rating_size=32",
        "--set", "teacher_train.epochs=1", "--set", "teacher_train.steps_per_epoch=1",
        "--set", "retrain.epochs=1", "--set", "retrain.steps_per_epoch=2", "--set", "block_max_steps=1",
        "--transfer", "none"]


def load_yaml(path):
    docs = list(yaml.safe_load_all(open(path)))
    spec = json_format.ParseDict(docs[0], pipeline_spec_pb2.PipelineSpec())
    platform = docs[1]["platforms"]["kubernetes"]["deploymentSpec"]["executors"]
    k8s = {name: json_format.ParseDict(cfg, k8s_pb.KubernetesExecutorConfig()) for name, cfg in platform.items()}
    return docs[0], spec, k8s


def all_tasks(spec_dict) -> list[str]:
    names = list(spec_dict["root"]["dag"]["tasks"])
    for comp in spec_dict["components"].values():
        names += list(comp.get("dag", {}).get("tasks", {}))
    return names


# ----- compile ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("module,generations", [(dna_pipeline, 1), (dna_plus, 3)])
def test_pipeline_compiles_and_loads_back(tmp_path, module, generations):
    from kfp.components import load_component_from_file

    path = str(tmp_path / "p.yaml")
    func = module.build(generations, BuildOptions(image="reg/dna-nas:1", pvc_mount="/mnt/dna"))
    compile_pipeline(func, path, {"gpus": 1})
    loaded = load_component_from_file(path)
    assert loaded.name == module.NAME
    d, spec, k8s = load_yaml(path)
    assert spec.pipeline_info.name == module.NAME
    tasks = all_tasks(d)
    assert sum(t.startswith("train-supernets") for t in tasks) == generations
    assert sum(t.startswith("scale-teacher") for t in tasks) == generations - 1
    assert sum(t.startswith("random-baseline") for t in tasks) == generations     # one per generation
    assert {"final-stage", "retrain", "transfer", "summarize"} <= set(tasks)
    # the final stage depends (through its inputs) on the last rating: it is the last stage
    final = d["root"]["dag"]["tasks"]["final-stage"]
    last_rate = "rate-blocks" if generations == 1 else f"rate-blocks-{generations}"
    assert final["inputs"]["artifacts"]["scores"]["taskOutputArtifact"]["producerTask"] == last_rate
    assert set(d["root"]["inputDefinitions"]["parameters"]) >= {
        "run_config", "gpus", "gpus_per_block", "ray_address", "storage_secret", "node_selector", "tolerations",
        "pvc_name", "accelerator_type", "max_concurrent_blocks", "fanout_gpus"}
    assert d["root"]["inputDefinitions"]["parameters"]["gpus"]["defaultValue"] == 1
    for executor in d["deploymentSpec"]["executors"].values():
        assert executor["container"]["image"] == "reg/dna-nas:1"
        assert "pip install" not in " ".join(executor["container"]["command"])
    for cfg in k8s.values():
        assert cfg.secret_as_env[0].secret_name_parameter.component_input_parameter == "storage_secret"
        assert {m.env_var for m in cfg.secret_as_env[0].key_to_env} == {"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"}
        assert cfg.config_map_as_env[0].config_map_name == "dna-settings"
        assert cfg.pvc_mount[0].mount_path == "/mnt/dna"
    heavy = k8s["exec-retrain"]
    assert heavy.node_selector.node_selector_json.component_input_parameter == "node_selector"
    assert heavy.tolerations[0].toleration_json.component_input_parameter == "tolerations"
    assert not k8s["exec-search"].HasField("node_selector")
    gpu = d["deploymentSpec"]["executors"]["exec-retrain"]["container"]["resources"]["accelerator"]
    assert "gpus" in gpu["resourceCount"] and "accelerator_type" in gpu["resourceType"]


def test_dna_pp_compiles_with_its_preset(tmp_path):
    path = str(tmp_path / "pp.yaml")
    assert dna_pp.main(["--compile", path, "--set", "pp.train.lr=0.1", "--epochs", "3"], out=io.StringIO()) == 0
    d, spec, k8s = load_yaml(path)
    assert spec.pipeline_info.name == "dna-pp"
    tasks = all_tasks(d)
    assert {"train-pp-supernet", "rate-pp", "final-stage-vit", "search", "retrain-vit", "transfer",
            "summarize"} <= set(tasks)
    assert not any(t.startswith(("train-supernets", "scale-teacher")) for t in tasks)
    params = d["root"]["inputDefinitions"]["parameters"]
    assert "gpus_per_block" not in params                     # one job trains every block
    pp = json.loads(params["pp_config"]["defaultValue"])
    assert pp["train"]["lr"] == 0.1 and pp["train"]["mode"] == "dnapp"
    cfg = json.loads(params["run_config"]["defaultValue"])
    assert cfg["space"] == "vit-tiny" and cfg["block_epochs"] == 3
    assert k8s["exec-train-pp-supernet"].secret_as_env
    assert dna_pp.main(["--space", "mbconv-tiny", "--print-config"]) == 2      # DNA++ needs a ViT space


def test_compile_with_preset_sets_defaults(tmp_path):
    path = str(tmp_path / "cifar.yaml")
    out = io.StringIO()
    rc = dna_plus.main(["--preset", "cifar", "--data", "s3://data/cifar10", "--generations", "2", "--compile", path,
                        "--max-params", "2M", "--node-selector", "gpu=a100", "--toleration", "nvidia.com/gpu:NoSchedule",
                        "--storage-secret", "dna-storage"], out=out)
    assert rc == 0 and "upload" in out.getvalue()
    d, _, k8s = load_yaml(path)
    params = d["root"]["inputDefinitions"]["parameters"]
    cfg = json.loads(params["run_config"]["defaultValue"])
    preset = PRESETS["cifar"]
    assert cfg["space"] == preset["run"]["space"] == "mbconv" and cfg["data"]["uri"] == "s3://data/cifar10"
    assert cfg["block_epochs"] == preset["run"]["block_epochs"] and cfg["limits"]["params"] == 2_000_000
    assert cfg["generations"] == 2 and cfg["root"] == ""       # resolved in the cluster: $DNA_RUN_ROOT/<run id>
    assert params["gpus"]["defaultValue"] == preset["params"]["gpus"] == 1
    assert params["gpus_per_block"]["defaultValue"] == 1
    assert params["node_selector"]["defaultValue"] == {"gpu": "a100"}
    assert params["tolerations"]["defaultValue"] == [{"key": "nvidia.com/gpu", "operator": "Exists",
                                                      "effect": "NoSchedule"}]
    assert params["storage_secret"]["defaultValue"] == "dna-storage"
    keys = {m.secret_key for m in k8s["exec-retrain"].secret_as_env[0].key_to_env}
    assert keys == {"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"}   # dna-storage's key names


def test_max_flags_land_in_the_run_config_limits(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "lat.json").write_text("{}")        # the rating stage's latency table is checked up front
    argv = ["--max-flops", "400M", "--max-latency-ms", "12.5", "--set", "latency_table=lat.json", "--max-act-mem",
            "2M", "--print-config"]
    assert dna_plus.main(argv) == 0
    cfg = json.loads(capsys.readouterr().out)["arguments"]["run_config"]
    cfg = json.loads(cfg) if isinstance(cfg, str) else cfg
    # the smoke preset's max_params joins the flags in one mapping
    assert cfg["limits"] == {"params": 2.5e5, "flops": 400_000_000, "latency_ms": 12.5, "act_mem": 2_000_000}
    assert "max_params" not in cfg


@pytest.mark.parametrize("argv,message", [
    (["--max-params", "-5"], "max-params"),
    (["--max-latency-ms", "5"], "max_latency_ms needs a latency_ms column"),
    (["--teacher", "no_such_net"], "no_such_net"),
    (["--generations", "0"], "generations"),
    (["--epochs", "0"], "--epochs 0"),
    (["--set", "nope=1"], "unknown run config key 'nope'"),
    (["--set", "data.resolution=8"], "resolution"),
    (["--transfer", "pose"], "pose"),
    (["--teacher-checkpoint", "/x.pt"], "need --teacher"),
    (["--schedule", "0 0 3 * * *"], "needs a KFP server"),
    (["--host", "http://kfp", "--schedule", "0 3 * * *"], "did you mean '0 0 3 * * *'"),
    (["--host", "kfp.example.com"], "expected a URL"),
    (["--host", "http://kfp", "--schedule", "0 0 3 * * *", "--root", "s3://b/r"], "reuse that root"),
    (["--scale-retrain", '{"epochz": 1}'], "retrain overrides"),
    (["--gpus-per-block", "-1"], "--gpus-per-block -1"),
    (["--set", "transfer_options.det.rois=3"], "transfer_options['det'] keys ['rois']"),
])
def test_bad_input_fails_before_any_work(tmp_path, monkeypatch, capsys, argv, message):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("KFP_HOST", raising=False)
    assert dna_plus.main(argv, client_factory=lambda *a: pytest.fail("no client for bad input")) == 2
    assert message in capsys.readouterr().err
    assert not os.path.exists(tmp_path / "runs")


@pytest.mark.parametrize("argv,message", [
    (["--data", "missing-folder"], "missing-folder"),
    (["--teacher", "no_such_net"], "no_such_net"),
    (["--set", "pp.train.nope=1"], "nope"),
])
def test_dna_pp_bad_input_fails_before_any_work(tmp_path, monkeypatch, capsys, argv, message):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("KFP_HOST", raising=False)
    monkeypatch.setattr(cli, "run_local", lambda *a, **k: pytest.fail("bad input reached the run"))
    assert dna_pp.main(argv) == 2
    assert message in capsys.readouterr().err
    assert not os.path.exists(tmp_path / "runs")


# ----- submission and scheduling against a fake KFP client -----------------------------------------------
class FakeClient:
    def __init__(self, host, namespace=None):
        self.host, self.namespace, self.calls = host, namespace, []

    def create_run_from_pipeline_func(self, pipeline_func, **kw):
        self.calls.append(("run", pipeline_func, kw))
        return type("Result", (), {"run_id": "run-123"})()

    def create_experiment(self, name, description=None, namespace=None):
        self.calls.append(("experiment", name, namespace))
        return type("Experiment", (), {"experiment_id": "exp-9"})()

    def create_recurring_run(self, **kw):
        d, _, _ = load_yaml(kw["pipeline_package_path"])      # the compiled pipeline, read while it exists
        self.calls.append(("recurring", d["pipelineInfo"]["name"], kw))
        return type("RecurringRun", (), {"recurring_run_id": "rr-5"})()


def test_submit_builds_the_run_request(monkeypatch):
    clients = []

    def factory(host, namespace):
        clients.append(FakeClient(host, namespace))
        return clients[-1]

    out = io.StringIO()
    rc = dna_pipeline.main(["--host", "http://kfp:8080/", "--experiment", "nas", "--run-name", "try-1",
                            "--namespace", "team", "--root", "s3://bucket/runs/a", "--no-cache", "--gpus", "1",
                            "--ray-address", "http://dna-ray-head-svc:8265", "--image", "reg/dna:2"],
                           client_factory=factory, out=out)
    assert rc == 0
    (client,) = clients
    assert client.host == "http://kfp:8080/" and client.namespace == "team"
    ((kind, func, kw),) = client.calls
    assert kind == "run" and func.name == "dna"
    assert kw["experiment_name"] == "nas" and kw["run_name"] == "try-1" and kw["namespace"] == "team"
    assert kw["enable_caching"] is False
    args = kw["arguments"]
    cfg = json.loads(args["run_config"])
    assert cfg["root"] == "s3://bucket/runs/a" and cfg["generations"] == 1 and cfg["space"] == "mbconv-tiny"
    assert args["gpus"] == 1 and args["ray_address"] == "http://dna-ray-head-svc:8265"
    assert set(args) == set(pipeline_arguments(make_parser("x", "", False).parse_args([]), "").keys())
    assert "http://kfp:8080/#/runs/details/run-123" in out.getvalue()


def test_schedule_builds_the_recurring_run(monkeypatch):
    monkeypatch.setenv("KFP_HOST", "https://kfp.example.com")
    client = FakeClient("x")
    out = io.StringIO()
    rc = dna_plus.main(["--generations", "2", "--schedule", "0  0 3 * * *", "--experiment", "nightly",
                        "--run-name", "dna-plus-nightly"], client_factory=lambda h, n: client, out=out)
    assert rc == 0
    (exp, rec) = client.calls
    assert exp == ("experiment", "nightly", None)
    _, name, kw = rec
    assert name == "dna-plus"
    assert kw["experiment_id"] == "exp-9" and kw["job_name"] == "dna-plus-nightly"
    assert kw["cron_expression"] == "0 0 3 * * *" and kw["max_concurrency"] == 1 and kw["no_catchup"] is True
    cfg = json.loads(kw["params"]["run_config"])
    assert cfg["root"] == "" and cfg["generations"] == 2        # every scheduled run gets its own root
    text = out.getvalue()
    assert "at 03:00:00, every day" in text and "https://kfp.example.com/#/recurringrun/details/rr-5" in text


# ----- cron -------------------------------------------------------------------------------------------------
def test_cron_validation_and_explanation():
    assert validate_cron(" 0 30 9 * * MON-FRI ") == "0 30 9 * * MON-FRI"
    assert explain_cron("0 0 3 * * *") == "at 03:00:00, every day"
    assert explain_cron("0 30 9 * * 1-5") == "at 09:30:00, on Monday through Friday"
    assert "every 15 minutes" in explain_cron("0 */15 * * * *")
    assert explain_cron("@daily") == "once a day, at midnight"
    with pytest.raises(CronError, match=r"5 fields.*seconds first.*'0 0 3 \* \* \*'"):
        validate_cron("0 3 * * *")
    for bad, msg in [("0 60 * * * *", "minute 60 is out of range 0-59"), ("0 0 24 * * *", "hour 24"),
                     ("0 0 0 32 * *", "day of month 32"), ("0 0 0 * 13 *", "month 13"),
                     ("0 0 0 * * 7", "day of week 7"), ("0 0 5-3 * * *", "backwards"),
                     ("*/0 * * * * *", "step"), ("0 0 0 * * * *", "7 fields"), ("", "empty")]:
        with pytest.raises(CronError, match=msg):
            validate_cron(bad)


# ----- whole local runs (KFP local runner, Ray fan-out) ------------------------------------------------------
def test_local_runs_dna_then_dna_plus_resuming(tmp_path, monkeypatch):
    monkeypatch.delenv("KFP_HOST", raising=False)
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    space = tmp_path / "space.json"
    space.write_text(json.dumps(SPACE))
    root = str(tmp_path / "run")
    out = io.StringIO()
    assert dna_pipeline.main(["--root", root, "--space", str(space), *TINY], out=out) == 0
    g0 = os.path.join(root, "gen0")
    for part in ("scores/block=0/part-0.parquet", "scores/block=1/part-0.parquet", "search/arch.json",
                 "search/pareto.json", "retrain/model.pt", "retrain/metrics.json", "retrain/curve.png",
                 "teacher/model.pt", "reports/search.html", "reports/retrain.html", "reports/supernets.md",
                 "reports/rating.md", "reports/transfer.html"):
        assert os.path.exists(os.path.join(g0, part)), part
    summary = storage.read_json(os.path.join(root, "summary.json"))
    assert len(summary["generations"]) == 1 and summary["final"]["retrain"]["epochs"] == 1
    html = open(os.path.join(root, "summary.html")).read()
    assert summary["final"]["search"]["blocks"][0]["ops"] in html and "data:image/png;base64," in html
    text = out.getvalue()
    assert f"run root: {root}" in text and "params" in text and "top-1" in text
    assert "teacher vs searched vs random architecture" in text and "random params" in text
    assert os.path.exists(os.path.join(g0, "random", "retrain", "metrics.json"))
    assert summary["generations"][0]["random"]["scaled"] is False

    # DNA+ on the same root: generation 0 is reused (no Ray job, no retraining), then scaled.
    out = io.StringIO()
    assert dna_plus.main(["--generations", "2", "--root", root, "--space", str(space), *TINY], out=out) == 0
    fanout = storage.read_json(os.path.join(g0, "supernet", "fanout-train.json"))
    assert fanout["cached"] == [0, 1]
    for part in ("gen0/scaled/arch.json", "gen0/scaled/retrain/model.pt", "gen0/reports/scaled.html",
                 "gen1/scores/block=0/part-0.parquet", "gen1/scores/block=1/part-0.parquet",
                 "gen1/search/arch.json", "gen1/retrain/model.pt", "gen1/retrain/metrics.json",
                 "gen1/reports/search.html", "summary.html", "gen0/random/scaled/retrain/metrics.json",
                 "gen1/random/retrain/metrics.json", "gen0/reports/random.html"):
        assert os.path.exists(os.path.join(root, part)), part
    assert not os.path.exists(os.path.join(root, "gen1", "scaled"))
    summary = storage.read_json(os.path.join(root, "summary.json"))
    assert [g["generation"] for g in summary["generations"]] == [0, 1]
    assert summary["generations"][1]["teacher"]["model"].endswith("gen0/scaled/arch.json")
    assert summary["final"]["generation"] == 1 and "scaled" in summary["generations"][0]
    # gen 0's random baseline is now trained as the scaled teacher is; DNA's unscaled one is kept
    assert [g["random"]["scaled"] for g in summary["generations"]] == [True, False]
    assert [r["searched_as"] for r in summary["comparison"]] == ["scaled", "retrained"]


def test_local_output_hides_executor_input():
    buf = io.StringIO()
    f = _HideExecutorInput(buf)
    f.write("a\n    [KFP Executor t INFO]: Got executor_input:\n    {\n        \"inputs\": {\n")
    f.write("        }\n    }\n    [dna] progress\npartial")
    f.flush()
    assert buf.getvalue() == "a\n    [dna] progress\npartial"


def test_local_run_dna_pp_smoke(tmp_path, monkeypatch):
    """DNA++ on the smoke preset (shrunk): joint SSL supernet, rating, ViT search, retrain, summary."""
    monkeypatch.delenv("KFP_HOST", raising=False)
    root = str(tmp_path / "pp")
    small = ["--set", "data.train_size=64", "--set", "data.val_size=32", "--set", "data.rating_size=32",
             "--set", "block_max_steps=2", "--set", "retrain.epochs=1", "--set", "retrain.steps_per_epoch=2",
             "--transfer", "none"]
    out = io.StringIO()
    assert dna_pp.main(["--root", root, "--preset", "smoke", *small], out=out) == 0
    g0 = os.path.join(root, "gen0")
    for part in ("supernet/teacher.pt", "scores/block=0/part-0.parquet", "scores/block=3/part-0.parquet",
                 "search/arch.json", "retrain/model.pt", "retrain/metrics.json", "reports/search.html",
                 "reports/retrain.html", "reports/supernets.md", "reports/rating.md"):
        assert os.path.exists(os.path.join(g0, part)), part
    summary = storage.read_json(os.path.join(root, "summary.json"))
    final = summary["final"]
    assert final["search"]["params"] == final["retrain"]["params"]    # the scores' prediction is the build
    assert summary["generations"][0]["teacher"]["trained"].startswith("jointly")
    assert len(final["search"]["blocks"]) == 4 and "top-1" in out.getvalue()
