"""The typed run parameters of the pipelines (what the KFP UI shows as separate fields) over the
``run_config`` JSON: changing the epochs in the UI should not mean editing a 1.6 KB string.

Each parameter names one run config value; the compiled YAML's default is the preset's value
(:func:`from_config`), and a set parameter wins over the JSON. Unset (``""`` or ``0``) takes the
JSON's value, so a run started from an edited JSON alone still gets what the JSON says once the
typed field is cleared. :func:`apply_overrides` runs where the run config is first read
(``prepare_data``); ``RunConfig.validate`` then checks the result as a whole.
"""

from __future__ import annotations

import copy
from typing import Any

from dna.errors import DnaError

# pipeline parameter -> (type, what it sets): its KFP type is the Python type.
TYPED: dict[str, tuple[type, str]] = {
    "data": (str, "data.uri"),
    "teacher": (str, "teacher.model (a new teacher: its checkpoint and pretrained flag are cleared)"),
    "epochs": (int, "block_epochs"),
    "retrain_epochs": (int, "retrain.epochs"),
    "max_params": (str, "limits.params (e.g. 5.3M; 'none': no limit)"),
    "max_flops": (str, "limits.flops (e.g. 400M; 'none': no limit)"),
    "max_latency_ms": (str, "limits.latency_ms (e.g. 12.5; 'none': no limit)"),
}
UNSET: dict[str, Any] = {name: typ() for name, (typ, _) in TYPED.items()}   # "" and 0
LIMITS = {"max_params": "params", "max_flops": "flops", "max_latency_ms": "latency_ms"}
NO_LIMIT = "none"


def _limit_text(value: Any) -> str:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return ""               # none, or a bad value that the run config's checks will name
    return str(int(value)) if float(value).is_integer() else repr(float(value))


def _int(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else 0


def _text(value: Any) -> str:
    return value if isinstance(value, str) else ""


def from_config(d: dict) -> dict[str, Any]:
    """The typed parameters' values that a run config dict already has (their defaults); a value
    of the wrong type gives the unset value (the run config's own checks name it)."""
    from dna.cost_registry import COSTS

    def section(key: str) -> dict:
        return d.get(key) if isinstance(d.get(key), dict) else {}

    limits = {**{c.name: d.get(c.limit_key) for c in COSTS}, **section("limits")}   # old max_<cost> keys too
    return {
        "data": _text(section("data").get("uri")),
        "teacher": _text(section("teacher").get("model")),
        "epochs": _int(d.get("block_epochs")),
        "retrain_epochs": _int(section("retrain").get("epochs")),
        **{p: _limit_text(limits.get(cost)) for p, cost in LIMITS.items()},
    }


def _check_type(name: str, value: Any) -> None:
    typ = TYPED[name][0]
    if typ is int and (isinstance(value, bool) or not isinstance(value, int)):
        raise DnaError(f"pipeline parameter {name}={value!r}: expected an integer (0: the run_config's)")
    if typ is str and not isinstance(value, str):
        raise DnaError(f"pipeline parameter {name}={value!r}: expected a string ('': the run_config's)")


def apply_overrides(d: dict, overrides: dict[str, Any] | None) -> dict:
    """``d`` (a RunConfig dict) with every set typed parameter applied; a bad value is a
    DnaError naming the parameter and what it expects (before any work)."""
    from dna.search.run import parse_count

    out = copy.deepcopy(d)
    for name, value in (overrides or {}).items():
        if name not in TYPED:
            raise DnaError(f"unknown typed pipeline parameter {name!r}: expected one of {', '.join(TYPED)}")
        _check_type(name, value)
        if value == UNSET[name] or (isinstance(value, str) and not value.strip()):
            continue
        if isinstance(value, int) and value < 1:
            raise DnaError(f"pipeline parameter {name}={value}: expected an integer >= 1 (0: the run_config's)")
        if name == "data":
            out.setdefault("data", {})["uri"] = value.strip()
        elif name == "teacher":
            if value.strip() != (out.get("teacher") or {}).get("model"):
                out["teacher"] = {"model": value.strip(), "checkpoint": None, "pretrained": False, "num_classes": None}
        elif name == "epochs":
            out["block_epochs"] = value
        elif name == "retrain_epochs":
            out.setdefault("retrain", {})["epochs"] = value
        else:
            from dna.cost_registry import merge_limits, pop_legacy

            limits = merge_limits(out.get("limits"), pop_legacy(out, "max_"))
            if value.strip().lower() == NO_LIMIT:
                limits.pop(LIMITS[name], None)
            else:
                limits[LIMITS[name]] = parse_count(value.strip(), f"pipeline parameter {name}")
            out["limits"] = limits
    return out
