"""Human-readable reports of the pipeline stages: pure functions returning HTML / Markdown strings.

The KFP UI shows an ``HTML`` artifact as a page and a ``Markdown`` artifact as text; images are
PNG files embedded as base64 ``data:`` URIs, so a report is one self-contained file that also
opens from the run root (``<root>/gen<g>/reports/*.html``, ``<root>/summary.html``).

- :func:`draw_pareto`: the loss-vs-cost Pareto front of a search, the chosen net marked;
- :func:`draw_architecture`: the searched network block by block like Fig. 13 of the DNA paper
  (one box per layer, coloured by kernel size, height by expansion ratio, grouped by block);
- :func:`search_report`, :func:`retrain_report`, :func:`transfer_report`, :func:`summary_report`,
  :func:`blocks_report`, :func:`data_report`: the pages of each stage.

Nothing here needs KFP or Ray; the layers of an architecture come from the library
(``dna.space.family_of_arch(arch).arch_layers``), so it is unit-tested on its own.
"""

from __future__ import annotations

import base64
import html
import io
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

KERNEL_COLOURS = {1: "#bdbdbd", 3: "#4c72b0", 5: "#dd8452", 7: "#c44e52", 9: "#8172b3"}
FIXED_COLOUR = "#9e9e9e"

CSS = """
body{font-family:-apple-system,Segoe UI,Helvetica,Arial,sans-serif;margin:16px;color:#222;max-width:1100px}
h1{font-size:1.4em}h2{font-size:1.15em;margin-top:1.4em;border-bottom:1px solid #ddd}
table{border-collapse:collapse;margin:6px 0}td,th{border:1px solid #ccc;padding:3px 8px;text-align:left}
th{background:#f3f3f3}code{background:#f5f5f5;padding:0 3px}img{max-width:100%;margin:4px 0}
.muted{color:#777}
"""


# ----- small formatting helpers -----------------------------------------------------------------
def esc(x: Any) -> str:
    return html.escape(str(x))


def human(n: Any) -> str:
    """1234567 -> '1.23M' (params, FLOPs); None -> '-'."""
    if n is None:
        return "-"
    try:
        v = float(n)
    except (TypeError, ValueError):
        return str(n)
    for div, suffix in ((1e9, "G"), (1e6, "M"), (1e3, "K")):
        if abs(v) >= div:
            return f"{v / div:.3g}{suffix}"
    return f"{v:.4g}" if not v.is_integer() else str(int(v))


def fmt(v: Any, digits: int = 4) -> str:
    if isinstance(v, bool) or v is None:
        return "-" if v is None else str(v)
    if isinstance(v, float):
        return f"{v:.{digits}g}"
    return str(v)


def png_data_uri(png: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


def img(png: bytes | None, alt: str) -> str:
    """An ``<img>`` with the PNG embedded (empty string without a PNG)."""
    if not png:
        return ""
    return f'<img alt="{esc(alt)}" src="{png_data_uri(png)}"/>'


def html_table(rows: Iterable[Sequence[Any]], header: Sequence[str] | None = None) -> str:
    out = ["<table>"]
    if header:
        out.append("<tr>" + "".join(f"<th>{esc(h)}</th>" for h in header) + "</tr>")
    for r in rows:
        out.append("<tr>" + "".join(f"<td>{esc(c)}</td>" for c in r) + "</tr>")
    out.append("</table>")
    return "\n".join(out)


def md_table(rows: Iterable[Sequence[Any]], header: Sequence[str]) -> str:
    def cell(c: Any) -> str:
        return str(c).replace("|", "\\|").replace("\n", " ")

    lines = ["| " + " | ".join(cell(h) for h in header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(cell(c) for c in r) + " |" for r in rows]
    return "\n".join(lines)


def html_page(title: str, sections: Sequence[str]) -> str:
    body = "\n".join(s for s in sections if s)
    return (f"<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>{esc(title)}</title>"
            f"<style>{CSS}</style></head>\n<body>\n<h1>{esc(title)}</h1>\n{body}\n</body></html>\n")


def section(title: str, *parts: str) -> str:
    return f"<h2>{esc(title)}</h2>\n" + "\n".join(p for p in parts if p)


def _png(fig) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100, bbox_inches="tight")
    import matplotlib.pyplot as plt

    plt.close(fig)
    return buf.getvalue()


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


# ----- architecture (Fig. 13) -------------------------------------------------------------------
def arch_layers(arch: Mapping[str, Any]) -> list[dict[str, Any]]:
    """One entry per layer of an architecture JSON, from its family in the library
    (``Family.arch_layers``): CNN layers with type, kernel(s), expansion, stride, channels, SE;
    ViT layers with heads, MLP ratio and width (the space's own head dim)."""
    from dna.space import family_of_arch

    return family_of_arch(arch).arch_layers(arch)


def stage_labels(arch: Mapping[str, Any]) -> list[str]:
    """'fixed' for stage 0 of a searched net, else 'block k' (the space's blocks)."""
    n = len(arch.get("arch_def") or [])
    return ["fixed"] + [f"block {k}" for k in range(n - 1)] if n else []


def is_vit(arch: Mapping[str, Any]) -> bool:
    """An architecture made of transformer layers (a searched ViT of DNA++)."""
    return any(layer["type"] == "transformer" for layer in arch_layers(arch))


def draw_vit_architecture(arch: Mapping[str, Any], title: str | None = None) -> bytes:
    """The searched ViT block by block: one box per transformer layer, colour = heads, height =
    MLP ratio, width (heads x head dim) under each block."""
    plt = _pyplot()
    from matplotlib.patches import Patch, Rectangle

    layers = arch_layers(arch)
    heads = sorted({x["heads"] for x in layers})
    cmap = plt.get_cmap("viridis", max(2, len(heads)))
    colour = {h: cmap(i) for i, h in enumerate(heads)}
    max_r = max([x["mlp_ratio"] for x in layers] + [4.0])
    fig, ax = plt.subplots(figsize=(min(22.0, max(6.0, 0.42 * (len(layers) + 4) + 1.5)), 2.9))
    ax.add_patch(Rectangle((0, -0.35), 0.7, 0.7, color=FIXED_COLOUR))
    ax.text(0.35, -0.5, "patch\nembed", ha="center", va="top", fontsize=7)
    x, stage, start = 1.1, None, 1.1
    for i, layer in enumerate(layers + [None]):
        if layer is None or layer["stage"] != stage:
            if stage is not None:
                prev = layers[i - 1]
                ax.plot([start, x - 0.25], [-0.72, -0.72], color="#555", lw=1)
                ax.text((start + x - 0.25) / 2, -0.78, f"block {stage}\nw{prev['width']}", ha="center",
                        va="top", fontsize=7)
                x += 0.35
            if layer is None:
                break
            stage, start = layer["stage"], x
        h = 0.25 + 0.75 * layer["mlp_ratio"] / max_r
        ax.add_patch(Rectangle((x, -h / 2), 0.3, h, color=colour[layer["heads"]], ec="black", lw=0.4))
        ax.text(x + 0.15, h / 2 + 0.04, f"{layer['mlp_ratio']:g}", ha="center", va="bottom", fontsize=6)
        x += 0.42
    ax.add_patch(Rectangle((x, -0.35), 0.7, 0.7, color=FIXED_COLOUR))
    ax.text(x + 0.35, -0.5, "head", ha="center", va="top", fontsize=7)
    ax.set_xlim(-0.2, x + 0.9)
    ax.set_ylim(-1.25, 0.85)
    ax.axis("off")
    handles = [Patch(color=colour[h], label=f"{h} heads") for h in heads] + [Patch(color=FIXED_COLOUR, label="fixed")]
    ax.legend(handles=handles, loc="upper left", ncol=len(handles), fontsize=7, frameon=False,
              bbox_to_anchor=(0.0, 1.12), title="attention heads (box height: MLP ratio, number on top)",
              title_fontsize=7)
    if title:
        ax.set_title(title, fontsize=9, pad=22)
    return _png(fig)


def draw_architecture(arch: Mapping[str, Any], title: str | None = None) -> bytes:
    """Fig. 13-like drawing: stem, one box per layer (colour = kernel size, height = expansion
    ratio, a dot under stride-2 layers), layers grouped by block with their widths, head.
    A ViT architecture (DNA++) is drawn by :func:`draw_vit_architecture`."""
    if is_vit(arch):
        return draw_vit_architecture(arch, title)
    plt = _pyplot()
    from matplotlib.patches import Patch, Rectangle

    layers = arch_layers(arch)
    labels = stage_labels(arch)
    max_e = max([float(layer["expansion"]) for layer in layers] + [6.0])
    n = len(layers)
    fig_w = min(22.0, max(6.0, 0.42 * (n + 4) + 1.5))
    fig, ax = plt.subplots(figsize=(fig_w, 2.9))
    x = 0.0
    ax.add_patch(Rectangle((x, -0.35), 0.7, 0.7, color=FIXED_COLOUR))
    ax.text(x + 0.35, -0.5, "stem", ha="center", va="top", fontsize=7)
    x += 1.1
    kernels_seen: set[int] = set()
    stage = None
    group_start = x
    for i, layer in enumerate(layers + [None]):
        if layer is None or layer["stage"] != stage:
            if stage is not None:
                ax.plot([group_start, x - 0.25], [-0.72, -0.72], color="#555", lw=1)
                prev = layers[i - 1]
                label = labels[stage] if stage < len(labels) else f"stage {stage}"
                ch = f"\nc{prev['channels']}" if prev["channels"] else ""
                ax.text((group_start + x - 0.25) / 2, -0.78, label + ch, ha="center", va="top", fontsize=7)
                x += 0.35
            if layer is None:
                break
            stage, group_start = layer["stage"], x
        h = 0.25 + 0.75 * float(layer["expansion"]) / max_e
        colour = KERNEL_COLOURS.get(int(layer["kernel"]), "#55a868")
        if layer["stage"] == 0 and labels and labels[0] == "fixed":
            colour = FIXED_COLOUR
        else:
            kernels_seen.add(int(layer["kernel"]))
        ax.add_patch(Rectangle((x, -h / 2), 0.3, h, color=colour, ec="black", lw=0.4))
        e = float(layer["expansion"])
        ax.text(x + 0.15, h / 2 + 0.04, f"{e:g}", ha="center", va="bottom", fontsize=6)
        if layer["stride"] > 1:
            ax.plot([x + 0.15], [-0.62], marker="v", color="black", ms=3)
        x += 0.42
    ax.add_patch(Rectangle((x, -0.35), 0.7, 0.7, color=FIXED_COLOUR))
    ax.text(x + 0.35, -0.5, "head", ha="center", va="top", fontsize=7)
    x += 0.9
    ax.set_xlim(-0.2, x)
    ax.set_ylim(-1.25, 0.85)
    ax.axis("off")
    handles = [Patch(color=KERNEL_COLOURS.get(k, "#55a868"), label=f"{k}x{k}") for k in sorted(kernels_seen)]
    handles.append(Patch(color=FIXED_COLOUR, label="fixed"))
    ax.legend(handles=handles, loc="upper left", ncol=len(handles), fontsize=7, frameon=False,
              bbox_to_anchor=(0.0, 1.12), title="kernel (box height: expansion ratio, number on top; "
              "triangle: stride 2)", title_fontsize=7)
    if title:
        ax.set_title(title, fontsize=9, pad=22)
    return _png(fig)


def architecture_table(arch: Mapping[str, Any]) -> str:
    """Per block: the chosen cell and ops (searched nets) and the arch_def strings."""
    if is_vit(arch):
        return html_table([[b["block"], b["ops"]] for b in arch.get("blocks") or []], ["block", "heads-ratio-depth"])
    labels = stage_labels(arch)
    chosen = {int(b["block"]): b for b in arch.get("blocks") or []}
    rows = []
    for i, strings in enumerate(arch.get("arch_def") or []):
        k = i - 1
        c = chosen.get(k)
        rows.append([labels[i] if i < len(labels) else i, "" if c is None else c["cell"],
                     "" if c is None else c["ops"], " ".join(strings)])
    return html_table(rows, ["stage", "cell", "ops", "arch_def"])


# ----- Pareto front -----------------------------------------------------------------------------
def draw_pareto(fronts: Mapping[str, Sequence[Mapping[str, Any]]], chosen: Mapping[str, Any] | None = None,
                limits: Mapping[str, float | None] | None = None, title: str | None = None) -> bytes:
    """Loss vs cost (one panel per cost in ``fronts``: ``params``, ``flops``...), the exact Pareto
    front as a step line, the chosen architecture as a star, the constraint as a dashed line."""
    plt = _pyplot()
    costs = [c for c in fronts if fronts[c]]
    n = max(1, len(costs))
    fig, axes = plt.subplots(1, n, figsize=(4.6 * n, 3.4), squeeze=False)
    for ax, cost in zip(axes[0], costs or ["params"], strict=False):
        pts = sorted(fronts.get(cost) or [], key=lambda a: a[cost])
        if pts:
            xs = [a[cost] for a in pts]
            ys = [a["loss"] for a in pts]
            ax.step(xs, ys, where="post", color="#4c72b0", lw=1)
            ax.scatter(xs, ys, s=12, color="#4c72b0", label=f"Pareto front ({len(pts)})", zorder=3)
        if chosen is not None and cost in chosen:
            ax.scatter([chosen[cost]], [chosen["loss"]], marker="*", s=160, color="#c44e52",
                       label="chosen", zorder=4)
        lim = (limits or {}).get(cost)
        if lim:
            ax.axvline(lim, ls="--", color="#777", lw=1, label=f"max {cost} {human(lim)}")
        ax.set_xlabel(cost)
        ax.set_ylabel("summed block loss")
        ax.xaxis.set_major_formatter(_HumanFormatter())
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return _png(fig)


class _HumanFormatter:
    """A matplotlib tick formatter printing 1.2M / 340K (a callable works as a FuncFormatter)."""

    def __new__(cls):
        from matplotlib.ticker import FuncFormatter

        return FuncFormatter(lambda v, _pos: human(v))


# ----- stage reports ----------------------------------------------------------------------------
def cost_text(name: str, v: Any) -> str:
    """A cost's value in a report: ``1,234,567 (1.23M)`` (counts, bytes) or ``12.3`` (ms)."""
    from dna.cost_registry import BY_NAME

    if v is None:
        return "-"
    return fmt(v) if name in BY_NAME and not BY_NAME[name].is_int else f"{int(v):,} ({human(v)})"


def arch_summary_rows(a: Mapping[str, Any]) -> list[list[str]]:
    """Loss and every cost of the registry the architecture has (params and FLOPs always)."""
    from dna.cost_registry import COSTS

    return [["loss (summed, lambda-weighted)", fmt(a.get("loss"))],
            *[[c.label, cost_text(c.name, a.get(c.name))] for c in COSTS
              if c.required or a.get(c.name) is not None]]


def search_report(result: Mapping[str, Any], arch: Mapping[str, Any],
                  fronts: Mapping[str, Sequence[Mapping[str, Any]]] | None = None,
                  limits: Mapping[str, float | None] | None = None, generation: int | None = None,
                  where: Mapping[str, str] | None = None) -> str:
    """The search stage: chosen architecture, params/FLOPs, Pareto plot, Fig. 13 drawing."""
    best = result["architectures"][0]
    gen = "" if generation is None else f" (generation {generation})"
    limit_rows = [[k, cost_text(k, v)] for k, v in (limits or {}).items() if v]
    parts = [
        section("Chosen architecture", html_table(arch_summary_rows(best), ["", "value"]),
                html_table(limit_rows, ["constraint", "limit"]) if limit_rows
                else '<p class="muted">no constraint: the lowest-loss architecture</p>',
                architecture_table(arch)),
        section("Searched network (Fig. 13 style)", img(draw_architecture(arch), "architecture")),
    ]
    if fronts:
        parts.append(section("Loss vs cost: exact Pareto front",
                             img(draw_pareto(fronts, best, limits), "pareto")))
    if where:
        parts.append(section("Files", html_table(sorted(where.items()), ["what", "URI"])))
    return html_page(f"DNA search{gen}", parts)


def curve_section(history: Sequence[Mapping[str, Any]] | None, curve_png: bytes | None) -> str:
    parts = [img(curve_png, "training curves")]
    if history:
        cols = [c for c in ("epoch", "train_loss", "val_loss", "val_top1", "val_top5", "lr", "time_s")
                if c in history[0]]
        parts.append(html_table([[fmt(r.get(c)) for c in cols] for r in history], cols))
    return section("Training curves", *parts) if any(parts) else ""


def retrain_report(metrics: Mapping[str, Any], curve_png: bytes | None = None,
                   arch: Mapping[str, Any] | None = None, title: str = "Retrained network",
                   where: Mapping[str, str] | None = None) -> str:
    """A retrain (final net, scaled teacher or generation-0 teacher): accuracy, cost, curves."""
    rows = [["top-1 (%)", fmt(metrics.get("top1"))], ["top-5 (%)", fmt(metrics.get("top5"))],
            ["best top-1 (%)", f"{fmt(metrics.get('best_top1'))} (epoch {metrics.get('best_epoch', '-')})"],
            ["epochs", fmt(metrics.get("epochs"))],
            ["params", human(metrics.get("params"))], ["FLOPs (MACs)", human(metrics.get("flops"))],
            ["resolution", fmt(metrics.get("resolution"))], ["classes", fmt(metrics.get("num_classes"))],
            ["knowledge distillation", fmt(metrics.get("kd"))], ["device", fmt(metrics.get("device"))],
            ["train time (s)", fmt(metrics.get("train_time_s"))]]
    parts = [section("Result", html_table(rows, ["", "value"])),
             curve_section(metrics.get("history"), curve_png)]
    if arch is not None:
        parts.append(section("Network", img(draw_architecture(arch), "architecture"),
                             architecture_table(arch)))
    if where:
        parts.append(section("Files", html_table(sorted(where.items()), ["what", "URI"])))
    return html_page(title, parts)


def teacher_given_report(teacher: Mapping[str, Any], generation: int) -> str:
    rows = [[k, fmt(v)] for k, v in teacher.items()]
    return html_page(f"Teacher of generation {generation}",
                     [section("Given teacher (not trained here)", html_table(rows, ["", "value"]))])


def _flat_metrics(m: Mapping[str, Any], prefix: str = "") -> list[tuple[str, Any]]:
    out: list[tuple[str, Any]] = []
    for k, v in m.items():
        if isinstance(v, Mapping):
            out += _flat_metrics(v, f"{prefix}{k}.")
        elif isinstance(v, (int, float, str, bool)) or v is None:
            out.append((prefix + k, v))
    return out


def transfer_report(results: Mapping[str, Mapping[str, Any]], samples: Mapping[str, bytes] | None = None,
                    generation: int | None = None) -> str:
    """Segmentation / detection / classification transfer: metrics and sample predictions."""
    if not results:
        return html_page("Transfer", ['<p class="muted">no transfer tasks in this run '
                                      "(run config <code>transfer: []</code>)</p>"])
    names = {"seg": "Segmentation (DeepLabv3+)", "det": "Detection (Faster R-CNN)", "cls": "Classification"}
    parts = []
    for task, r in results.items():
        rows = [[k, fmt(v)] for k, v in _flat_metrics(r)
                if not k.startswith(("history", "config")) and not isinstance(v, str)]
        parts.append(section(names.get(task, task), html_table(rows[:40], ["metric", "value"]),
                             img((samples or {}).get(task), f"{task} samples")))
    gen = "" if generation is None else f" (generation {generation})"
    return html_page(f"Transfer of the searched backbone{gen}", parts)


def _ray_seconds(r: Mapping[str, Any]) -> float | None:
    ray = r.get("ray") or {}
    if ray.get("finished_at") and ray.get("started_at"):
        return ray["finished_at"] - ray["started_at"]
    return None


def drop_empty_columns(rows: Sequence[Sequence[Any]], header: Sequence[str],
                       empty: tuple[Any, ...] = ("", "-", None)) -> tuple[list[list[Any]], list[str]]:
    """The table without the columns no row has a value in (e.g. seconds when every block was
    cached): a Markdown report shows no column that is empty throughout."""
    keep = [j for j in range(len(header)) if any(r[j] not in empty for r in rows)] if rows else list(range(len(header)))
    return [[r[j] for j in keep] for r in rows], [header[j] for j in keep]


def blocks_report(kind: str, results: Mapping[int, Mapping[str, Any]], generation: int,
                  extra: str = "", counts: Mapping[int, int] | None = None,
                  best: Mapping[int, float] | None = None, supernet_epochs: Mapping[int, Any] | None = None) -> str:
    """Markdown: one row per block of a fan-out, each column one quantity.

    ``train``: the epochs trained and the last epoch's training loss (MSE to the teacher's map).
    ``rate``: the candidates rated (``counts``, else the rows the rating wrote), the best rated loss
    (Eq. 7, ``best``) and the epochs of the supernet rated (``supernet_epochs``). Both: whether the
    block was cached (stored by an earlier run), its seconds and host. Columns without any value
    (e.g. seconds when every block was cached) are left out."""
    rows = []
    for k in sorted(results):
        r = results[k]
        secs = _ray_seconds(r)
        common = ["yes" if r.get("cached") else "no", fmt(secs, 3) if secs is not None else "-",
                  (r.get("ray") or {}).get("host", "-")]
        if kind == "train":
            rows.append([k, fmt(r.get("epochs", "-")), fmt(r.get("loss", "-")), *common])
        else:
            n = (counts or {}).get(k, r.get("rows"))
            rows.append([k, fmt(n if n is not None else "-"), fmt((best or {}).get(k, "-")),
                         fmt((supernet_epochs or {}).get(k, "-")), *common])
    if kind == "train":
        head = ["block", "epochs", "final train loss (MSE)", "cached", "seconds", "host"]
    else:
        head = ["block", "candidates rated", "best loss (Eq. 7)", "supernet epochs", "cached", "seconds", "host"]
    rows, head = drop_empty_columns(rows, head)
    title = "Block supernets" if kind == "train" else "Rating (Algorithm 1)"
    return f"# {title}: generation {generation}\n\n{md_table(rows, head)}\n\n{extra}".rstrip() + "\n"


def scores_markdown(per_block: Mapping[int, Sequence[Mapping[str, Any]]], counts: Mapping[int, int],
                    scores_uri: str) -> str:
    """Markdown: rated candidates per block and the best few of each."""
    lines = [f"Scores table: `{scores_uri}` (Parquet, partitioned by block)", ""]
    rows = []
    for k in sorted(per_block):
        for i, c in enumerate(per_block[k]):
            rows.append([k if i == 0 else "", counts.get(k, "") if i == 0 else "", c["cell"], c["ops"],
                         c.get("in_channels", ""), fmt(c["loss"]), human(c["params"]), human(c["flops"])])
    lines.append(md_table(rows, ["block", "candidates", "cell", "ops", "in channels", "loss (Eq. 7)", "params",
                                 "FLOPs"]))
    return "\n".join(lines)


def data_report(data: Mapping[str, Any], classes: Sequence[str], sizes: Mapping[str, Any] | None = None,
                root: str | None = None) -> str:
    rows = [[k, fmt(v)] for k, v in data.items()]
    out = ["# Data", "", md_table(rows, ["setting", "value"]), "",
           f"**{len(classes)} classes**: " + ", ".join(classes[:50]) + (" ..." if len(classes) > 50 else "")]
    if sizes:
        out += ["", md_table([[k, v] for k, v in sizes.items()], ["split", "images"])]
    if root:
        out += ["", f"Run root: `{root}`"]
    return "\n".join(out) + "\n"


def summary_report(summary: Mapping[str, Any], arch: Mapping[str, Any] | None = None,
                   fronts: Mapping[str, Sequence[Mapping[str, Any]]] | None = None,
                   curve_png: bytes | None = None, samples: Mapping[str, bytes] | None = None,
                   block_histories: Mapping[int, Mapping[int, Sequence[Mapping[str, Any]]]] | None = None) -> str:
    """The run's final page: answer (architecture, params, FLOPs, accuracy), the generations,
    teacher vs searched accuracy and accuracy vs params, Pareto plot, drawing, block supernet
    curves (``block_histories``: generation -> block -> history), retrain curves, transfer, where
    every artifact is."""
    from components import nas_reports

    final = summary.get("final") or {}
    best = final.get("search") or {}
    acc = final.get("retrain") or {}
    rows = arch_summary_rows(best) if best else []
    rows += [["top-1 (%) after retraining", fmt(acc.get("top1"))], ["top-5 (%)", fmt(acc.get("top5"))]]
    for task, r in (final.get("transfer") or {}).items():
        for k in ("miou", "mIoU", "map", "mAP", "top1"):
            if k in r:
                rows.append([f"transfer {task}: {k}", fmt(r[k])])
    gens = []
    for g in summary.get("generations", []):
        s = g.get("search") or {}
        sc = (g.get("scaled") or {}).get("metrics") or {}
        gens.append([g.get("generation"), g.get("teacher", {}).get("model", ""), fmt(s.get("loss")),
                     human(s.get("params")), human(s.get("flops")),
                     fmt(sc.get("top1")) if sc else "-",
                     fmt((g.get("retrain") or {}).get("metrics", {}).get("top1"))
                     if g.get("retrain") else "-"])
    parts = [
        section("Answer", html_table(rows, ["", "value"])),
        section("Generations", html_table(gens, ["gen", "teacher", "search loss", "params", "FLOPs",
                                                 "scaled teacher top-1", "retrained top-1"])),
        nas_reports.accuracy_section(summary),
    ]
    if arch is not None:
        parts.append(section("Searched network (Fig. 13 style)", img(draw_architecture(arch), "architecture"),
                             architecture_table(arch)))
    if fronts:
        parts.append(section("Loss vs cost: exact Pareto front (last generation)",
                             img(draw_pareto(fronts, best or None, summary.get("limits")), "pareto")))
    for g, hist in sorted((block_histories or {}).items()):
        parts.append(nas_reports.block_curves_section(hist, f"Block supernet training loss: generation {g}"))
    if curve_png:
        parts.append(section("Retraining curves", img(curve_png, "curves")))
    for task, png in (samples or {}).items():
        parts.append(section(f"Transfer samples: {task}", img(png, f"{task} samples")))
    where = summary.get("artifacts") or {}
    if where:
        parts.append(section("Where everything is", html_table(sorted(where.items()), ["artifact", "URI"])))
    return html_page(f"DNA run {summary.get('root', '')}", parts)
