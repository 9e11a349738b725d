"""Every bad pipeline setting is a clear error at the pipeline's start: exit 2, no traceback, the
message names the bad value, and nothing runs (no run folder, no KFP client, no local run).

Covers the three pipelines' flags: whole-config type checks after ``--set``, each stage's settings
(rating and calibration batches, sizes, resolution, epochs, steps), bounds on generations
(checked before the DAG is built), object-store URIs and buckets (moto), and the Ray address."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest

from dna.config_check import MAX_GENERATIONS, check_types, redact
from dna.errors import DnaError
from dna.generation import RunConfig
from pipelines import cli, dna_plus, dna_pp
from pipelines import dna as dna_pipeline
from pipelines.flags import UsageError
from pipelines.presets import PRESETS
from pipelines.store_check import check_ray_address
from tests.s3fixture import s3_bucket  # noqa: F401

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture
def nothing_runs(tmp_path, monkeypatch):
    """A clean working folder, no KFP host, and a local run that fails the test if reached."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("KFP_HOST", raising=False)
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    monkeypatch.setattr(cli, "run_local", lambda *a, **k: pytest.fail("bad input reached the local run"))
    return tmp_path


def run_main(module, argv, capsys) -> tuple[int, str]:
    """(exit status, stderr) of ``module.main(argv)``; argparse's own errors exit via SystemExit."""
    try:
        rc = module.main(argv, client_factory=lambda *a: pytest.fail("bad input reached a KFP client"))
    except SystemExit as exc:
        rc = exc.code
    return rc, capsys.readouterr().err


def assert_refused(module, argv, message, capsys, folder) -> str:
    rc, err = run_main(module, argv, capsys)
    assert rc == 2, err
    assert "Traceback" not in err
    assert message in err, err
    assert not os.path.exists(folder / "runs")
    return err


# ----- dna_plus.py: --set values of the wrong type, every stage's settings, bounds -----------------------
PLUS_CASES = [
    # whole-config type checks after --set
    (["--set", "block_epochs=abc"], "block_epochs='abc': expected an integer"),
    (["--set", "block_epochs=1.5"], "block_epochs=1.5: expected an integer"),
    (["--set", "block_epochs=true"], "block_epochs=True: expected an integer"),
    (["--set", "block_epochs=1e400"], "1e400 is not a finite number"),
    (["--set", "seed=NaN"], "NaN is not a finite number"),
    (["--set", "retrain.lr=-Infinity"], "-Infinity is not a finite number"),
    (["--set", "data.batch_size=abc"], "data.batch_size='abc'"),
    (["--set", "data.augment=3"], "data.augment=3: expected true or false"),
    (["--set", "teacher=5"], "teacher=5: expected a JSON object"),
    (["--set", "transfer=5"], "transfer=5: expected a JSON list"),
    (["--set", "transfer=[1]"], "transfer[0]=1: expected a string"),
    (["--set", 'retrain.epochs="3"'], "retrain.epochs='3': expected an integer"),
    (["--set", "teacher.pretrained=1"], "teacher.pretrained=1: expected true or false"),
    (["--set", 'retrain={"epochz": 1}'], "['epochz']"),
    (["--set", "transfer_options.det.epochs=1.5"], "transfer_options.det.epochs=1.5"),
    (["--set", "transfer_options.seg.resolution=4096"], "transfer_options.seg.resolution=4096"),
    (["--set", "retrain.sched=cosinus"], "cosinus"),
    (["--set", "scale_to=b99"], "b99"),
    (["--set", "device=7"], "device=7: expected a string or null"),
    (["--set", "limits=5"], "limits=5: expected a JSON object"),
    (["--set", "limits.params=abc"], "max_params='abc'"),
    (["--set", "latency_table="], "latency_table=''"),
    (["--set", "generations=5"], "--set generations=5: generations is set with --generations"),
    (["--set", "root=/elsewhere"], "--set root='/elsewhere': root is set with --root"),
    # every stage's settings, at the start
    (["--set", "rate_max_batches=0"], "rate_max_batches=0"),
    (["--set", "calib_batches=-1"], "calib_batches=-1"),
    (["--set", "block_max_steps=0"], "block_max_steps=0"),
    (["--set", "teacher_train.steps_per_epoch=0"], "steps_per_epoch 0"),
    (["--set", "retrain.lr=-0.1"], "lr -0.1"),
    (["--set", "data.resolution=4096"], "resolution 4096"),
    (["--set", "data.resolution=8"], "resolution 8"),
    (["--set", "data.train_size=100000000"], "train_size 100000000"),
    (["--set", "data.num_workers=-1"], "num_workers -1"),
    (["--set", "data.batch_size=0"], "batch_size 0"),
    (["--set", "transfer_resolution=2048"], "transfer_resolution=2048"),
    (["--epochs", "100000"], "block_epochs=100000: expected at most"),
    (["--retrain-epochs", "1e400"], "'1e400'"),                    # argparse: not an int
    (["--seed", "99999999999"], "seed=99999999999: expected at most"),
    (["--generations", "101"], f"--generations 101: expected an integer in 1..{MAX_GENERATIONS}"),
    (["--scale-retrain", '{"epochs": 1e400}'], "--scale-retrain: 1e400 is not a finite number"),
    (["--scale-retrain", '{"epochs": "many"}'], "--scale-retrain.epochs='many'"),
    (["--gpus-per-block", "3"], "--gpus-per-block 3: data.batch_size 32 must divide by it"),
    # object-store URIs and the Ray address
    (["--root", "s3:/bucket/run"], "'s3:/bucket/run': malformed S3 URI"),
    (["--root", "s3://Bad_Bucket/run"], "'Bad_Bucket' is not a valid S3 bucket name"),
    (["--root", "gs://bucket/run"], "'gs'"),
    (["--data", "s3:bucket/data"], "'s3:bucket/data': malformed S3 URI"),
    (["--ray-address", "garbage!!"], "--ray-address 'garbage!!'"),
    (["--ray-address", "ray://head"], "--ray-address 'ray://head'"),
    (["--ray-address", "head:99999"], "--ray-address 'head:99999'"),
    (["--ray-address", "ftp://head:21"], "--ray-address 'ftp://head:21'"),
]


@pytest.mark.parametrize("argv,message", PLUS_CASES, ids=[" ".join(a) for a, _ in PLUS_CASES])
def test_dna_plus_bad_setting_is_refused_at_the_start(nothing_runs, capsys, argv, message):
    assert_refused(dna_plus, argv, message, capsys, nothing_runs)


# ----- dna.py and dna_pp.py -------------------------------------------------------------------------------
@pytest.mark.parametrize("argv,message", [
    (["--set", "block_epochs=abc"], "block_epochs='abc'"),
    (["--set", "rate_max_batches=0"], "rate_max_batches=0"),
    (["--set", "data.rating_size=1.5"], "data.rating_size=1.5"),
    (["--set", "pp.train.lr=0.1"], "--set pp.train.lr: this pipeline has no 'pp' settings"),
    (["--set", "retrain.opt=nope"], "opt 'nope'"),
    (["--ray-address", "http://head:8265/jobs?x"], "http://head:8265/jobs?x"),
])
def test_dna_bad_setting_is_refused_at_the_start(nothing_runs, capsys, argv, message):
    assert_refused(dna_pipeline, argv, message, capsys, nothing_runs)


@pytest.mark.parametrize("argv,message", [
    (["--set", "pp.train.lr=abc"], "pp.train.lr='abc'"),
    (["--set", "pp.retrain.epochs=1.5"], "pp.retrain.epochs=1.5"),
    (["--set", "pp.train.proj_dim=1e400"], "1e400 is not a finite number"),
    (["--set", "block_epochs=true"], "block_epochs=True"),
    (["--set", "rate_max_batches=-2"], "rate_max_batches=-2"),
    (["--set", "data.train_size=16", "--set", "data.batch_size=64"], "data.train_size=16"),
    (["--set", "pp.train.batch_size=2048"], "data.train_size=1024: DNA++ trains on full batches only"),
    (["--set", "data.resolution=2000"], "resolution 2000"),
    (["--set", "space=5"], "space=5: expected a string"),
    (["--set", "limits.flops=[1]"], "max_flops=[1]"),
])
def test_dna_pp_bad_setting_is_refused_at_the_start(nothing_runs, capsys, argv, message):
    assert_refused(dna_pp, argv, message, capsys, nothing_runs)


# ----- generations: bounded before the DAG is built -------------------------------------------------------
def test_a_million_generations_fail_fast(nothing_runs, capsys):
    t0 = time.perf_counter()
    assert_refused(dna_plus, ["--generations", "1000000"], "--generations 1000000", capsys, nothing_runs)
    assert time.perf_counter() - t0 < 2.0


def test_build_pipeline_refuses_unbounded_generations():
    from pipelines.graph import build_pipeline

    t0 = time.perf_counter()
    with pytest.raises(ValueError, match="generations=1000000"):
        build_pipeline("dna-plus", 1_000_000)
    assert time.perf_counter() - t0 < 1.0


# ----- S3: the buckets a local run names answer a HEAD (moto) ---------------------------------------------
def test_a_nonexistent_bucket_is_refused_before_work(nothing_runs, capsys, s3_bucket):  # noqa: F811
    err = assert_refused(dna_plus, ["--root", "s3://no-such-bucket-here/run"], "no-such-bucket-here", capsys,
                         nothing_runs)
    assert "does not exist" in err
    err = assert_refused(dna_plus, ["--root", f"{s3_bucket}/run", "--data", "s3://missing-data-bucket/cifar"],
                         "missing-data-bucket", capsys, nothing_runs)
    assert "data.uri" in err
    assert_refused(dna_pp, ["--root", "s3://no-pp-bucket/run"], "no-pp-bucket", capsys, nothing_runs)


def test_bucket_errors_hide_endpoint_credentials(nothing_runs, capsys, monkeypatch, s3_bucket):  # noqa: F811
    from dna import storage

    monkeypatch.setenv("DNA_S3_ENDPOINT", os.environ["DNA_S3_ENDPOINT"].replace("http://", "http://admin:hunter2@"))
    storage.configure_s3(None)
    err = assert_refused(dna_plus, ["--root", "s3://no-such-bucket-here/run"], "no-such-bucket-here", capsys,
                         nothing_runs)
    assert "hunter2" not in err and "admin" not in err   # the endpoint's userinfo is stripped or masked


def test_an_existing_bucket_passes(nothing_runs, capsys, s3_bucket):  # noqa: F811
    rc, err = run_main(dna_plus, ["--root", f"{s3_bucket}/run", "--print-config"], capsys)
    assert rc == 0, err


# ----- every preset passes the checks it is held to ------------------------------------------------------
@pytest.mark.parametrize("module,preset", [(dna_plus, p) for p in sorted(PRESETS)]
                         + [(dna_pp, p) for p in sorted(dna_pp.PRESETS)])
def test_every_preset_passes(nothing_runs, capsys, module, preset):
    argv = ["--preset", preset, "--data", "s3://data/set", "--host", "http://kfp", "--print-config"]
    rc, err = run_main(module, argv, capsys)
    assert rc == 0, err


# ----- the checks themselves ------------------------------------------------------------------------------
@pytest.mark.parametrize("address", ["", "auto", "http://dna-ray-head-svc:8265", "https://ray.example.com/ray/",
                                     "ray://10.0.0.5:10001", "dna-ray-head-svc:6379", "[::1]:6379"])
def test_ray_addresses_ray_accepts_pass(address):
    check_ray_address(address)


def test_ray_address_errors_hide_credentials():
    with pytest.raises(UsageError) as exc:
        check_ray_address("http://user:s3cret@head:8265/x y")
    assert "s3cret" not in str(exc.value) and "***@head" in str(exc.value)
    assert redact("s3://bucket/k http://a:b@h") == "s3://bucket/k http://***@h"


def test_ray_address_from_the_environment_is_checked(nothing_runs, capsys, monkeypatch):
    monkeypatch.setenv("RAY_ADDRESS", "not an address")
    assert_refused(dna_plus, [], "RAY_ADDRESS 'not an address'", capsys, nothing_runs)


def test_run_config_validate_checks_types_for_the_components(tmp_path):
    """Components build the RunConfig from JSON and call validate: the same checks hold there."""
    for kw, message in [({"block_epochs": "abc"}, "block_epochs='abc'"),
                        ({"rate_max_batches": 0}, "rate_max_batches=0"),
                        ({"generations": 10**6}, "generations=1000000"),
                        ({"transfer": "seg"}, "transfer='seg'")]:
        with pytest.raises(DnaError, match=message):
            RunConfig(root=str(tmp_path), **kw).validate()
    RunConfig(root=str(tmp_path)).validate()


def test_data_config_bounds():
    from dna.data import DataConfig

    for kw, message in [({"resolution": 2048}, "resolution 2048"), ({"batch_size": 10**6}, "batch_size 1000000"),
                        ({"rating_size": 10**8}, "rating_size 100000000"), ({"seed": 2**40}, "seed 1099511627776"),
                        ({"num_workers": 1000}, "num_workers 1000")]:
        with pytest.raises(DnaError, match=message):
            DataConfig(**kw)
    DataConfig(resolution=1024, batch_size=65536)


def test_check_types_walks_nested_sections():
    from dna.data import DataConfig

    check_types({"data": {"resolution": 32, "auto_augment": None}, "seed": 3}, RunConfig)
    with pytest.raises(DnaError, match=r"data\.resolution=32\.0: expected an integer"):
        check_types({"data": {"resolution": 32.0}}, RunConfig)
    with pytest.raises(DnaError, match=r"data keys \['colour'\]"):
        check_types({"data": {"colour": 1}}, RunConfig)
    with pytest.raises(DnaError, match=r"transfer_options\.det=3"):
        check_types({"transfer_options": {"det": 3}}, RunConfig)
    check_types(DataConfig(), DataConfig)


# ----- a few as real commands: exit status 2 and no traceback (cases refused before torch is imported,
# to keep them quick; the in-process cases above cover the rest) -------------------------------------------
@pytest.mark.parametrize("script,argv,message", [
    ("dna_plus.py", ["--generations", "1000000"], "--generations 1000000"),
    ("dna_pp.py", ["--epochs", "1e400"], "'1e400'"),
    ("dna.py", ["--gpus", "two"], "'two'"),
])
def test_bad_setting_as_a_command(tmp_path, script, argv, message):
    env = {k: v for k, v in os.environ.items() if k not in ("KFP_HOST", "RAY_ADDRESS")}
    t0 = time.perf_counter()
    p = subprocess.run([sys.executable, os.path.join(REPO, "pipelines", script), *argv], cwd=tmp_path, env=env,
                       capture_output=True, text=True, timeout=120)
    assert p.returncode == 2, p.stderr
    assert "Traceback" not in p.stderr and message in p.stderr
    assert not (tmp_path / "runs").exists()
    assert time.perf_counter() - t0 < 60
