"""The NAS reports (issue #14): op-by-cell loss heatmaps, block supernet curves, teacher vs searched
accuracy and accuracy vs params, the segmentation legend, the rating/supernet Markdown tables.
Synthetic data structures only (a small scores table, fake histories, a fake summary)."""

from __future__ import annotations

import io
import re

import numpy as np
import pytest
import torch
from PIL import Image

from components import nas_reports, reports
from dna import storage
from dna.rate.scores import ScoresMeta, make_table
from tests.helpers import FakeArtifact

PNG = "data:image/png;base64,"


def small_scores():
    """Block 0: cell 0 has one layer, cell 1 two; block 1: cell 0 one layer; two input widths."""
    rows = [  # (block, cell, ops, in_channels, loss)
        (0, 0, "k3e3", 8, 1.0), (0, 0, "k3e3", 16, 1.2), (0, 0, "k5e6", 8, 0.8),
        (0, 1, "k3e3-k3e3", 8, 0.7), (0, 1, "k3e3-k5e6", 8, 0.5), (0, 1, "k5e6-k3e3", 8, 0.9),
        (0, 1, "k5e6-k5e6", 8, 0.6),
        (1, 0, "k3e3", 16, 2.0), (1, 0, "k5e6", 16, 3.0),
    ]
    cols = {"block": [], "cell": [], "ops": [], "in_channels": [], "out_channels": [], "loss": [],
            "params": [], "flops": []}
    for b, c, ops, cin, loss in rows:
        for name, v in zip(("block", "cell", "ops", "in_channels", "loss"), (b, c, ops, cin, loss), strict=True):
            cols[name].append(v)
        cols["out_channels"].append(16)
        cols["params"].append(100)
        cols["flops"].append(1000)
    meta = ScoresMeta(space={"name": "synthetic"}, resolution=32, teacher="t",
                      fixed={"params": 10, "flops": 10})
    return make_table(cols, meta)


def png_size(html: str) -> int:
    return len(re.findall(re.escape(PNG), html))


# ----- heatmap ----------------------------------------------------------------------------------
def test_heatmap_has_one_cell_per_cell_layer_and_op_with_its_min_and_mean_loss():
    by_block = nas_reports.scores_by_block(small_scores())
    assert sorted(by_block) == [0, 1]
    grid = nas_reports.op_cell_losses(by_block[0], "min")
    assert list(grid) == [(0, 0), (1, 0), (1, 1)]
    assert grid == {(0, 0): {"k3e3": 1.0, "k5e6": 0.8},          # min over both input widths
                    (1, 0): {"k3e3": 0.5, "k5e6": 0.6},
                    (1, 1): {"k3e3": 0.7, "k5e6": 0.5}}
    mean = nas_reports.op_cell_losses(by_block[0], "mean")
    assert mean[(0, 0)]["k3e3"] == pytest.approx(1.1) and mean[(1, 1)]["k3e3"] == pytest.approx(0.8)
    assert nas_reports.op_cell_losses(by_block[1]) == {(0, 0): {"k3e3": 2.0, "k5e6": 3.0}}
    with pytest.raises(ValueError, match="median"):
        nas_reports.op_cell_losses(by_block[0], "median")


def test_rating_page_draws_a_heatmap_per_block_and_names_the_statistic():
    by_block = nas_reports.scores_by_block(small_scores())
    html = nas_reports.rating_page(by_block, 3, "# Rating table")
    assert png_size(html) == 2 and "Block 0" in html and "Block 1" in html and "generation 3" in html
    assert "lowest loss" in html and "min loss" in html and "# Rating table" in html
    # the values table under block 0: rows cell/layer, one column per op
    table = html.split("<h3>Block 0</h3>")[1].split("</details>")[0]
    assert "<th>cell</th><th>layer</th><th>k3e3</th><th>k5e6</th>" in table
    assert "<tr><td>1</td><td>1</td><td>0.7</td><td>0.5</td></tr>" in table
    png = nas_reports.draw_op_cell_heatmap(nas_reports.op_cell_losses(by_block[0]))
    assert Image.open(io.BytesIO(png)).size[0] > 100


def test_heatmap_of_a_vit_like_table_leaves_impossible_choices_blank():
    rows = [{"cell": 0, "ops": "h2-r2-d1", "loss": 1.0}, {"cell": 0, "ops": "h4-r2-d1", "loss": 2.0}]
    grid = nas_reports.op_cell_losses(rows)
    assert grid == {(0, 0): {"h2": 1.0, "h4": 2.0}, (0, 1): {"r2": 1.0}, (0, 2): {"d1": 1.0}}
    assert "<tr><td>0</td><td>1</td><td></td><td></td><td>1</td><td></td></tr>" in nas_reports.heatmap_table(grid)
    nas_reports.draw_op_cell_heatmap(grid)     # NaN squares draw


# ----- block curves -----------------------------------------------------------------------------
HISTORIES = {0: [{"epoch": 1, "loss": 0.9, "images_per_s": 100.0}, {"epoch": 2, "loss": 0.4, "images_per_s": 120.0}],
             2: [{"epoch": 1, "loss": 5.0, "images_per_s": 50.0}]}


def test_block_curves_appear_per_block_in_the_supernet_report():
    html = nas_reports.supernets_page(HISTORIES, 0, "md")
    assert png_size(html) == 1
    assert "<tr><td>0</td><td>2</td><td>0.9</td><td>0.4</td><td>120</td></tr>" in html
    assert "<tr><td>2</td><td>1</td><td>5</td><td>5</td><td>50</td></tr>" in html
    md = nas_reports.curves_markdown(HISTORIES)
    assert "| epoch | block 0 | block 2 |" in md and "| 1 | 0.9 | 5 |" in md and "| 2 | 0.4 |  |" in md
    assert nas_reports.block_curves_section({1: []}, "t") == ""
    assert "no block history" in nas_reports.supernets_page({}, 0)


def test_block_histories_read_from_the_history_file_else_the_fanout_result(tmp_path):
    from dna.run_summary import block_histories
    from dna.train.block import history_uri

    sn = str(tmp_path / "supernet")
    storage.write_json({"block": 0, "epochs": 2, "history": HISTORIES[0]}, history_uri(f"{sn}/block0"))
    storage.write_json({"blocks": {"2": {"history": HISTORIES[2]}, "0": {"history": [{"epoch": 1, "loss": 9}]}}},
                       f"{sn}/fanout-train.json")
    assert block_histories(sn, 3) == {0: HISTORIES[0], 2: HISTORIES[2]}     # the block's own file first


def test_train_block_stores_its_history_next_to_the_checkpoint(tmp_path):
    from dna.train.block import BlockTrainConfig, history_uri, train_block
    from tests.helpers import tiny_data, tiny_teacher

    out = str(tmp_path / "sn" / "block1")
    cfg = BlockTrainConfig(block=1, out=out, teacher=tiny_teacher(str(tmp_path)), data=tiny_data(train_size=32),
                           epochs=2, max_steps_per_epoch=1)
    metrics = train_block(cfg)
    stored = storage.read_json(history_uri(out))
    assert stored["block"] == 1 and stored["epochs"] == 2
    assert [h["epoch"] for h in stored["history"]] == [1, 2]
    assert [h["loss"] for h in stored["history"]] == [h["loss"] for h in metrics["history"]]


# ----- summary: teacher vs searched, accuracy vs params ------------------------------------------
def fake_summary(random: bool = False) -> dict:
    g0 = {"generation": 0, "teacher": {"model": "tiny-teacher", "top1": 60.0, "params": 2_000_000},
          "search": {"loss": 1.0, "params": 300_000, "flops": 1_000_000},
          "scaled": {"metrics": {"top1": 65.5, "params": 900_000}}}
    g1 = {"generation": 1, "teacher": {"model": "/r/gen0/scaled/arch.json"},
          "search": {"loss": 0.9, "params": 400_000, "flops": 1_100_000},
          "retrain": {"metrics": {"top1": 58.25, "params": 400_000}}}
    if random:
        g1["random"] = {"metrics": {"top1": 41.0, "params": 390_000}}
    return {"root": "/r", "generations": [g0, g1], "final": {"search": g1["search"], "retrain": g1["retrain"]["metrics"]}}


def test_summary_has_teacher_and_searched_columns_and_no_invented_random_column():
    header, rows = nas_reports.accuracy_rows(fake_summary())
    assert header[2:] == ["teacher top-1 (%)", "searched net top-1 (%)", "scaled teacher top-1 (%)",
                          "searched net params"]
    assert rows == [["0", "tiny-teacher", "60", "-", "65.5", "900K"],
                    ["1", "gen0/scaled/arch.json", "65.5", "58.25", "-", "400K"]]   # gen 1's teacher: gen 0's scaled net
    assert not any("random" in h for h in header)
    html = reports.summary_report(fake_summary(), block_histories={0: HISTORIES, 1: {}})
    assert "Teacher vs searched accuracy" in html and "<th>teacher top-1 (%)</th>" in html
    assert "Accuracy vs params of every retrained net" in html and "random" not in html
    assert "Block supernet training loss: generation 0" in html and "generation 1" not in html.split("Block")[-1]
    assert png_size(html) == 2                                   # the scatter and gen 0's curves


def test_summary_takes_a_random_architecture_column_when_the_data_has_one():
    header, rows = nas_reports.accuracy_rows(fake_summary(random=True))
    assert header[-2:] == ["random architecture top-1 (%)", "random architecture params"]
    assert [r[-2:] for r in rows] == [["-", "-"], ["41", "390K"]]


def test_accuracy_vs_params_has_every_retrained_net():
    pts = nas_reports.retrained_points(fake_summary(random=True))
    assert [(p["label"], p["params"], p["top1"]) for p in pts] == [
        ("gen0 teacher", 2_000_000, 60.0), ("gen0 scaled teacher", 900_000, 65.5),
        ("gen1 searched", 400_000, 58.25), ("gen1 random", 390_000, 41.0)]
    assert Image.open(io.BytesIO(nas_reports.draw_accuracy_vs_params(pts))).size[0] > 100


# ----- segmentation legend ----------------------------------------------------------------------
def test_legend_lists_the_class_names_shown_in_their_mask_colours():
    from dna.transfer import viz

    names = ["background", "circle", "square", "triangle"]
    entries = viz.legend_entries(names, [0, 2, 3, 255])
    assert [label for label, _ in entries] == ["background (untinted)", "square", "triangle", "ignored"]
    assert entries[1][1] == tuple(int(v) for v in viz.palette()[2]) and entries[3][1] == viz.IGNORE_COLOUR
    assert [label for label, _ in viz.legend_entries(names)][1:] == names[1:]
    legend = np.asarray(viz.draw_legend(entries, 300))
    for _, colour in entries[1:3]:
        assert (legend == np.array(colour, dtype=np.uint8)).all(-1).sum() >= 50     # its swatch


def test_segmentation_samples_carry_a_legend_of_their_classes():
    from dna.transfer import viz
    from dna.transfer.seg import seg_samples

    class Constant(torch.nn.Module):        # predicts class 3 everywhere
        def forward(self, x):
            out = torch.zeros(x.shape[0], 4, *x.shape[-2:])
            out[:, 3] = 1
            return out

    y = torch.zeros(16, 16, dtype=torch.long)
    y[4:10, 4:10] = 1
    data = [(torch.zeros(3, 16, 16), y)]
    names = ["background", "circle", "square", "triangle"]
    with_names = Image.open(io.BytesIO(seg_samples(Constant(), data, 1, torch.device("cpu"), names)))
    without = Image.open(io.BytesIO(seg_samples(Constant(), data, 1, torch.device("cpu"))))
    assert with_names.height > without.height and with_names.width == without.width
    strip = np.asarray(with_names.convert("RGB"))[without.height:]
    for k in (1, 3):                       # ground truth's and prediction's classes, not class 2
        assert (strip == viz.palette()[k]).all(-1).any()
    assert not (strip == viz.palette()[2]).all(-1).any()


# ----- the Markdown tables ----------------------------------------------------------------------
def md_columns(md: str) -> dict[str, list[str]]:
    """The columns of the first Markdown table of ``md``."""
    text = md[md.index("\n|") + 1:]
    lines = [x for x in text.split("\n\n")[0].splitlines() if x.startswith("|")]
    header = [c.strip() for c in lines[0].strip("|").split("|")]
    body = [[c.strip() for c in x.strip("|").split("|")] for x in lines[2:]]
    return {h: [r[j] for r in body] for j, h in enumerate(header)}


RATE_RESULTS = {0: {"scores": "s", "blocks": [0], "rows": 7, "ray": {"started_at": 10.0, "finished_at": 12.5,
                                                                    "host": "h1"}},
                1: {"scores": "s", "blocks": [1], "cached": True}}


def test_rating_md_has_no_empty_column_and_one_meaning_per_column():
    md = reports.blocks_report("rate", RATE_RESULTS, 0, counts={0: 7, 1: 2}, best={0: 0.5, 1: 2.0},
                               supernet_epochs={0: 3, 1: 3})
    cols = md_columns(md)
    assert list(cols) == ["block", "candidates rated", "best loss (Eq. 7)", "supernet epochs", "cached",
                          "seconds", "host"]
    assert cols["candidates rated"] == ["7", "2"] and cols["best loss (Eq. 7)"] == ["0.5", "2"]
    assert cols["supernet epochs"] == ["3", "3"] and cols["seconds"] == ["2.5", "-"] and cols["cached"] == ["no", "yes"]
    assert not any("/" in h for h in cols)
    for h, values in cols.items():
        assert any(v not in ("", "-") for v in values), h
    # nothing known about the supernets' epochs and every block cached: those columns are left out
    cols = md_columns(reports.blocks_report("rate", {1: RATE_RESULTS[1]}, 0, counts={1: 2}, best={1: 2.0}))
    assert list(cols) == ["block", "candidates rated", "best loss (Eq. 7)", "cached"]


def test_supernets_md_columns():
    results = {0: {"epochs": 2, "loss": 0.4, "history": HISTORIES[0], "ray": {"started_at": 1.0, "finished_at": 4.0,
                                                                               "host": "h"}},
               2: {"epochs": 1, "loss": 5.0, "cached": True}}
    md = reports.blocks_report("train", results, 1, extra=nas_reports.curves_markdown(
        {k: r["history"] for k, r in results.items() if r.get("history")}))
    cols = md_columns(md)
    assert list(cols) == ["block", "epochs", "final train loss (MSE)", "cached", "seconds", "host"]
    assert cols["epochs"] == ["2", "1"] and cols["final train loss (MSE)"] == ["0.4", "5"]
    assert "## Training loss (MSE) per epoch" in md


# ----- the components publish them -------------------------------------------------------------
def _stage_inputs(tmp_path, monkeypatch, results: dict):
    """A run config, a teacher artifact and ``fan_out_blocks`` answering ``results`` (no Ray)."""
    import json

    from components import _runtime as rt
    from dna.generation import RunConfig
    from dna.teacher import TeacherConfig

    monkeypatch.setattr("components.fanout.fan_out_blocks", lambda *a, **kw: results)
    root = str(tmp_path / "run")
    cfg = json.dumps(RunConfig(root=root, transfer=[]).to_dict())
    teacher = FakeArtifact(str(tmp_path / "kfp" / "teacher"))
    rt.write_teacher(teacher, TeacherConfig(model="tiny"), 0)
    return root, cfg, teacher


def test_train_supernets_publishes_curves_and_stores_no_empty_column(tmp_path, monkeypatch):
    from components.supernet import train_supernets

    results = {0: {"epochs": 2, "loss": 0.4, "history": HISTORIES[0]}, 2: {"epochs": 1, "loss": 5.0,
                                                                           "history": HISTORIES[2], "cached": True}}
    root, cfg, teacher = _stage_inputs(tmp_path, monkeypatch, results)
    out = {n: FakeArtifact(str(tmp_path / "kfp" / n)) for n in ("supernets", "metrics", "report", "curves")}
    train_supernets.python_func(run_config=cfg, generation=0, teacher=teacher, gpus_per_block=0,
                                max_concurrent_blocks=0, ray_address="", **out)
    md = storage.read_text(f"{root}/gen0/reports/supernets.md")
    html = storage.read_text(f"{root}/gen0/reports/supernets.html")
    assert md == open(out["report"].path).read() and "| 1 | 0.9 | 5 |" in md
    assert png_size(html) == 1 and out["curves"].metadata["uri"].endswith("supernets.html")


def test_rate_blocks_publishes_rating_md_and_the_heatmaps(tmp_path, monkeypatch):
    from components.rate import rate_blocks
    from dna.rate.scores import write_scores
    from dna.train.block import history_uri

    root, cfg, teacher = _stage_inputs(tmp_path, monkeypatch, RATE_RESULTS)
    write_scores(small_scores(), f"{root}/gen0/scores", partitioned=True)
    for k in (0, 1):
        storage.write_json({"block": k, "epochs": 3, "history": [{"epoch": e, "loss": 1.0} for e in (1, 2, 3)]},
                           history_uri(f"{root}/gen0/supernet/block{k}"))
    supernets = FakeArtifact(str(tmp_path / "kfp" / "sn"))
    supernets.metadata["uri"] = f"{root}/gen0/supernet"
    out = {n: FakeArtifact(str(tmp_path / "kfp" / n)) for n in ("scores", "metrics", "report", "heatmaps")}
    rate_blocks.python_func(run_config=cfg, generation=0, teacher=teacher, supernets=supernets, gpus_per_block=0,
                            max_concurrent_blocks=0, ray_address="", **out)
    cols = md_columns(storage.read_text(f"{root}/gen0/reports/rating.md"))
    assert cols["candidates rated"] == ["7", "2"] and cols["best loss (Eq. 7)"] == ["0.5", "2"]
    assert cols["supernet epochs"] == ["3", "3"]
    html = storage.read_text(f"{root}/gen0/reports/rating.html")
    assert png_size(html) == 2 and html == open(out["heatmaps"].path).read()
