"""The `dna` command line.

Each sub-command is a module in this package (``train_block.py`` is ``dna train-block``) that
defines ``HELP``, ``add_arguments(parser)`` and ``run(args) -> dict``; it is discovered here, so
adding a stage never touches this file. ``--json`` prints the returned dict as JSON.

Building the parser imports every sub-command module, so their top levels and ``add_arguments``
import only argparse-level things; torch, timm, ray and the data are imported inside ``run``
(``dna --help`` and ``dna search`` stay light; tests/test_cli_light.py holds them to it).
"""

from __future__ import annotations

import argparse
import importlib
import json
import pkgutil
import sys
from collections.abc import Sequence

from dna.cli._help import DefaultsFormatter, add_version
from dna.errors import DnaError
from dna.redact import redact


def _commands() -> dict[str, object]:
    found = {}
    for info in pkgutil.iter_modules(__path__):
        if info.name.startswith("_"):
            continue
        module = importlib.import_module(f"{__name__}.{info.name}")
        if hasattr(module, "run") and hasattr(module, "add_arguments"):
            found[info.name.replace("_", "-")] = module
    return dict(sorted(found.items()))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="dna", description="Block-wise supervised NAS (DNA, DNA+, DNA++).", formatter_class=DefaultsFormatter
    )
    add_version(parser)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for name, module in _commands().items():
        p = sub.add_parser(name, help=module.HELP, description=module.HELP, formatter_class=DefaultsFormatter)
        p.add_argument("--json", action="store_true", help="print the result as JSON")
        module.add_arguments(p)
        p.set_defaults(_module=module, _parser=p)
    return parser


def _text(result: object) -> str:
    if isinstance(result, dict):
        return "\n".join(f"{k}: {v}" for k, v in result.items())
    return str(result)


def _io_error(exc: BaseException) -> str | None:
    """A clear line for an OS or pyarrow error (a file or table the user named); None: a bug."""
    if isinstance(exc, OSError):
        where = f" {exc.filename!r}" if getattr(exc, "filename", None) else ""
        return f"cannot access{where}: {exc.strerror or exc}"
    if type(exc).__module__.startswith("pyarrow"):
        return f"bad table or file ({type(exc).__name__}): {exc}"
    return None


def main(argv: Sequence[str] | None = None) -> int:
    """Run one sub-command; bad input (checked before any work where it can be) prints one
    ``error:`` line and returns 2."""
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(argv)
    module = args._module
    try:
        from dna.cli._preflight import run_checks  # after parsing: --help needs none of it

        run_checks(module, args._parser, args, argv)
        result = module.run(args)
    except DnaError as exc:
        print(f"error: {redact(exc)}", file=sys.stderr)
        return 2
    except Exception as exc:  # only OS and pyarrow errors are reported; others keep their traceback
        message = _io_error(exc)
        if message is None:
            raise
        print(f"error: {message}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps(result, indent=2, default=str))
    else:
        fmt = getattr(module, "format_text", _text)
        print(fmt(result))
    return 0
