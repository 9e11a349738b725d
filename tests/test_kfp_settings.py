"""Pod settings per task kind in the compiled YAML (CPU/memory parameters, /dev/shm, retries,
timeouts) and the typed run parameters (preset defaults; they win over run_config where the
components read it). Compiled in-process, once per module."""

from __future__ import annotations

import io
import json

import pytest
import yaml

from components import _runtime as rt
from components.data import prepare_data
from components.overrides import TYPED, apply_overrides, from_config
from dna.errors import DnaError
from pipelines import dna_plus, dna_pp
from pipelines import task_settings as ts
from pipelines.presets import PRESETS

# executor -> task kind (the DNA+ pipeline of two generations has every kind of task)
KIND_OF = {
    "exec-prepare-data": ts.LIGHT, "exec-search": ts.LIGHT, "exec-summarize": ts.LIGHT,
    "exec-train-teacher": ts.TRAIN, "exec-scale-teacher": ts.TRAIN, "exec-retrain": ts.TRAIN,
    "exec-transfer": ts.TRAIN, "exec-train-supernets": ts.FANOUT, "exec-rate-blocks": ts.FANOUT,
    "exec-random-baseline": ts.TRAIN,
}


def _compile(tmp_path, module, argv) -> tuple[dict, dict]:
    path = str(tmp_path / "p.yaml")
    assert module.main([*argv, "--compile", path], out=io.StringIO()) == 0
    spec, platform = list(yaml.safe_load_all(open(path)))
    return spec, platform["platforms"]["kubernetes"]["deploymentSpec"]["executors"]


@pytest.fixture(scope="module")
def compiled(tmp_path_factory):
    return _compile(tmp_path_factory.mktemp("c"), dna_plus, ["--generations", "2", "--preset", "imagenet",
                                                             "--data", "s3://data/imagenet"])


def _tasks(spec: dict) -> list[tuple[str, dict]]:
    """(executor, task) of every task of the pipeline and its sub-pipelines."""
    comps = spec["components"]
    dags = [spec["root"]["dag"]] + [c["dag"] for c in comps.values() if "dag" in c]
    return [(comps[t["componentRef"]["name"]]["executorLabel"], t) for dag in dags for t in dag["tasks"].values()
            if "executorLabel" in comps[t["componentRef"]["name"]]]


def _base(executor: str) -> str:
    """``exec-search-2`` -> ``exec-search`` (KFP numbers a component's second use)."""
    head, _, tail = executor.rpartition("-")
    return head if tail.isdigit() else executor


def test_resources_per_task_kind_are_pipeline_parameters(compiled):
    spec, _ = compiled
    params = spec["root"]["inputDefinitions"]["parameters"]
    for name, default in ts.RESOURCE_PARAMETERS.items():
        assert params[name]["parameterType"] == "STRING" and params[name]["defaultValue"] == default
    executors = spec["deploymentSpec"]["executors"]
    assert {_base(e) for e in executors} == set(KIND_OF)
    for executor, body in executors.items():
        kind = KIND_OF[_base(executor)]
        res = body["container"]["resources"]
        for field, key in [("cpu_request", "resourceCpuRequest"), ("cpu_limit", "resourceCpuLimit"),
                           ("memory_request", "resourceMemoryRequest"), ("memory_limit", "resourceMemoryLimit")]:
            assert res[key] == f"{{{{$.inputs.parameters['pipelinechannel--{kind}_{field}']}}}}", (executor, key)
    # the final stage (a sub-pipeline) gets the light and training resources as its inputs
    final = spec["root"]["dag"]["tasks"]["final-stage"]["inputs"]["parameters"]
    assert final["train_memory_limit"]["componentInputParameter"] == "train_memory_limit"
    assert final["light_cpu_request"]["componentInputParameter"] == "light_cpu_request"


def test_shm_retries_and_timeouts_by_kind(compiled):
    spec, platform = compiled
    assert set(platform) == set(spec["deploymentSpec"]["executors"])
    for executor, cfg in platform.items():
        kind = KIND_OF[_base(executor)]
        assert int(cfg["activeDeadlineSeconds"]) == ts.TIMEOUT_DEFAULTS[kind], executor
        shm = [m for m in cfg.get("emptyDirMounts", []) if m["mountPath"] == "/dev/shm"]
        if kind == ts.LIGHT:
            assert not shm, executor
        else:
            assert shm == [{"volumeName": "dshm", "mountPath": "/dev/shm", "medium": "Memory",
                            "sizeLimit": ts.SHM_SIZE}], executor
    tasks = _tasks(spec)
    for executor, task in tasks:
        retry = task.get("retryPolicy")
        if KIND_OF[_base(executor)] == ts.LIGHT:
            assert retry is None, executor
        else:
            assert retry["maxRetryCount"] == ts.RETRIES and retry["backoffDuration"] == ts.RETRY_BACKOFF, executor


def test_compile_time_flags_change_shm_retries_timeouts_and_resource_defaults(tmp_path):
    spec, platform = _compile(tmp_path, dna_plus, [
        "--generations", "1", "--task-resource", "train.memory_limit=96Gi", "--task-resource", "light.cpu_request=250m",
        "--task-timeout", "train=3d", "--retries", "0", "--shm-size", "none"])
    params = spec["root"]["inputDefinitions"]["parameters"]
    assert params["train_memory_limit"]["defaultValue"] == "96Gi"
    assert params["light_cpu_request"]["defaultValue"] == "250m"
    assert int(platform["exec-retrain"]["activeDeadlineSeconds"]) == 3 * 86400
    assert int(platform["exec-search"]["activeDeadlineSeconds"]) == ts.TIMEOUT_DEFAULTS[ts.LIGHT]
    assert platform["exec-retrain"]["emptyDirMounts"] == [{"volumeName": "dshm", "mountPath": "/dev/shm",
                                                           "medium": "Memory"}]
    assert not any("retryPolicy" in t for _, t in _tasks(spec))


@pytest.mark.parametrize("argv,message", [
    (["--task-resource", "train.memory_limit=lots"], "'lots': expected memory"),
    (["--task-resource", "gpu.cpu_limit=2"], "KIND one of light, train, fanout"),
    (["--task-resource", "light.cpu_request=8"], "light_cpu_request='8' is above light_cpu_limit='2'"),
    (["--task-timeout", "train=forever"], "'forever': expected a positive duration"),
    (["--task-timeout", "gpu=1h"], "KIND one of light, train, fanout"),
    (["--retries", "-1"], "--retries -1"),
    (["--shm-size", "big"], "--shm-size 'big'"),
    (["--epochs", "0"], "--epochs 0"),
])
def test_bad_task_settings_exit_2_before_anything(argv, message, capsys):
    assert dna_plus.main([*argv, "--print-config"]) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err


def test_typed_run_parameters_default_to_the_preset(compiled):
    spec, _ = compiled
    params = spec["root"]["inputDefinitions"]["parameters"]
    run = PRESETS["imagenet"]["run"]
    assert params["data"]["defaultValue"] == "s3://data/imagenet"
    assert params["teacher"]["defaultValue"] == run["teacher"]["model"]
    assert params["epochs"]["defaultValue"] == run["block_epochs"] == 20
    assert params["epochs"]["parameterType"] == "NUMBER_INTEGER"
    assert params["retrain_epochs"]["defaultValue"] == run["retrain"]["epochs"]
    assert params["max_params"]["defaultValue"] == "5300000" and params["max_flops"]["defaultValue"] == ""
    assert params["max_latency_ms"]["defaultValue"] == ""
    # run_config JSON stays (the contract) and agrees with the typed defaults
    cfg = json.loads(params["run_config"]["defaultValue"])
    assert from_config(cfg) == {k: params[k]["defaultValue"] for k in TYPED}
    # prepare_data, where the run config is first read, takes them
    prep = spec["root"]["dag"]["tasks"]["prepare-data"]["inputs"]["parameters"]
    assert prep["data_uri"]["componentInputParameter"] == "data"
    assert prep["teacher_model"]["componentInputParameter"] == "teacher"
    for name in ("epochs", "retrain_epochs", "max_params", "max_flops", "max_latency_ms"):
        assert prep[name]["componentInputParameter"] == name


def test_dna_pp_has_typed_parameters_and_no_fanout_resources(tmp_path):
    spec, platform = _compile(tmp_path, dna_pp, ["--epochs", "3"])
    params = spec["root"]["inputDefinitions"]["parameters"]
    assert params["epochs"]["defaultValue"] == 3 and set(TYPED) <= set(params)
    assert "fanout_cpu_request" not in params and params["train_cpu_request"]["defaultValue"] == "8"
    assert platform["exec-train-pp-supernet"]["emptyDirMounts"][0]["mountPath"] == "/dev/shm"


# ----- the override function -----------------------------------------------------------------------------
def _smoke(**over) -> dict:
    from pipelines.flags import make_parser
    from pipelines.run_config import build_run_config

    d = build_run_config(make_parser("x", "", True).parse_args(["--preset", "imagenet"]), "", 1)
    d.update(over)
    return d


def test_apply_overrides_sets_what_each_parameter_names():
    d = _smoke()
    assert d["teacher"]["pretrained"] is True and d["limits"] == {"params": 5.3e6}
    out = apply_overrides(d, {"data": "s3://b/imnet", "epochs": 7, "retrain_epochs": 30, "teacher": "resnet50",
                              "max_params": "4M", "max_flops": "400M", "max_latency_ms": ""})
    assert out["data"]["uri"] == "s3://b/imnet" and out["block_epochs"] == 7 and out["retrain"]["epochs"] == 30
    assert out["teacher"] == {"model": "resnet50", "checkpoint": None, "pretrained": False, "num_classes": None}
    assert out["limits"] == {"params": 4_000_000, "flops": 400_000_000}
    assert d["block_epochs"] == 20 and d["limits"] == {"params": 5.3e6}          # the input is not changed
    # unset ("" / 0) and the same teacher keep the JSON's values, 'none' drops a limit
    kept = apply_overrides(d, {"data": "", "epochs": 0, "teacher": d["teacher"]["model"], "max_params": "none"})
    assert kept["data"] == d["data"] and kept["block_epochs"] == 20 and kept["teacher"]["pretrained"] is True
    assert kept["limits"] == {}
    # an old max_<cost> key of a hand-written JSON is replaced, not left to disagree
    legacy = {k: v for k, v in d.items() if k != "limits"} | {"max_params": 5e6}
    assert from_config(legacy)["max_params"] == "5000000"
    assert apply_overrides(legacy, {"max_params": "3M"})["limits"] == {"params": 3_000_000}


@pytest.mark.parametrize("overrides,message", [
    ({"epochs": -3}, "pipeline parameter epochs=-3: expected an integer >= 1"),
    ({"retrain_epochs": "5"}, "retrain_epochs='5': expected an integer"),
    ({"max_flops": "lots"}, "max_flops='lots'"),
    ({"max_params": "-1M"}, "max_params"),
    ({"data": 3}, "data=3: expected a string"),
    ({"gpus": 1}, "unknown typed pipeline parameter 'gpus'"),
])
def test_bad_overrides_are_named(overrides, message):
    with pytest.raises(DnaError, match=message.replace("(", r"\(").replace("[", r"\[")):
        apply_overrides(_smoke(), overrides)


def test_component_load_path_applies_and_validates_overrides(tmp_path):
    d = _smoke()
    d["root"] = str(tmp_path / "run")
    cfg = rt.load_config(json.dumps(d), overrides={"epochs": 5, "data": "s3://b/x", "max_params": "2M"})
    assert cfg.block_epochs == 5 and cfg.data.uri == "s3://b/x" and cfg.limits == {"params": 2_000_000}
    assert rt.load_config(json.dumps(d)).block_epochs == 20
    # RunConfig.validate runs on the result: a latency limit needs a latency table
    bad = rt.load_config(json.dumps(d), overrides={"max_latency_ms": "12"})
    with pytest.raises(DnaError, match="latency"):
        bad.validate(remote=True)


class _Artifact:
    def __init__(self, path):
        self.path, self.metadata = str(path), {}


def test_prepare_data_stores_the_overridden_config(tmp_path):
    from pipelines.flags import make_parser
    from pipelines.run_config import build_run_config

    d = build_run_config(make_parser("x", "", True).parse_args([]), str(tmp_path / "run"), 1)
    out = prepare_data.python_func(run_config=json.dumps(d), generations=1, run_id="r1",
                                   data=_Artifact(tmp_path / "data.json"), report=_Artifact(tmp_path / "r.md"),
                                   epochs=3, retrain_epochs=2, max_params="300k")
    cfg = json.loads(out)
    assert cfg["block_epochs"] == 3 and cfg["retrain"]["epochs"] == 2 and cfg["limits"]["params"] == 300_000
    stored = json.loads((tmp_path / "run" / "config.json").read_text())
    assert stored["block_epochs"] == 3
    with pytest.raises(DnaError, match="epochs=-1"):
        prepare_data.python_func(run_config=json.dumps(d), generations=1, run_id="r1",
                                 data=_Artifact(tmp_path / "d2.json"), report=_Artifact(tmp_path / "r2.md"), epochs=-1)
