"""Print the runtime dependencies of pyproject.toml as a requirements file (build-time helper).

Used by docker/Dockerfile to install the (large, slow-changing) dependencies in their own layer
before the project source is copied, so editing the source does not reinstall torch.

    python requirements_from_pyproject.py pyproject.toml [--only NAME,...] [--exclude NAME,...]
"""

from __future__ import annotations

import argparse
import re
import sys

try:
    import tomllib
except ModuleNotFoundError:  # Python < 3.11
    import tomli as tomllib


def _name(requirement: str) -> str:
    match = re.match(r"\s*([A-Za-z0-9][A-Za-z0-9._-]*)", requirement)
    if not match:
        raise SystemExit(f"cannot parse requirement {requirement!r}")
    return re.sub(r"[-_.]+", "-", match.group(1)).lower()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("pyproject")
    parser.add_argument("--only", default="", help="comma-separated names to keep")
    parser.add_argument("--exclude", default="", help="comma-separated names to drop")
    args = parser.parse_args(argv)
    with open(args.pyproject, "rb") as f:
        deps = tomllib.load(f)["project"]["dependencies"]
    only = {_name(n) for n in args.only.split(",") if n.strip()}
    exclude = {_name(n) for n in args.exclude.split(",") if n.strip()}
    for dep in deps:
        name = _name(dep)
        if (only and name not in only) or name in exclude:
            continue
        print(dep)
    return 0


if __name__ == "__main__":
    sys.exit(main())
