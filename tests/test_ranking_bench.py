"""The ranking benchmark's statistics (gate, stratified sampler, bootstrap CI), its teacher check
and costs, and a small-N end-to-end run (no figures asserted for the end-to-end run)."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from benchmarks import ranking
from benchmarks import ranking_stats as rs
from benchmarks.ranking import (
    BENCH_SPACE,
    ArchCosts,
    extremes,
    nested_pairs,
    sample_archs,
    teacher_arch_def,
    teacher_outside_space,
)
from dna.errors import DnaError
from dna.space.mbconv import BlockChoice, MBConvSpace, _blocks


def _truth(noise: float, seeds: int = 3, n: int = 20, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    base = np.linspace(60, 90, n)
    return base + rng.normal(0, noise, (seeds, n))


def test_gate_passes_a_reproducible_ground_truth():
    g = rs.gate(_truth(1.0), [("min<max", 19, 0)])
    assert g.ok, g.reasons
    assert g.seed_tau > 0.8 and g.reliability > 0.95 and g.pairs[0]["held"] == 3


def test_gate_fails_noise_and_reversed_pairs():
    g = rs.gate(_truth(40.0), [("min<max", 19, 0)])
    assert not g.ok and g.seed_tau < 0.5
    assert any("tau" in r for r in g.reasons) and any("reliability" in r for r in g.reasons)
    # reproducible, but a nested pair the wrong way round in every seed
    g2 = rs.gate(_truth(1.0), [("min<max", 0, 19)])
    assert not g2.ok and g2.pairs[0]["held"] == 0 and "min<max" in g2.reasons[0]


def test_spearman_brown():
    assert rs.spearman_brown(0.5, 3) == pytest.approx(0.75)
    assert rs.spearman_brown(0.6, 1) == 0.6


def test_stratified_pick_spans_the_range():
    costs = [float(x) for x in np.random.default_rng(1).lognormal(11, 0.4, 3000)]
    idx = rs.stratified_pick(costs, 12, seed=0)
    assert len(set(idx)) == 12
    assert costs.index(min(costs)) in idx and costs.index(max(costs)) in idx
    picked = sorted(costs[i] for i in idx)
    width = (max(costs) - min(costs)) / 10
    assert max(b - a for a, b in zip(picked, picked[1:], strict=False)) < 2.5 * width   # no big hole
    assert idx == rs.stratified_pick(costs, 12, seed=0)
    with pytest.raises(ValueError, match="n=1"):
        rs.stratified_pick(costs, 1, seed=0)


def test_bench_sample_includes_cheapest_and_dearest():
    costs = ArchCosts(BENCH_SPACE)
    params = [costs(a)["params"] for a in extremes(BENCH_SPACE, costs)]
    archs = sample_archs(BENCH_SPACE, 8, seed=0, costs=costs, pool_size=300)
    got = [costs(a)["params"] for a in archs]
    assert min(got) == min(params) and max(got) == max(params)
    assert len({ranking.arch_key(a) for a in archs}) == 8
    names = [p[0] for p in nested_pairs(BENCH_SPACE, costs)]
    assert names == ["min<max", "k3e3<k3e6", "shallow<deep"]
    for _, big, small in nested_pairs(BENCH_SPACE, costs):
        assert costs(big)["params"] > costs(small)["params"]


def test_arch_costs_match_the_built_model():
    from dna.costs import count_params
    from dna.model.arch import Architecture
    from dna.model.efficientnet import build_model

    arch = [BlockChoice(0, 1, ("k5e3", "k3e6", "k3e3")), BlockChoice(1, 0, ("k3e6", "k5e6")),
            BlockChoice(2, 1, ("k3e3", "k5e3", "k5e6"))]
    model = build_model(Architecture.from_choices(BENCH_SPACE, arch))
    assert ArchCosts(BENCH_SPACE)(arch)["params"] == count_params(model)


def test_teacher_outside_space():
    teacher_outside_space(BENCH_SPACE, teacher_arch_def(BENCH_SPACE))
    cand = BENCH_SPACE.arch_def([BlockChoice(k, 1, ("k3e6",) * b.cells[1].layers)
                                 for k, b in enumerate(BENCH_SPACE.blocks)])
    with pytest.raises(DnaError, match="is a candidate of space"):
        teacher_outside_space(BENCH_SPACE, cand)
    shallow = [list(s) for s in teacher_arch_def(BENCH_SPACE)]
    shallow[1] = [shallow[1][0].replace("_r6_", "_r4_")]
    with pytest.raises(DnaError, match="needs >= 6"):
        teacher_outside_space(BENCH_SPACE, shallow)
    narrow = [list(s) for s in teacher_arch_def(BENCH_SPACE)]
    narrow[3] = [narrow[3][0].replace("_c96", "_c80")]
    with pytest.raises(DnaError, match="needs >= 96"):
        teacher_outside_space(BENCH_SPACE, narrow)
    with pytest.raises(DnaError, match="stride"):
        teacher_outside_space(BENCH_SPACE, [s if i != 2 else [s[0].replace("_s2_", "_s1_")]
                                            for i, s in enumerate(teacher_arch_def(BENCH_SPACE))])


def test_bootstrap_ci_known_cases():
    truth = _truth(0.5, seeds=3, n=25)
    rng = np.random.default_rng(3)
    good = truth.mean(0) + rng.normal(0, 0.5, (3, 25))
    same = rs.bootstrap_tau_diff(good, good, truth, n_boot=300, seed=0)
    assert same["lo"] <= 0 <= same["hi"] and same["hi"] - same["lo"] < 0.2
    rand = rng.random((3, 25))
    d = rs.bootstrap_tau_diff(good, rand, truth, n_boot=300, seed=0)
    assert d["lo"] > 0.3 and d["diff"] > 0.5
    assert rs.bootstrap_tau_diff(good, rand, truth, n_boot=300, seed=0) == d          # seeded
    text = rs.plain_verdict({"random": d, "DNA-copy": same, "oracle": {**d, "lo": -0.5, "hi": -0.2}}, 0.7)
    assert "better than random" in text and "worse** than oracle" in text and "DNA and DNA-copy" in text


SMOKE = MBConvSpace(name="bench-smoke", ops=("k3e3", "k3e6"),
                    blocks=_blocks([(1, [(1, 8), (2, 8)]), (2, [(1, 16), (2, 16)])]),
                    stem_channels=8, first_channels=8, head_channels=32, resolution=16, num_classes=10)


def _smoke_args(tmp_path, *extra):
    return ["--space", json.dumps(SMOKE.to_json()), "--archs", "3", "--gt-seeds", "0", "1", "--seeds", "0",
            "--epochs", "1", "--teacher-epochs", "1", "--teacher-train-size", "0", "--supernet-steps", "1", "--train-size", "32", "--val-size",
            "16", "--rating-size", "16", "--batch-size", "16", "--max-steps", "1", "--random-archs", "2",
            "--boot", "20", "--jobs", "0", "--out", str(tmp_path / "out"), "--cache", str(tmp_path / "cache"),
            "--no-plot", "--no-record", *extra]


def test_block_norm_divides_each_block_by_its_mean(monkeypatch):
    """--block-norm mean: block 1's losses (ten times block 0's) stop deciding the ranking alone."""
    import dna.rate.scores

    space = MBConvSpace(name="norm2", ops=("k3e3", "k3e6"), blocks=_blocks([(1, [(1, 8)]), (2, [(1, 16)])]),
                        stem_channels=8, first_channels=8, head_channels=32, resolution=16, num_classes=10)
    rows = [(0, "k3e3", 8, 1.0), (0, "k3e6", 8, 3.0), (1, "k3e3", 8, 21.0), (1, "k3e6", 8, 19.0)]

    class Table:
        def to_pydict(self):
            return {"block": [r[0] for r in rows], "cell": [0] * 4, "ops": [r[1] for r in rows],
                    "in_channels": [r[2] for r in rows], "loss": [r[3] for r in rows]}

    monkeypatch.setattr(dna.rate.scores, "read_scores", lambda uri: (Table(), None))
    a = [BlockChoice(0, 0, ("k3e3",)).to_json(), BlockChoice(1, 0, ("k3e3",)).to_json()]    # 1 + 21
    b = [BlockChoice(0, 0, ("k3e6",)).to_json(), BlockChoice(1, 0, ("k3e6",)).to_json()]    # 3 + 19
    assert ranking.dna_scores(space, "scores", [a, b]) == [22.0, 22.0]
    norm = ranking.dna_scores(space, "scores", [a, b], "mean")                 # means 2 and 20
    assert norm == pytest.approx([1 / 2 + 21 / 20, 3 / 2 + 19 / 20])
    assert norm[0] < norm[1]
    with pytest.raises(DnaError, match="block norm 'z'"):
        ranking.dna_scores(space, "scores", [a], "z")


def test_rating_size_keeps_the_builtin_ground_truth_cache(tmp_path):
    """The built-in rating split is drawn apart from train: its size keys no training cache there
    (a --rating-size lever reuses the ground truth and the teacher); an ImageFolder's is held out
    of train, so there it does."""
    def dirs(*extra):
        args = ranking.build_parser().parse_args(["--cache", str(tmp_path), "--out", str(tmp_path / "o"), *extra])
        s = ranking._settings(args, BENCH_SPACE)
        return s[5].name, s[6].name

    assert dirs("--rating-size", "500") == dirs("--rating-size", "2000")
    assert dirs("--rating-size", "500")[0] != dirs("--rating-size", "500", "--val-size", "1000")[0]
    folder = {"uri": "/data/imagenet", "rating_size": 500}
    assert ranking.training_data(folder) == folder
    assert "rating_size" not in ranking.training_data({"uri": "builtin:shapes", "rating_size": 500})


def test_ranking_smoke_end_to_end(tmp_path, monkeypatch):
    """The whole path once (gate and teacher check forced open: one training step cannot pass them
    honestly), then a rerun served from the caches."""
    real_gate = rs.gate
    monkeypatch.setattr(rs, "gate", lambda *a, **k: rs.Gate(**{**real_gate(*a, **k).to_json(), "ok": True}))
    monkeypatch.setattr(ranking, "teacher_beats", lambda t, b: True)
    r = ranking.main(_smoke_args(tmp_path))
    assert r["status"] == "verdict"
    assert set(r["verdict"]["methods"]) == set(ranking.METHODS)
    assert set(r["verdict"]["dna_minus"]) == {"SPOS", "random", "params", "FLOPs"}
    assert len(set(r["goodness"]["random"][0])) == len(r["archs"])       # one draw per architecture
    assert len(r["truth"]) == len(r["archs"]) >= 3 and r["search_vs_random"][0]["who"] == "DNA search"
    assert len(list((tmp_path / "cache").glob("gt-*/*.parquet"))) >= 2 * len(r["archs"])
    r2 = ranking.main(_smoke_args(tmp_path))
    assert r2["ground_truth_cached"] >= 2 * len(r["archs"]) and r2["truth"] == r["truth"]
    r3 = ranking.main(_smoke_args(tmp_path, "--block-norm", "mean"))      # the same supernets, rescored
    assert r3["status"] == "verdict" and r3["info"]["DNA"][0]["scores"] == r["info"]["DNA"][0]["scores"]
    # the rating lever: the first run's supernets re-rated on a larger rating split, nothing retrained
    r4 = ranking.main(_smoke_args(tmp_path, "--rating-size", "32", "--out", str(tmp_path / "rerate"),
                                  "--supernets-from", str(tmp_path / "out")))
    dna4 = r4["info"]["DNA"][0]
    assert r4["status"] == "verdict" and r4["ground_truth_cached"] == r2["ground_truth_cached"]
    assert dna4["supernets_from"] == str(tmp_path / "out" / "dna-seed0") and dna4["train_seconds"] < 1
    assert dna4["block_loss"] == r["info"]["DNA"][0]["block_loss"]
    assert dna4["scores_uri"].startswith(str(tmp_path / "rerate"))
    with pytest.raises(DnaError, match="--supernets-from .*no trained supernet of seed 0, block 0"):
        ranking.main(_smoke_args(tmp_path, "--supernets-from", str(tmp_path / "nothing")))
    # a fresh cache reads the stored ground truth of the same settings instead of training it
    shutil.copytree(next((tmp_path / "cache").glob("gt-*")), tmp_path / "stored" / r["cache"].rsplit("/", 1)[-1])
    r5 = ranking.main(_smoke_args(tmp_path, "--cache", str(tmp_path / "fresh"), "--stored", str(tmp_path / "stored")))
    assert r5["ground_truth_cached"] == r2["ground_truth_cached"] and r5["truth"] == r["truth"]
    r6 = ranking.main(_smoke_args(tmp_path, "--cache", str(tmp_path / "fresh2"), "--stored", ""))
    assert r6["ground_truth_cached"] == 0


def test_ranking_refuses_without_a_valid_gate_or_a_better_teacher(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(rs, "gate", lambda *a, **k: rs.Gate(0.1, 0.1, 0.2, 2, [], False, ["seed-to-seed tau 0.1"]))
    r = ranking.main(_smoke_args(tmp_path))
    assert r["status"] == "ground truth invalid" and r["verdict"] is None
    out = capsys.readouterr().out
    assert "ground truth invalid" in out and "tau(DNA)" not in out
    monkeypatch.setattr(rs, "gate", lambda *a, **k: rs.Gate(0.9, 0.9, 0.95, 2, [], True, []))
    monkeypatch.setattr(ranking, "teacher_beats", lambda t, b: False)
    r = ranking.main(_smoke_args(tmp_path))
    assert r["status"] == "teacher not better" and r["verdict"] is None


def test_recorded_paths_are_relative_to_the_checkout(tmp_path, monkeypatch):
    """RESULTS.md names the cache and stored rows as a clone sees them, not this machine's folders."""
    monkeypatch.chdir(tmp_path)
    assert ranking._rel(str(tmp_path / "benchmarks" / "cache" / "gt-x")) == "benchmarks/cache/gt-x"
    assert ranking._rel("benchmarks/ground_truth") == "benchmarks/ground_truth"
    assert ranking._rel("/elsewhere/cache") == "/elsewhere/cache"
