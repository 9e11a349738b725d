"""dna space NAME: show a search space (blocks, cells, exact architecture count)."""

from __future__ import annotations

from dna.space import SPACES, get_space

HELP = "show a search space: blocks, cells and the exact number of architectures"


def add_arguments(p) -> None:
    p.add_argument("name", help=f"a space name ({', '.join(sorted(SPACES))}) or a space .json URI")


def run(args) -> dict:
    return get_space(args.name).describe()


def format_text(r: dict) -> str:
    lines = [f"space {r['name']} ({r['kind']}), ops: {' '.join(r['ops'])}, resolution {r['resolution']}"]
    for b in r["blocks"]:
        cells = ", ".join(
            f"cell {c['cell']}: {c.get('layers', '?')}x c{c.get('channels', '?')}"
            if "layers" in c else f"cell {c['cell']}: {c}"
            for c in b["cells"]
        )
        lines.append(f"  block {b['block']}: {b['paths']} paths  [{cells}]")
    lines.append(f"architectures: {r['architectures']}")
    return "\n".join(lines)
