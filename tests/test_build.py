"""dna build (summary, initial weights) and dna export (TorchScript, ONNX)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import timm
import torch

from dna import storage
from dna.cli import main
from dna.costs import count_params
from dna.errors import DnaError
from dna.model.arch import EFFICIENTNET_B0, Architecture
from dna.model.export import export_model, load_model
from dna.model.summary import build, summarize
from dna.space import get_space
from dna.space.mbconv import BlockChoice


def tiny_arch() -> Architecture:
    s = get_space("mbconv-tiny")
    return Architecture.from_choices(
        s, [BlockChoice(k, 0, (s.ops[0],) * s.blocks[k].cells[0].layers) for k in range(6)])


@pytest.fixture
def b0_uri(tmp_path):
    uri = str(tmp_path / "b0.json")
    storage.write_json(EFFICIENTNET_B0, uri)  # a bare arch_def list
    return uri


@pytest.fixture
def tiny_uri(tmp_path):
    uri = str(tmp_path / "tiny.json")
    storage.write_json(tiny_arch().to_json(), uri)
    return uri


def test_b0_summary_matches_timm(b0_uri):
    s = summarize(b0_uri)
    assert s["params"] == 5_288_548 == count_params(timm.create_model("efficientnet_b0"))
    assert abs(s["flops"] / 1e6 - 385.8) < 0.1
    assert s["resolution"] == 224 and s["num_classes"] == 1000
    assert s["num_stages"] == 7 and s["num_layers"] == 16
    assert [st["channels"] for st in s["stages"]] == [16, 24, 40, 80, 112, 192, 320]


def test_build_cli_summary_json_and_out(b0_uri, tiny_uri, tmp_path, capsys):
    assert main(["build", b0_uri, "--summary", "--json"]) == 0
    r = json.loads(capsys.readouterr().out)
    assert r["params"] == 5_288_548 and abs(r["flops"] / 1e6 - 385.8) < 0.1

    assert main(["build", tiny_uri, "--summary"]) == 0
    text = capsys.readouterr().out
    assert f"{summarize(tiny_uri)['params']:,}" in text and "MACs at 32 px" in text

    out = str(tmp_path / "init.pt")
    assert main(["build", tiny_uri, "--out", out, "--json"]) == 0
    r = json.loads(capsys.readouterr().out)
    assert r["out"] == out and r["num_classes"] == 10
    from dna.teacher import load_state

    model = build(Architecture.load(tiny_uri))
    load_state(model, out)  # the saved checkpoint fits the architecture
    ck = storage.load_torch(out)
    assert ck["arch"]["arch_def"] == tiny_arch().arch_def


def test_bad_arch_def_string_is_named(tmp_path, capsys):
    bad = [["ds_r1_k3_s1_e1_c16_se0.25"], ["ir_r2_kx_s2_e6_c24_se0.25"]]
    with pytest.raises(DnaError, match="ir_r2_kx_s2_e6_c24_se0.25"):
        summarize(bad)
    with pytest.raises(DnaError, match="zz_r1_k3_s1_c8"):
        summarize([["zz_r1_k3_s1_c8"]])
    uri = str(tmp_path / "bad.json")
    storage.write_json({"arch_def": bad}, uri)
    assert main(["build", uri, "--summary"]) == 2
    assert "ir_r2_kx_s2_e6_c24_se0.25" in capsys.readouterr().err
    assert main(["build", str(tmp_path / "missing.json")]) == 2
    assert "missing.json" in capsys.readouterr().err


@pytest.fixture
def trained_checkpoint(tiny_uri, tmp_path):
    """A checkpoint with non-trivial weights (incl. BatchNorm statistics) in model.pt form."""
    torch.manual_seed(1)
    model = build(Architecture.load(tiny_uri))
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.uniform_(-0.1, 0.1)
                m.running_var.uniform_(0.5, 1.5)
                m.weight.uniform_(0.5, 1.5)
    uri = str(tmp_path / "model.pt")
    storage.save_torch({"model": model.state_dict(), "arch": Architecture.load(tiny_uri).to_json(),
                        "num_classes": 10}, uri)
    return uri


@pytest.mark.filterwarnings("ignore::FutureWarning")
def test_export_torchscript_matches_eager(tiny_uri, trained_checkpoint, tmp_path):
    out = str(tmp_path / "m.torchscript.pt")
    r = export_model(tiny_uri, trained_checkpoint, "torchscript", out)
    assert r["max_abs_diff"] < 1e-4 and r["input_shape"] == [1, 3, 32, 32]
    eager, _ = load_model(tiny_uri, trained_checkpoint)
    loaded = torch.jit.load(out)
    x = torch.randn(3, 3, 32, 32)  # another batch size than the example's
    with torch.no_grad():
        torch.testing.assert_close(loaded(x), eager(x), atol=1e-4, rtol=1e-4)


def test_export_onnx_matches_eager(tiny_uri, trained_checkpoint, tmp_path):
    ort = pytest.importorskip("onnxruntime")
    out = str(tmp_path / "m.onnx")
    r = export_model(tiny_uri, trained_checkpoint, "onnx", out)
    assert r["format"] == "onnx" and r["max_abs_diff"] < 1e-4
    eager, _ = load_model(tiny_uri, trained_checkpoint)
    sess = ort.InferenceSession(out, providers=["CPUExecutionProvider"])
    x = torch.randn(3, 3, 32, 32)
    got = sess.run(None, {sess.get_inputs()[0].name: x.numpy()})[0]
    with torch.no_grad():
        want = eager(x).numpy()
    np.testing.assert_allclose(got, want, atol=1e-4, rtol=1e-4)


def test_export_cli_and_errors(trained_checkpoint, tiny_uri, tmp_path, capsys):
    out = str(tmp_path / "cli.pt")
    # The architecture comes from the checkpoint's "arch" when none is given.
    assert main(["export", "--checkpoint", trained_checkpoint, "--format", "torchscript",
                 "--out", out, "--json"]) == 0
    r = json.loads(capsys.readouterr().out)
    assert r["out"] == out and r["max_abs_diff"] < 1e-4 and storage.exists(out)
    with pytest.raises(DnaError, match="format"):
        export_model(tiny_uri, None, "tflite", str(tmp_path / "x"))
    with pytest.raises(DnaError, match="batch_size"):
        export_model(tiny_uri, None, "onnx", str(tmp_path / "x"), batch_size=0)
    with pytest.raises(DnaError, match="nope.pt"):
        export_model(tiny_uri, str(tmp_path / "nope.pt"), "onnx", str(tmp_path / "x"))
    with pytest.raises(DnaError, match="does not fit"):
        export_model(tiny_uri, trained_checkpoint, "torchscript", str(tmp_path / "x"), num_classes=5)
