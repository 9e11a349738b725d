"""dna space NAME: show a search space (blocks, cells, exact architecture count).

``--json`` prints the space definition itself (what ``--space FILE.json`` accepts: copy, edit, pass
back) with the description (paths per block, input widths, architecture count) under
``"describe"``, which reading the space ignores.
"""

from __future__ import annotations

from dna.space import SPACES, get_family, get_space

HELP = "show a search space: blocks, cells and the exact number of architectures"


def add_arguments(p) -> None:
    p.add_argument("name", help=f"a space name ({', '.join(sorted(SPACES))}) or a space .json URI")


def run(args) -> dict:
    space = get_space(args.name)
    return {**space.to_json(), "describe": get_family(space).describe(space)}


def format_text(r: dict) -> str:
    r = r["describe"]
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
