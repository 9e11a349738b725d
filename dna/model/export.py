"""Export a built (and usually retrained) network to TorchScript or ONNX.

TorchScript: ``torch.jit.script`` of the timm EfficientNet built with timm's scriptable layer
config (any batch size and resolution), falling back to ``torch.jit.trace``. ONNX: the
``torch.export``-based exporter (needs ``onnxscript``), falling back to the legacy TorchScript
exporter when ``onnxscript`` is not installed; input ``input`` ``[batch, 3, R, R]`` with a dynamic
batch dimension, output ``logits``. The file goes to any URI of :mod:`dna.storage`.
"""

from __future__ import annotations

import contextlib
import io
import os
import tempfile
import warnings
from typing import Any

import torch
import torch.nn as nn

from dna.errors import DnaError
from dna.model.arch import Architecture
from dna.model.export_formats import FORMATS, ONNX_OPSET  # noqa: F401 (their home; re-exported here)


def _dynamo_min_opset() -> int | None:
    """The lowest opset the ``torch.export`` exporter implements (None: onnxscript missing). Below
    it, that exporter runs ONNX's version converter, which fails on the SE blocks' ReduceMean and
    then silently keeps its own opset, so lower opsets go to the legacy exporter instead."""
    try:
        import onnxscript  # noqa: F401
    except ImportError:
        return None
    try:
        from torch.onnx._internal.exporter import _constants as _dynamo_constants

        return int(_dynamo_constants.TORCHLIB_OPSET)
    except (ImportError, AttributeError):
        return 18


def onnx_opsets() -> tuple[int, int, str]:
    """(lowest, highest, exporters) ONNX opsets the installed ``torch.onnx`` exports: the legacy
    exporter from ``ONNX_MIN_OPSET`` (up to its own maximum), the ``torch.export`` exporter from
    its torchlib opset up to ``ONNX_MAX_OPSET`` when onnxscript is installed."""
    from torch.onnx import _constants

    low = int(_constants.ONNX_MIN_OPSET)
    if _dynamo_min_opset() is None:
        high = getattr(_constants, "ONNX_TORCHSCRIPT_EXPORTER_MAX_OPSET", _constants.ONNX_MAX_OPSET)
        return low, int(high), "torchscript-legacy"
    return low, int(_constants.ONNX_MAX_OPSET), "torchscript-legacy and dynamo"


def _check_written_opset(data: bytes, opset: int) -> None:
    """The exporter keeps its own opset when a version conversion fails (with a log line only):
    an ONNX file of another opset than asked for is an error, not a silent success."""
    try:
        import onnx
    except ImportError:
        return
    got = [o.version for o in onnx.load_model_from_string(data).opset_import if o.domain in ("", "ai.onnx")]
    if got and got[0] != opset:
        low, high, exporter = onnx_opsets()
        raise DnaError(f"opset {opset}: the {exporter} exporter wrote opset {got[0]} instead; expected "
                       f"an ONNX file of the requested opset ({low}..{high})")


def check_opset(opset) -> int:
    """``opset`` when the installed exporter supports it, else a DnaError naming the range."""
    low, high, exporter = onnx_opsets()
    if isinstance(opset, bool) or not isinstance(opset, int) or not low <= opset <= high:
        raise DnaError(f"opset {opset!r}: expected an integer in {low}..{high} (what the installed "
                       f"torch.onnx exports: {exporter})")
    return opset


def _load_checkpoint(uri: str) -> tuple[dict, dict]:
    """(state dict, metadata) from a raw state dict or a ``{"model": ..., ...}`` checkpoint."""
    from dna import storage

    obj = storage.load_torch(uri)
    if not isinstance(obj, dict):
        raise DnaError(f"checkpoint {uri} holds no state dict (got {type(obj).__name__})")
    if isinstance(obj.get("model"), dict):
        return obj["model"], {k: v for k, v in obj.items() if k != "model"}
    if all(isinstance(v, torch.Tensor) for v in obj.values()):
        return obj, {}
    raise DnaError(f"checkpoint {uri} holds no state dict: expected a state dict or a dict with key 'model'")


def _resolve(arch: Architecture | str | None, meta: dict) -> tuple[Architecture | None, str | None]:
    """(architecture, timm name): one of them is set."""
    if arch is None:
        a = meta.get("arch")
        if isinstance(a, dict) and "timm" in a:
            return None, str(a["timm"])
        if a is None:
            raise DnaError("no architecture given and the checkpoint names none (key 'arch')")
        arch = a
    if isinstance(arch, str) and not arch.endswith(".json"):
        import timm

        if not timm.is_model(arch):
            raise DnaError(f"unknown model {arch!r}: expected an architecture .json URI or a timm model name")
        return None, arch
    from dna.model.summary import resolve_arch

    return resolve_arch(arch), None


def _create(arch: Architecture | None, timm_name: str | None, num_classes: int | None) -> nn.Module:
    from timm.layers import set_layer_config

    with set_layer_config(scriptable=True, exportable=True, no_jit=True):
        if arch is not None:
            from dna.model.summary import build

            return build(arch, num_classes=num_classes)
        import timm

        kw = {} if num_classes is None else {"num_classes": num_classes}
        return timm.create_model(timm_name, pretrained=False, **kw)


def load_model(
    arch: Architecture | str | None,
    checkpoint: str | None = None,
    num_classes: int | None = None,
) -> tuple[nn.Module, int]:
    """(eval-mode model with the checkpoint's weights, its default resolution)."""
    state, meta = _load_checkpoint(checkpoint) if checkpoint else ({}, {})
    arch_obj, timm_name = _resolve(arch, meta)
    if num_classes is None and meta.get("num_classes") is not None:
        num_classes = int(meta["num_classes"])
    model = _create(arch_obj, timm_name, num_classes)
    if checkpoint:
        try:
            missing, unexpected = model.load_state_dict(state, strict=False)
        except RuntimeError as exc:  # shape mismatches
            raise DnaError(f"checkpoint {checkpoint} does not fit the architecture: {exc}") from exc
        if missing or unexpected:
            raise DnaError(
                f"checkpoint {checkpoint} does not fit the architecture: missing {list(missing)[:5]}, "
                f"unexpected {list(unexpected)[:5]}"
            )
    if arch_obj is not None:
        resolution = arch_obj.resolution
    else:
        resolution = int(getattr(model, "pretrained_cfg", {}).get("input_size", (3, 224, 224))[-1])
    return model.eval(), resolution


def _to_torchscript(model: nn.Module, example: torch.Tensor) -> tuple[bytes, str]:
    try:
        module = torch.jit.script(model)
        how = "script"
    except Exception:  # timm models are scriptable; anything else still traces
        module = torch.jit.trace(model, example)
        how = "trace"
    buf = io.BytesIO()
    torch.jit.save(module, buf)
    return buf.getvalue(), how


def _to_onnx(model: nn.Module, example: torch.Tensor, opset: int) -> tuple[bytes, str]:
    low = _dynamo_min_opset()
    dynamo = low is not None and opset >= low
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "model.onnx")
        kw: dict[str, Any] = dict(input_names=["input"], output_names=["logits"], opset_version=opset)
        # The exporter reports progress on stdout; keep stdout clean for `dna --json`.
        with contextlib.redirect_stdout(io.StringIO()):
            if dynamo:
                program = torch.onnx.export(
                    model, (example,), dynamo=True, verbose=False,
                    dynamic_shapes=({0: torch.export.Dim("batch")},), **kw,
                )
                program.save(path, external_data=False)
            else:
                torch.onnx.export(
                    model, (example,), path, dynamo=False,
                    dynamic_axes={"input": {0: "batch"}, "logits": {0: "batch"}}, **kw,
                )
        with open(path, "rb") as f:
            return f.read(), "dynamo" if dynamo else "torchscript-legacy"


def _verify(fmt: str, data: bytes, model: nn.Module, x: torch.Tensor) -> float | None:
    """Max |exported - eager| on ``x``; None when the runtime is not installed (onnxruntime)."""
    with torch.no_grad():
        ref = model(x).float()
    if fmt == "torchscript":
        loaded = torch.jit.load(io.BytesIO(data), map_location="cpu")
        with torch.no_grad():
            out = loaded(x).float()
        return float((out - ref).abs().max())
    try:
        import onnxruntime as ort
    except ImportError:
        return None
    sess = ort.InferenceSession(data, providers=["CPUExecutionProvider"])
    out = sess.run(None, {sess.get_inputs()[0].name: x.numpy()})[0]
    return float(abs(out - ref.numpy()).max())


def export_model(
    arch: Architecture | str | None,
    checkpoint: str | None,
    fmt: str,
    out_uri: str,
    batch_size: int = 1,
    resolution: int | None = None,
    num_classes: int | None = None,
    opset: int = ONNX_OPSET,
    verify: bool = True,
) -> dict[str, Any]:
    """Write ``arch`` (JSON URI / Architecture / timm name; None: the checkpoint's ``arch``) with
    ``checkpoint``'s weights (None: freshly initialised) as ``fmt`` (torchscript|onnx) to ``out_uri``.

    Returns where it went, the input shape and, with ``verify``, the largest absolute difference
    between the exported and the eager model on a random batch of ``batch_size``.
    """
    from dna import storage

    fmt = str(fmt).lower()
    if fmt not in FORMATS:
        raise DnaError(f"unknown export format {fmt!r}: expected one of {', '.join(FORMATS)}")
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise DnaError(f"batch_size {batch_size!r} must be a positive integer")
    if resolution is not None and (not isinstance(resolution, int) or resolution < 1):
        raise DnaError(f"resolution {resolution!r} must be a positive integer")
    if not out_uri:
        raise DnaError("no output URI given")
    if fmt == "onnx":
        check_opset(opset)
    if checkpoint:
        storage.check_readable(checkpoint)

    model, default_res = load_model(arch, checkpoint, num_classes)
    res = int(resolution or default_res)
    example = torch.randn(batch_size, 3, res, res, generator=torch.Generator().manual_seed(0))
    with warnings.catch_warnings():
        # torch marks TorchScript and the legacy ONNX exporter deprecated; both still work.
        warnings.simplefilter("ignore", FutureWarning)
        warnings.simplefilter("ignore", DeprecationWarning)
        if fmt == "torchscript":
            data, how = _to_torchscript(model, example)
        else:
            data, how = _to_onnx(model, example, opset)
            _check_written_opset(data, opset)
    storage.write_bytes(data, out_uri)
    result: dict[str, Any] = {
        "out": out_uri,
        "format": fmt,
        "method": how,
        "input_shape": [batch_size, 3, res, res],
        "num_classes": int(getattr(model, "num_classes", 0)) or None,
        "bytes": len(data),
        "checkpoint": checkpoint,
    }
    if verify:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)
            result["max_abs_diff"] = _verify(fmt, data, model, example)
    return result
