"""DNA++: Eq. 10/11, joint teacher-student training, rating, search and build on the ViT space."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from dna import storage
from dna.data import DataConfig, make_loader
from dna.errors import DnaError
from dna.model.vit import (
    build_from_arch,
    build_vit,
    predicted_costs,
    vit_arch_from_result,
    vit_costs,
    vit_fixed_costs,
)
from dna.rate.rating import relative_l1
from dna.rate.scores import read_scores
from dna.space.vit import VIT_TINY, PathChoice
from dna.ssl import (
    PPLossConfig,
    PPTrainConfig,
    ViTRateConfig,
    build_pp_model,
    dnapp_loss,
    invariance,
    load_pp,
    offdiag_cov,
    rate_vit,
    sdr_loss,
    ssl_loss,
    train_pp,
    two_views,
    variance_hinge,
)
from dna.ssl.rate import rate_vit_block, rating_batches
from dna.ssl.train import make_optimizer
from tests.helpers import tiny_teacher

Z = torch.tensor([[1.0, 0.0], [0.0, 1.0], [-1.0, -1.0]])
ZHAT = torch.tensor([[1.0, 1.0], [0.0, 0.0], [0.0, -1.0]])


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    # Tiny tensors: one intra-op thread is faster, and far faster on a busy machine (no spin-waits).
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def _data(**kw) -> DataConfig:
    base = dict(train_size=64, val_size=32, rating_size=16, batch_size=16, augment=False)
    base.update(kw)
    return DataConfig(**base)


# ----- Eq. 10 and Eq. 11 by hand ---------------------------------------------------------------


def test_eq10_matches_hand_computed_values():
    # ||Z^j - Zhat^j||^2 = 1, 1, 1 -> invariance = 3 / M = 1
    assert invariance(Z, ZHAT).item() == pytest.approx(1.0)
    # Cov(Z) = [[1, .5], [.5, 1]], Cov(Zhat) = [[1/3, .5], [.5, 1]]: off-diagonal sums of squares 0.5
    assert offdiag_cov(Z).item() == pytest.approx(0.5)
    assert offdiag_cov(ZHAT).item() == pytest.approx(0.5)
    # lambda_1/(K M) * 3 + lambda_2/(K C^2) * (0.5 + 0.5) with lambda 2 and 3, K = 1, M = 3, C = 2
    assert ssl_loss([Z], [ZHAT], 2.0, 3.0).item() == pytest.approx(2.0 + 0.75)
    # the 1/K: two identical blocks give the same value
    assert ssl_loss([Z, Z], [ZHAT, ZHAT], 2.0, 3.0).item() == pytest.approx(2.75)


def test_eq11_matches_hand_computed_values_and_is_zero_above_gamma():
    # Zhat channel stds: sqrt(1/3) and 1 -> hinge (1 - 1/sqrt 3) + 0, times lambda_3/(C K) = 4/2
    expect = 2 * (1 - 1 / math.sqrt(3))
    assert sdr_loss([ZHAT], 4.0, gamma=1.0, eps=0.0).item() == pytest.approx(expect, rel=1e-6)
    assert variance_hinge(ZHAT, 1.0, 0.0).item() == pytest.approx((1 - 1 / math.sqrt(3)) / 2, rel=1e-6)
    eps = 1e-4
    assert sdr_loss([ZHAT], 4.0, 1.0, eps).item() == pytest.approx(2 * (1 - math.sqrt(1 / 3 + eps)), rel=1e-6)
    # every channel of Z has std 1 (> gamma 0.9): no hinge at all, also scaled up
    assert sdr_loss([Z], 4.0, gamma=0.9, eps=eps).item() == 0.0
    assert sdr_loss([3 * Z, 2 * ZHAT], 4.0, gamma=1.0, eps=eps).item() == 0.0


def test_default_weights_are_vicreg_and_views_are_cross_paired():
    g = torch.Generator().manual_seed(0)
    m, c = 10, 8
    z1, z2, zh1, zh2 = (torch.randn(m, c, generator=g) * s for s in (0.5, 0.7, 1.5, 0.3))
    got = dnapp_loss([z1], [z2], [zh1], [zh2])

    def vicreg(x, y):  # VICReg (Bardes et al.) with sim 25, std 25, cov 1
        std_x, std_y = (torch.sqrt(t.var(dim=0) + 1e-4) for t in (x, y))
        std = F.relu(1 - std_x).mean() / 2 + F.relu(1 - std_y).mean() / 2
        return 25 * F.mse_loss(x, y) + 25 * std + (offdiag_cov(x) + offdiag_cov(y)) / c

    assert got["loss"].item() == pytest.approx(((vicreg(z1, zh2) + vicreg(z2, zh1)) / 2).item(), rel=1e-5)
    parts = got["invariance"] + got["covariance"] + got["variance"]
    assert parts.item() == pytest.approx(got["loss"].item(), rel=1e-6)
    # explicit lambdas: each cross pairing is Eq. 10 + Eq. 11 on both of its embeddings
    cfg = PPLossConfig(lambda_1=2.0, lambda_2=3.0, lambda_3=4.0, gamma=1.0, eps=1e-4)
    pair = [ssl_loss([a], [b], 2.0, 3.0) + sdr_loss([a], 4.0) + sdr_loss([b], 4.0) for a, b in ((z1, zh2), (z2, zh1))]
    assert dnapp_loss([z1], [z2], [zh1], [zh2], cfg)["loss"].item() == pytest.approx(
        (sum(pair) / 2).item(), rel=1e-6)
    with pytest.raises(DnaError):
        offdiag_cov(Z[:1])


def test_two_views_differ_and_are_reproducible():
    x = next(iter(make_loader(_data(), "train")))[0][:4]
    a1, b1 = two_views(x, torch.Generator().manual_seed(3))
    a2, _ = two_views(x, torch.Generator().manual_seed(3))
    assert a1.shape == x.shape and torch.equal(a1, a2)
    assert not torch.allclose(a1, b1) and torch.isfinite(a1).all()


# ----- joint training --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def batches():
    return [b[0] for b in make_loader(_data(), "train", shuffle=False)]


def _model(cfg: PPTrainConfig):
    torch.manual_seed(0)
    return build_pp_model(cfg.vit_space(), cfg.teacher_config(), cfg.mode, cfg.data.resolution,
                          cfg.proj_hidden, cfg.proj_dim, cfg.loss)


def test_joint_step_lowers_the_loss_and_updates_teacher_and_student(batches):
    cfg = PPTrainConfig(out="unused", data=_data(), lr=0.2, proj_dim=32, proj_hidden=32)
    model = _model(cfg)
    assert model.teacher.trainable and model.teacher.training
    opt = make_optimizer(cfg, model)
    v1, v2 = two_views(batches[0], torch.Generator().manual_seed(0))
    x = torch.cat([v1, v2])
    choices = model.sample(torch.Generator().manual_seed(1))
    watched = {
        "teacher stem": model.teacher.model.conv_stem.weight,
        "teacher last stage": next(model.teacher.model.blocks[-1].parameters()),
        "student embed": model.students[0].embed.weight,
        "student layer": model.students[3].layers[0].attn.qkv.weight,
        "teacher projector": model.teacher_proj[1][0].weight,
        "student projector": model.student_proj[2][0].weight,
    }
    before = {k: v.detach().clone() for k, v in watched.items()}
    head_before = model.teacher.model.conv_head.weight.detach().clone()
    loss0 = model(x, choices)["loss"]
    opt.zero_grad()
    loss0.backward()
    opt.step()
    loss1 = model(x, choices)["loss"]
    assert loss1.item() < loss0.item()
    for name, p in watched.items():
        assert not torch.equal(p, before[name]), f"{name} did not move"
    assert torch.equal(model.teacher.model.conv_head.weight, head_before)  # unused teacher head stays


def _embedding_std(model, x: torch.Tensor) -> float:
    """The smallest over blocks and over Z/Zhat of the mean per-channel std over the batch
    (train-mode BatchNorm)."""
    gen = torch.Generator().manual_seed(5)
    with torch.no_grad():
        feats = model.teacher.features(x)
        stds = []
        for k, student in enumerate(model.students):
            stds.append(model.teacher_embed(k, feats[k + 1]).std(dim=0).mean().item())
            stds.append(model.student_embed(k, student(feats[k], student.sample(gen))).std(dim=0).mean().item())
    return min(stds)


def test_no_collapse_variance_and_covariance_terms_keep_samples_apart(batches):
    def run(loss: PPLossConfig) -> float:
        cfg = PPTrainConfig(out="unused", data=_data(), lr=0.2, proj_dim=32, proj_hidden=32, loss=loss)
        model = _model(cfg)
        opt = make_optimizer(cfg, model)
        paths, views = torch.Generator().manual_seed(0), torch.Generator().manual_seed(0)
        for i in range(20):
            v1, v2 = two_views(batches[i % len(batches)], views)
            out = model(torch.cat([v1, v2]), model.sample(paths))
            opt.zero_grad()
            out["loss"].backward()
            opt.step()
        return _embedding_std(model, batches[0])

    full = run(PPLossConfig())
    invariance_only = run(PPLossConfig(lambda_2=0.0, lambda_3=0.0))
    # With Eq. 10's covariance and Eq. 11's variance terms, different samples keep distinct embeddings
    # in every block (std about 0.2 after 20 steps); with the invariance term alone they collapse
    # towards one vector (std about 0.03), the failure Eq. 11 exists to prevent.
    assert full > 0.1, full
    assert invariance_only < full / 3, (full, invariance_only)


# ----- the whole flow: train (resume) -> rate -> search -> build ---------------------------------


@pytest.fixture(scope="module")
def pp_run(tmp_path_factory):
    root = str(tmp_path_factory.mktemp("pp"))
    cfg = PPTrainConfig(out=storage.join(root, "supernet"), data=_data(), epochs=1, lr=0.2, proj_dim=32,
                        proj_hidden=32, max_steps_per_epoch=2)
    metrics = train_pp(cfg)
    return root, cfg, metrics


def test_train_pp_checkpoints_and_resumes(pp_run):
    root, cfg, metrics = pp_run
    assert metrics["epochs"] == 1 and math.isfinite(metrics["loss"]) and metrics["mode"] == "dnapp"
    state = storage.load_torch(storage.join(cfg.out, "checkpoint.pt"))
    assert {"model", "optimizer", "scheduler", "generators", "config"} <= set(state)
    assert any(k.startswith("teacher.model.") for k in state["model"])
    assert any(k.startswith("student_proj.") for k in state["model"])
    assert storage.exists(storage.join(cfg.out, "teacher.pt"))
    from dna.teacher import TeacherConfig, load_teacher_model

    trained = load_teacher_model(TeacherConfig(model=storage.join(cfg.out, "teacher.json"),
                                               checkpoint=storage.join(cfg.out, "teacher.pt")))
    assert torch.equal(trained.conv_stem.weight, state["model"]["teacher.model.conv_stem.weight"])
    assert train_pp(cfg) == metrics  # finished: returned as is
    model, config = load_pp(cfg.out)
    assert config["mode"] == "dnapp" and not model.training
    with pytest.raises(DnaError, match="another space or mode"):
        train_pp(PPTrainConfig(out=cfg.out, data=_data(), space=dict(VIT_TINY.to_json(), name="other")))


def test_resumed_run_equals_an_uninterrupted_one(tmp_path):
    def cfg(out: str, epochs: int) -> PPTrainConfig:
        return PPTrainConfig(out=str(tmp_path / out), data=_data(), epochs=epochs, lr=0.2, proj_dim=16,
                             proj_hidden=16, max_steps_per_epoch=2)

    def interrupt(epoch: int, **_):
        if epoch == 1:
            raise KeyboardInterrupt  # killed during the second epoch, after the first was saved

    with pytest.raises(KeyboardInterrupt):
        train_pp(cfg("resumed", 2), progress=interrupt)
    assert storage.load_torch(str(tmp_path / "resumed" / "checkpoint.pt"))["epoch"] == 1
    ended: list[dict] = []
    resumed = train_pp(cfg("resumed", 2), on_epoch_end=ended.append)
    assert [(m["epoch"], m["epochs"], m["resumed_from"]) for m in ended] == [(2, 2, 1)]
    ended.clear()
    straight = train_pp(cfg("straight", 2), on_epoch_end=ended.append)
    assert [h["loss"] for h in resumed["history"]] == [h["loss"] for h in straight["history"]]
    # once per epoch, after its checkpoint is stored, with the epoch's metrics
    assert [m["loss"] for m in ended] == [h["loss"] for h in straight["history"]]
    assert all(m["checkpoint"] == str(tmp_path / "straight" / "checkpoint.pt") and m["images_per_s"] > 0
               and m["epochs"] == 2 for m in ended)
    a = storage.load_torch(str(tmp_path / "resumed" / "checkpoint.pt"))["model"]
    b = storage.load_torch(str(tmp_path / "straight" / "checkpoint.pt"))["model"]
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_rate_search_build_params_match(pp_run):
    root, cfg, _ = pp_run
    scores = storage.join(root, "scores")
    result = rate_vit(ViTRateConfig(supernet=cfg.out, out=scores))
    space = VIT_TINY
    paths = [space.block_paths(k) for k in range(4)]
    in_widths = [len(space.in_widths(k)) for k in range(4)]
    assert result["rows"] == sum(p * w for p, w in zip(paths, in_widths, strict=True))
    table, meta = read_scores(scores)
    assert meta.space == space.to_json()
    assert meta.fixed == vit_fixed_costs(space, 32)
    rows = table.to_pylist()
    assert {r["cell"] for r in rows} == {0}
    for r in rows:
        c = PathChoice.parse(r["ops"])
        assert r["out_channels"] == c.heads * space.head_dim and math.isfinite(r["loss"])
    # depth-sharing gives per-path losses: the same width/ratio at depth 1 and 2 differ
    by = {(r["block"], r["ops"], r["in_channels"]): r for r in rows}
    assert by[(0, "h2-r2-d1", 16)]["loss"] != by[(0, "h2-r2-d2", 16)]["loss"]

    # prefix sharing along depth gives exactly the per-path losses, with fewer layer evaluations
    model, config = load_pp(cfg.out)
    data = DataConfig.from_dict(config["data"])
    inputs, targets = rating_batches(model, data, torch.device("cpu"), 2)
    losses, evals = rate_vit_block(model, 2, inputs, targets)
    student = model.students[2]
    with torch.no_grad():
        for c, loss in losses.items():
            naive = relative_l1(model.student_embed(2, student(inputs[0], c)), targets[0]).item()
            assert loss == pytest.approx(naive, rel=1e-6)
            assert by[(2, c.ops, 16)]["loss"] == pytest.approx(loss, rel=1e-6)
    assert evals == 2 * 2 * 2 < sum(c.depth for c in losses)  # heads x ratios x max depth

    # any chain of rows: fixed + sum(rows) == the built model
    chain, in_w = [], space.embed_dim
    for k, ops in enumerate(["h3-r4-d2", "h2-r2-d1", "h2-r4-d2", "h3-r2-d1"]):
        chain.append(by[(k, ops, in_w)])
        in_w = chain[-1]["out_channels"]
    model = build_vit(space, [r["ops"] for r in chain], resolution=meta.resolution)
    predicted = {n: meta.fixed[n] + sum(r[n] for r in chain) for n in ("params", "flops")}
    assert vit_costs(model) == predicted

    try:
        from dna.search import search
    except ImportError:
        pytest.skip("dna.search is not available in this checkout: the search half of this test needs it")
    best = search(table, meta, max_params=predicted["params"])[0]
    built = build_vit(space, best.choices, resolution=meta.resolution)
    assert vit_costs(built) == best.costs
    assert best.params <= predicted["params"]
    assert predicted_costs(space, best.choices, meta.resolution) == best.costs
    arch = vit_arch_from_result(best, meta)
    assert vit_costs(build_from_arch(arch)) == best.costs == {n: arch[n] for n in ("params", "flops")}


def test_supervised_dna_mode_on_the_vit_space(tmp_path):
    teacher = tiny_teacher(str(tmp_path))
    cfg = PPTrainConfig(out=str(tmp_path / "dna"), mode="dna", teacher=teacher, data=_data(), epochs=1,
                        max_steps_per_epoch=1)
    with pytest.raises(DnaError, match="needs a checkpoint"):
        PPTrainConfig(out="x", mode="dna", data=_data()).validate()
    metrics = train_pp(cfg)
    assert metrics["mode"] == "dna" and math.isfinite(metrics["loss"])
    model, _ = load_pp(cfg.out)
    assert not model.teacher.trainable and not hasattr(model, "teacher_proj")
    saved = storage.load_torch(teacher.checkpoint)["model"]
    teacher_state = model.teacher.model.state_dict()
    assert all(torch.equal(saved[k], teacher_state[k]) for k in saved)  # the frozen teacher did not move
    out = rate_vit(ViTRateConfig(supernet=cfg.out, out=str(tmp_path / "scores"), block=3))
    assert out["blocks"] == [3] and out["rows"] == VIT_TINY.block_paths(3) * 2


def test_cli_train_pp(tmp_path, capsys):
    from dna.cli import main

    out = str(tmp_path / "cli")
    code = main(["train-pp", "--out", out, "--epochs", "1", "--max-steps", "1", "--train-size", "32",
                 "--batch-size", "16", "--rating-size", "16", "--proj-dim", "16", "--proj-hidden", "16",
                 "--scores", str(tmp_path / "scores"), "--json"])
    assert code == 0
    text = capsys.readouterr().out
    assert '"mode": "dnapp"' in text and '"rows"' in text
    assert main(["train-pp", "--out", out, "--mode", "dna"]) == 2  # no teacher weights for DNA


def test_cli_rate_search_build_on_vit_space(pp_run, tmp_path, capsys):
    """`dna rate|search|build` route a ViT space/architecture to the DNA++ code."""
    import json

    from dna.cli import main

    root, cfg, _ = pp_run
    scores = str(tmp_path / "scores")
    assert main(["rate", "--space", "vit-tiny", "--supernets", cfg.out, "--out", scores, "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["rows"] > 0
    arch = str(tmp_path / "arch.json")
    assert main(["search", scores, "--out", arch, "--json"]) == 0
    best = json.loads(capsys.readouterr().out)["architectures"][0]
    assert main(["build", arch, "--json"]) == 0
    built = json.loads(capsys.readouterr().out)
    assert built["kind"] == "vit" and built["params"] == best["params"]
