"""``python -m components.fanout --config '<json>'``: the fan-out in a process of its own (what a
submitted Ray Job runs on the cluster)."""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys

from components.fanout.dispatch import run
from components.fanout.spec import FanOut
from dna import storage
from dna.errors import DnaError
from dna.redact import redact


def load_spec(text: str) -> FanOut:
    """A fan-out spec from inline JSON or the URI of a JSON file."""
    text = text.strip()
    try:
        d = json.loads(text) if text.startswith("{") else storage.read_json(text)
    except json.JSONDecodeError as exc:
        raise DnaError(f"--config: not valid JSON ({exc})") from None
    if not isinstance(d, dict):
        raise DnaError("--config: expected a JSON object")
    try:
        return FanOut.from_dict(d)
    except (KeyError, TypeError) as exc:
        raise DnaError(f"--config: not a fan-out spec ({type(exc).__name__}: {exc}); expected the "
                       f"keys {[f.name for f in dataclasses.fields(FanOut)]}") from None


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m components.fanout",
                                description="Train or rate the blocks of one generation on Ray.")
    p.add_argument("--config", required=True, help="fan-out spec: JSON object or URI of a JSON file")
    p.add_argument("--ray-address", default=None, help="default: RAY_ADDRESS, else a local Ray")
    args = p.parse_args(argv)
    try:
        spec = load_spec(args.config)
        results = run(spec, args.ray_address)
    except DnaError as exc:
        print(f"error: {redact(exc)}", file=sys.stderr)
        return 2
    print(json.dumps({"name": spec.name, "result": spec.result_uri,
                      "blocks": {str(k): v.get("loss", v.get("rows")) for k, v in results.items()}}))
    return 0
