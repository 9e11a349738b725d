"""What a NAS user looks for in the reports, beyond the stage results of :mod:`components.reports`.

- :func:`op_cell_losses` / :func:`heatmap_section`: per block, the loss of choosing each op at each
  layer of each cell, from the scores table (the rating report);
- :func:`draw_block_curves` / :func:`block_curves_section`: each block supernet's training loss per
  epoch (the supernet report and the summary);
- :func:`accuracy_rows` / :func:`accuracy_section`: teacher vs searched net top-1 per generation
  (a random-architecture column only where the summary holds one) and accuracy vs params of every
  retrained net (the summary).

Pure functions of plain data (a scores table, histories, the summary dict): unit-tested on their own.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

from components.reports import _png, _pyplot, esc, fmt, html_table, human, img, section

HEATMAP_STATS = ("min", "mean")
HEATMAP_CAPTION = {
    "min": "lowest loss (Eq. 7) of any rated path that uses the op at that layer of that cell, over every "
           "input width: what the search can get with that choice",
    "mean": "mean loss (Eq. 7) of the rated paths that use the op at that layer of that cell, over every "
            "input width",
}


# ----- op-by-cell loss heatmap ------------------------------------------------------------------
def op_cell_losses(rows: Sequence[Mapping[str, Any]], stat: str = "min") -> dict[tuple[int, int], dict[str, float]]:
    """``{(cell, layer): {op: value}}`` of one block's scores rows (``cell``, ``ops`` joined by
    ``-``, ``loss``): ``stat`` (min or mean) of the loss of the paths with ``op`` at ``layer``."""
    if stat not in HEATMAP_STATS:
        raise ValueError(f"stat={stat!r}: expected one of {HEATMAP_STATS}")
    acc: dict[tuple[int, int], dict[str, list[float]]] = {}
    for r in rows:
        for i, op in enumerate(str(r["ops"]).split("-")):
            acc.setdefault((int(r["cell"]), i), {}).setdefault(op, []).append(float(r["loss"]))
    agg = min if stat == "min" else (lambda v: sum(v) / len(v))
    return {key: {op: agg(v) for op, v in ops.items()} for key, ops in sorted(acc.items())}


def scores_by_block(table) -> dict[int, list[dict]]:
    """The rows (``block``, ``cell``, ``ops``, ``loss``) of a scores table grouped by block."""
    out: dict[int, list[dict]] = {}
    for r in table.select(["block", "cell", "ops", "loss"]).to_pylist():
        out.setdefault(int(r["block"]), []).append(r)
    return dict(sorted(out.items()))


def heatmap_ops(grid: Mapping[tuple[int, int], Mapping[str, float]]) -> list[str]:
    """The heatmap's columns: every op seen, in first-seen order."""
    ops: dict[str, None] = {}
    for per_op in grid.values():
        ops.update(dict.fromkeys(per_op))
    return list(ops)


def draw_op_cell_heatmap(grid: Mapping[tuple[int, int], Mapping[str, float]], title: str = "") -> bytes:
    """The grid as a heatmap: rows ``cell c / layer i``, columns ops, brighter (yellow) = lower loss,
    the value written in each square; an op a layer cannot take stays blank."""
    import numpy as np

    plt = _pyplot()
    keys, ops = list(grid), heatmap_ops(grid)
    data = np.full((len(keys), len(ops)), np.nan)
    for i, key in enumerate(keys):
        for j, op in enumerate(ops):
            if op in grid[key]:
                data[i, j] = grid[key][op]
    fig, ax = plt.subplots(figsize=(max(3.5, 0.9 * len(ops) + 2.2), max(1.6, 0.36 * len(keys) + 1.1)))
    im = ax.imshow(np.ma.masked_invalid(data), cmap="viridis_r", aspect="auto")
    ax.set_xticks(range(len(ops)), ops, fontsize=7)
    ax.set_yticks(range(len(keys)), [f"cell {c} / layer {i}" for c, i in keys], fontsize=7)
    lo, hi = np.nanmin(data), np.nanmax(data)
    for i in range(len(keys)):
        for j in range(len(ops)):
            if not math.isnan(data[i, j]):
                dark = hi > lo and (data[i, j] - lo) / (hi - lo) > 0.5     # high loss: dark purple
                ax.text(j, i, f"{data[i, j]:.3g}", ha="center", va="center", fontsize=6,
                        color="white" if dark else "black")
    fig.colorbar(im, ax=ax, fraction=0.05, pad=0.02).ax.tick_params(labelsize=6)
    if title:
        ax.set_title(title, fontsize=9)
    return _png(fig)


def heatmap_table(grid: Mapping[tuple[int, int], Mapping[str, float]]) -> str:
    ops = heatmap_ops(grid)
    rows = [[c, i, *[fmt(per_op[o]) if o in per_op else "" for o in ops]] for (c, i), per_op in grid.items()]
    return html_table(rows, ["cell", "layer", *ops])


def heatmap_section(by_block: Mapping[int, Sequence[Mapping[str, Any]]], stat: str = "min",
                    draw: bool = True) -> str:
    """One heatmap per block (PNG, with its values as a table underneath), the caption naming
    ``stat``."""
    parts = [f'<p class="muted">Each square: the {esc(HEATMAP_CAPTION[stat])}. Rows: the cells of the '
             "block and their layers; columns: the candidate ops; brighter (yellow) is a lower loss. "
             "Losses compare within a block, not across blocks.</p>"]
    for k, rows in by_block.items():
        grid = op_cell_losses(rows, stat)
        if not grid:
            continue
        parts.append(f"<h3>Block {esc(k)}</h3>")
        if draw:
            parts.append(img(draw_op_cell_heatmap(grid, f"block {k}: {stat} loss by op and layer"),
                             f"block {k} op-by-cell loss"))
        parts.append(f"<details><summary>values</summary>{heatmap_table(grid)}</details>")
    return section(f"Op-by-cell loss heatmaps ({stat} loss)", *parts)


# ----- block supernet loss curves ---------------------------------------------------------------
def curve_points(history: Sequence[Mapping[str, Any]]) -> tuple[list[int], list[float]]:
    """(epochs, losses) of one block's history (entries without a finite loss left out)."""
    pts = [(int(h["epoch"]), float(h["loss"])) for h in history
           if h.get("loss") is not None and math.isfinite(float(h["loss"]))]
    return [e for e, _ in pts], [v for _, v in pts]


def draw_block_curves(histories: Mapping[int, Sequence[Mapping[str, Any]]], title: str = "") -> bytes:
    """One small panel per block (block losses differ in scale): training loss per epoch."""
    plt = _pyplot()
    blocks = sorted(histories)
    cols = min(4, max(1, len(blocks)))
    n_rows = -(-len(blocks) // cols)
    fig, axes = plt.subplots(n_rows, cols, figsize=(2.6 * cols, 1.9 * n_rows), squeeze=False)
    for ax in axes.flat[len(blocks):]:
        ax.axis("off")
    for ax, k in zip(axes.flat, blocks, strict=False):
        xs, ys = curve_points(histories[k])
        ax.plot(xs, ys, marker="o", ms=2.5, lw=1, color="#4c72b0")
        ax.set_title(f"block {k}", fontsize=8)
        ax.set_xlabel("epoch", fontsize=7)
        ax.set_ylabel("train loss (MSE)", fontsize=7)
        ax.tick_params(labelsize=6)
        ax.grid(alpha=0.3)
    if title:
        fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    return _png(fig)


def curves_table_rows(histories: Mapping[int, Sequence[Mapping[str, Any]]]) -> list[list[str]]:
    """Per block: epochs, first and last loss, images/s of the last epoch."""
    rows = []
    for k in sorted(histories):
        xs, ys = curve_points(histories[k])
        if not xs:
            continue
        ips = histories[k][-1].get("images_per_s")
        rows.append([str(k), str(xs[-1]), fmt(ys[0]), fmt(ys[-1]), fmt(ips, 3) if ips is not None else "-"])
    return rows


CURVE_HEADER = ["block", "epochs", "first epoch loss", "last epoch loss", "images/s (last epoch)"]


def block_curves_section(histories: Mapping[int, Sequence[Mapping[str, Any]]], title: str,
                         draw: bool = True) -> str:
    """The block curves as a figure and a table; empty without any history."""
    if not any(curve_points(h)[0] for h in histories.values()):
        return ""
    return section(title, img(draw_block_curves(histories), title) if draw else "",
                   html_table(curves_table_rows(histories), CURVE_HEADER))


def curves_markdown(histories: Mapping[int, Sequence[Mapping[str, Any]]]) -> str:
    """Markdown: training loss per epoch (rows) and block (columns), for the Markdown report."""
    from components.reports import md_table

    blocks = [k for k in sorted(histories) if curve_points(histories[k])[0]]
    if not blocks:
        return ""
    by_block = {k: dict(zip(*curve_points(histories[k]), strict=True)) for k in blocks}
    epochs = sorted({e for k in blocks for e in by_block[k]})
    rows = [[e, *[fmt(by_block[k][e]) if e in by_block[k] else "" for k in blocks]] for e in epochs]
    return "## Training loss (MSE) per epoch\n\n" + md_table(rows, ["epoch", *[f"block {k}" for k in blocks]])


# ----- teacher vs searched accuracy, accuracy vs params -----------------------------------------
def _top1(entry: Mapping[str, Any] | None) -> float | None:
    m = (entry or {}).get("metrics") or {}
    return m.get("top1")


def accuracy_rows(summary: Mapping[str, Any]) -> tuple[list[str], list[list[str]]]:
    """(header, rows): per generation the teacher, its top-1, the searched net's top-1 retrained
    at its own size and scaled up (where the generation did either), and a random architecture's
    top-1 and params only when some generation holds one (``random: {metrics: {top1, params}}``:
    trained as that generation's searched net is, so compare it with the scaled teacher before
    the last generation and with the searched net in the last), and the searched net's params as
    trained there."""
    gens = list(summary.get("generations") or [])
    with_random = any(_top1(g.get("random")) is not None for g in gens)
    header = ["gen", "teacher", "teacher top-1 (%)", "searched net top-1 (%)", "scaled teacher top-1 (%)"]
    header.append("searched net params")
    if with_random:
        header += ["random architecture top-1 (%)", "random architecture params"]
    root = str(summary.get("root") or "").rstrip("/") + "/"
    rows = []
    for i, g in enumerate(gens):
        teacher = g.get("teacher") or {}
        model = str(teacher.get("model", ""))
        model = model[len(root):] if root != "/" and model.startswith(root) else model   # run-root relative
        t_top1 = teacher.get("top1")
        if t_top1 is None and i > 0:    # the previous generation's scaled net is this one's teacher
            t_top1 = _top1(gens[i - 1].get("scaled"))
        row = [str(g.get("generation")), model, fmt(t_top1),
               fmt(_top1(g.get("retrain"))), fmt(_top1(g.get("scaled")))]
        trained = g.get("scaled") or g.get("retrain") or {}
        row.append(human((trained.get("metrics") or {}).get("params")))
        if with_random:
            rnd = g.get("random") or {}
            row += [fmt(_top1(rnd)), human((rnd.get("metrics") or {}).get("params"))]
        rows.append(row)
    return header, rows


def retrained_points(summary: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Every retrained net of the run with its params and top-1: ``{label, kind, params, top1}``."""
    pts = []
    for g in summary.get("generations") or []:
        n = g.get("generation")
        t = g.get("teacher") or {}
        if t.get("top1") is not None and t.get("params") is not None:
            pts.append({"label": f"gen{n} teacher", "kind": "teacher", "params": t["params"], "top1": t["top1"]})
        for key, kind in (("retrain", "searched"), ("scaled", "scaled teacher"), ("random", "random")):
            m = (g.get(key) or {}).get("metrics") or {}
            if m.get("top1") is not None and m.get("params") is not None:
                scaled = key == "random" and (g.get(key) or {}).get("scaled")
                pts.append({"label": f"gen{n} {kind}" + (" (scaled)" if scaled else ""), "kind": kind, "params": m["params"], "top1": m["top1"]})
    return pts


KIND_STYLE = {"teacher": ("#8172b3", "s"), "searched": ("#c44e52", "*"), "scaled teacher": ("#4c72b0", "o"),
              "random": ("#937860", "x")}


def draw_accuracy_vs_params(points: Sequence[Mapping[str, Any]]) -> bytes:
    plt = _pyplot()
    from components.reports import _HumanFormatter

    fig, ax = plt.subplots(figsize=(5.2, 3.4))
    for kind, (colour, marker) in KIND_STYLE.items():
        pts = [p for p in points if p["kind"] == kind]
        if pts:
            ax.scatter([p["params"] for p in pts], [p["top1"] for p in pts], color=colour, marker=marker,
                       s=70 if marker == "*" else 30, label=kind, zorder=3)
    for p in points:
        ax.annotate(p["label"], (p["params"], p["top1"]), fontsize=6, xytext=(3, 3), textcoords="offset points")
    ax.set_xlabel("params")
    ax.set_ylabel("top-1 (%)")
    ax.xaxis.set_major_formatter(_HumanFormatter())
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    return _png(fig)


def accuracy_section(summary: Mapping[str, Any], draw: bool = True) -> str:
    """Teacher vs searched table and the accuracy-vs-params scatter of every retrained net."""
    header, rows = accuracy_rows(summary)
    note = ('<p class="muted">searched net: the searched architecture retrained at its own size (the last '
            "generation); scaled teacher: the searched architecture scaled up and retrained, the next "
            "generation's teacher. A generation's teacher top-1 is the previous one's scaled teacher. Random "
            "architecture: drawn from the space within +-10% of the searched net's params and trained with its "
            "recipe and seed (scaled like it before the last generation).</p>")
    trend = "".join(f'<p class="muted">note: {esc(line)}</p>' for line in summary.get("trend") or [])
    parts = [section("Teacher vs searched accuracy", note, html_table(rows, header), trend) if rows else ""]
    pts = retrained_points(summary)
    if pts:
        parts.append(section("Accuracy vs params of every retrained net",
                             img(draw_accuracy_vs_params(pts), "accuracy vs params") if draw else "",
                             html_table([[p["label"], human(p["params"]), fmt(p["top1"])] for p in pts],
                                        ["net", "params", "top-1 (%)"])))
    return "\n".join(p for p in parts if p)


# ----- pages ------------------------------------------------------------------------------------
def rating_page(by_block: Mapping[int, Sequence[Mapping[str, Any]]], generation: int, tables_md: str = "",
                stat: str = "min", draw: bool = True) -> str:
    """The rating's HTML report (``rating.html`` next to ``rating.md``): the op-by-cell heatmaps
    of every block, then the Markdown report's tables as preformatted text."""
    from components.reports import html_page

    parts = [heatmap_section(by_block, stat, draw)]
    if tables_md:
        parts.append(section("Blocks and best candidates (rating.md)", f"<pre>{esc(tables_md)}</pre>"))
    return html_page(f"Rating (Algorithm 1): generation {generation}", parts)


def supernets_page(histories: Mapping[int, Sequence[Mapping[str, Any]]], generation: int,
                   tables_md: str = "", draw: bool = True) -> str:
    """The supernet training's HTML report (``supernets.html``): every block's loss curve."""
    from components.reports import html_page

    parts = [block_curves_section(histories, "Block supernet training loss per epoch", draw)
             or '<p class="muted">no block history stored</p>']
    if tables_md:
        parts.append(section("Blocks (supernets.md)", f"<pre>{esc(tables_md)}</pre>"))
    return html_page(f"Block supernets: generation {generation}", parts)
