"""The data package: built-in shapes (cls/seg/det), ImageFolder, config and loaders."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from dna.data import (
    DataConfig,
    class_names,
    make_dataset,
    make_loader,
    num_classes,
)
from dna.data.imagefolder import rating_holdout
from dna.data.shapes import ShapesDataset
from dna.errors import DnaError
from tests.s3fixture import s3_bucket  # noqa: F401

torch.set_num_threads(2)


# ---------------------------------------------------------------- built-in shapes


def test_shapes_deterministic():
    a = ShapesDataset(20, "train", task="det", seed=3)
    b = ShapesDataset(20, "train", task="det", seed=3)
    for i in (0, 7, 19):
        xa, ta = a[i]
        xb, tb = b[i]
        assert torch.equal(xa, xb)
        assert torch.equal(ta["boxes"], tb["boxes"]) and torch.equal(ta["labels"], tb["labels"])
    # index order does not matter (lazy per-index rendering)
    assert torch.equal(a[5][0], ShapesDataset(20, "train", task="det", seed=3)[5][0])
    # another seed gives other images
    assert not torch.equal(a[0][0], ShapesDataset(20, "train", seed=4)[0][0])


def test_shapes_splits_disjoint():
    cfg = DataConfig(train_size=200, val_size=200, rating_size=200)
    seen = {}
    for split in ("train", "val", "rating"):
        ds = make_dataset(cfg, split)
        keys = {ds[i][0].numpy().tobytes() for i in range(len(ds))}
        assert len(keys) == len(ds)
        seen[split] = keys
    assert not seen["train"] & seen["val"]
    assert not seen["train"] & seen["rating"]
    assert not seen["val"] & seen["rating"]


@pytest.mark.parametrize("resolution", [32, 48])
def test_shapes_task_outputs(resolution):
    cfg = DataConfig(resolution=resolution, train_size=16, augment=False)
    x, y = make_dataset(cfg, "train", "cls")[0]
    assert x.shape == (3, resolution, resolution) and x.dtype == torch.float32
    assert isinstance(y, int) and 0 <= y < 10
    # normalised: roughly zero-centred, not in [0, 1]
    assert x.min() < 0

    x, m = make_dataset(cfg, "train", "seg")[0]
    assert m.shape == (resolution, resolution) and m.dtype == torch.int64
    assert 0 <= int(m.min()) and int(m.max()) <= 10 and (m == y + 1).any()

    x, t = make_dataset(cfg, "train", "det")[0]
    assert t["boxes"].dtype == torch.float32 and t["boxes"].ndim == 2 and t["boxes"].shape[1] == 4
    assert t["labels"].dtype == torch.int64 and len(t["labels"]) == len(t["boxes"]) >= 1
    assert int(t["labels"][0]) == y + 1  # primary object first, label = class + 1
    assert (t["labels"] >= 1).all()


def _tight_box(mask: torch.Tensor, label: int) -> torch.Tensor:
    ys, xs = torch.nonzero(mask == label, as_tuple=True)
    return torch.tensor([xs.min(), ys.min(), xs.max() + 1, ys.max() + 1], dtype=torch.float32)


@pytest.mark.parametrize("augment", [False, True])
def test_shapes_mask_and_boxes_consistent(augment):
    kw = dict(split="val", resolution=32, seed=0, augment=augment)
    seg = ShapesDataset(60, task="seg", **kw)
    det = ShapesDataset(60, task="det", **kw)
    cls = ShapesDataset(60, task="cls", **kw)
    for i in range(len(seg)):
        # same torch seed -> same flip decision in the three views of sample i
        torch.manual_seed(100 + i)
        x1, mask = seg[i]
        torch.manual_seed(100 + i)
        x2, target = det[i]
        torch.manual_seed(100 + i)
        x3, label = cls[i]
        assert torch.equal(x1, x2) and torch.equal(x1, x3)
        labels = target["labels"].tolist()
        assert len(set(labels)) == len(labels)
        assert labels[0] == label + 1
        assert set(torch.unique(mask).tolist()) - {0} == set(labels)
        for box, lab in zip(target["boxes"], labels, strict=True):
            assert (box[2:] > box[:2]).all()
            assert torch.allclose(box, _tight_box(mask, lab), atol=1.0)
    if augment:
        raw = torch.from_numpy(seg.render(0)[1])
        hits = 0
        for s in range(20):
            torch.manual_seed(s)
            hits += torch.equal(seg[0][1], raw.flip(-1))
        assert 0 < hits < 20  # the flip is random, and mask follows it


def test_shapes_primary_is_largest():
    ds = ShapesDataset(100, "train", task="seg")
    for i in range(len(ds)):
        _, mask, _, labels = ds.render(i)
        areas = {int(lab): int((mask == lab).sum()) for lab in labels}
        assert max(areas, key=areas.get) == int(labels[0])


def test_shapes_learnable():
    """A small CNN beats chance (10 %) by a wide margin after a few epochs on 2000 images."""
    torch.manual_seed(0)
    cfg = DataConfig(train_size=2000, val_size=500, augment=False)
    train, val = make_dataset(cfg, "train"), make_dataset(cfg, "val")
    x = torch.stack([train[i][0] for i in range(len(train))])
    y = torch.tensor([train[i][1] for i in range(len(train))])
    xv = torch.stack([val[i][0] for i in range(len(val))])
    yv = torch.tensor([val[i][1] for i in range(len(val))])

    def block(i, o):
        return nn.Sequential(nn.Conv2d(i, o, 3, padding=1, bias=False), nn.BatchNorm2d(o), nn.ReLU())

    net = nn.Sequential(
        block(3, 16), nn.MaxPool2d(2), block(16, 32), nn.MaxPool2d(2), block(32, 64),
        nn.MaxPool2d(2), block(64, 64), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(64, 10),
    )
    epochs, bs = 5, 64
    steps = epochs * (len(x) // bs)
    opt = torch.optim.AdamW(net.parameters(), 5e-3, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, 5e-3, total_steps=steps)
    g = torch.Generator().manual_seed(0)
    for _ in range(epochs):
        perm = torch.randperm(len(x), generator=g)
        for b in range(len(x) // bs):
            idx = perm[b * bs:(b + 1) * bs]
            xb = x[idx]
            flip = torch.rand(len(idx), generator=g) < 0.5
            xb = torch.where(flip[:, None, None, None], xb.flip(-1), xb)
            loss = nn.functional.cross_entropy(net(xb), y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
    net.eval()
    with torch.no_grad():
        acc = (net(xv).argmax(1) == yv).float().mean().item()
    assert acc >= 0.6, acc


def test_shapes_render_speed():
    import time

    ds = ShapesDataset(1000, "train", task="det")
    t = time.perf_counter()
    for i in range(len(ds)):
        ds.render(i)
    assert time.perf_counter() - t < 3.0


# ---------------------------------------------------------------- config and loaders


@pytest.mark.parametrize(
    "kwargs, field",
    [
        (dict(uri="builtin:nope"), "builtin:nope"),
        (dict(uri=""), "uri"),
        (dict(resolution=8), "resolution"),
        (dict(batch_size=0), "batch_size"),
        (dict(train_size=0), "train_size"),
        (dict(val_size=-1), "val_size"),
        (dict(rating_size=0), "rating_size"),
        (dict(num_classes=11), "num_classes"),
        (dict(num_workers=-1), "num_workers"),
        (dict(seed=-1), "seed"),
        (dict(auto_augment="bogus-m9"), "bogus-m9"),
    ],
)
def test_config_validation(kwargs, field):
    with pytest.raises(DnaError, match=field):
        DataConfig(**kwargs)


def test_bad_split_and_task():
    cfg = DataConfig()
    with pytest.raises(DnaError, match="split"):
        make_dataset(cfg, "test")
    with pytest.raises(DnaError, match="task"):
        make_dataset(cfg, "train", "pose")
    with pytest.raises(DnaError, match="unknown data config keys"):
        DataConfig.from_dict({"uri": "builtin:shapes", "bogus": 1})
    assert DataConfig.from_dict(cfg.to_dict()) == cfg


def test_loaders_and_num_classes():
    cfg = DataConfig(train_size=40, val_size=20, rating_size=10, batch_size=8, num_classes=5)
    assert num_classes(cfg) == 5 and class_names(cfg)[:2] == ["circle", "square"]
    x, y = next(iter(make_loader(cfg, "train")))
    assert x.shape == (8, 3, 32, 32) and y.dtype == torch.int64 and int(y.max()) < 5
    x, m = next(iter(make_loader(cfg, "val", "seg")))
    assert m.shape == (8, 32, 32) and int(m.max()) <= 5
    x, targets = next(iter(make_loader(cfg, "rating", "det")))
    assert x.shape == (8, 3, 32, 32) and isinstance(targets, list) and len(targets) == 8
    assert all(int(t["labels"].max()) <= 5 for t in targets)
    # seeded shuffling: same order twice
    a = [y for _, y in make_loader(cfg, "train")]
    b = [y for _, y in make_loader(cfg, "train")]
    assert all(torch.equal(i, j) for i, j in zip(a, b, strict=True))
    assert len(make_loader(cfg, "val", drop_last=True)) == 2


def test_shapes_auto_augment():
    cfg = DataConfig(train_size=8, auto_augment="rand-m9-mstd0.5")
    x, y = make_dataset(cfg, "train")[0]
    assert x.shape == (3, 32, 32) and x.dtype == torch.float32
    with pytest.raises(DnaError, match="auto_augment"):
        make_dataset(cfg, "train", "seg")


# ---------------------------------------------------------------- ImageFolder


CLASSES = ("cat", "ant", "bee")  # sorted: ant=0, bee=1, cat=2


def _write_tree(root, per_class=6, splits=("train", "val")):
    from PIL import Image

    rng = np.random.default_rng(0)
    for split in splits:
        for ci, c in enumerate(CLASSES):
            d = root / split / c
            d.mkdir(parents=True)
            for k in range(per_class):
                arr = np.full((40, 40, 3), 40 * ci, np.uint8) + rng.integers(0, 30, (40, 40, 3), dtype=np.uint8)
                ext = "png" if k % 2 else "jpg"
                Image.fromarray(arr).save(d / f"{c}_{k}.{ext}")
            (d / "notes.txt").write_text("not an image")
    return root


def test_imagefolder_class_mapping(tmp_path):
    root = _write_tree(tmp_path / "ds")
    cfg = DataConfig(uri=str(root), resolution=32, rating_size=3, batch_size=4)
    assert class_names(cfg) == ["ant", "bee", "cat"] and num_classes(cfg) == 3
    val = make_dataset(cfg, "val")
    assert len(val) == 18 and val.classes == ["ant", "bee", "cat"]
    for path, target in val.samples:
        assert f"/{val.classes[target]}/" in path
    x, y = val[0]
    assert x.shape == (3, 32, 32) and x.dtype == torch.float32 and isinstance(y, int)
    xb, yb = next(iter(make_loader(cfg, "train")))
    assert xb.shape == (4, 3, 32, 32) and yb.dtype == torch.int64
    with pytest.raises(DnaError, match="seg"):
        make_dataset(cfg, "train", "seg")


def test_imagefolder_rating_holdout(tmp_path):
    root = _write_tree(tmp_path / "ds")
    cfg = DataConfig(uri=str(root), rating_size=4)
    train, rating = make_dataset(cfg, "train"), make_dataset(cfg, "rating")
    assert len(train) == 14 and len(rating) == 4
    train_paths = {p for p, _ in train.samples}
    rating_paths = {p for p, _ in rating.samples}
    assert not train_paths & rating_paths
    assert len(train_paths | rating_paths) == 18
    counts = np.bincount([t for _, t in rating.samples], minlength=3)
    assert counts.max() - counts.min() <= 1  # spread evenly over the classes
    # deterministic
    assert rating.samples == make_dataset(DataConfig(uri=str(root), rating_size=4), "rating").samples
    # rating uses the eval transform (no randomness): same tensor twice
    assert torch.equal(rating[0][0], rating[0][0])
    with pytest.raises(DnaError, match="rating_size"):
        make_dataset(DataConfig(uri=str(root), rating_size=16), "train")


def test_rating_holdout_uneven_classes():
    targets = [0] * 2 + [1] * 10 + [2] * 10
    held = rating_holdout(targets, 3, 9, seed=0)
    counts = np.bincount([targets[i] for i in held], minlength=3)
    assert counts.tolist() == [1, 4, 4]
    assert held == rating_holdout(targets, 3, 9, seed=0)
    assert held != rating_holdout(targets, 3, 9, seed=1)


def test_imagefolder_errors(tmp_path):
    missing = tmp_path / "nowhere"
    with pytest.raises(DnaError, match="nowhere"):
        make_dataset(DataConfig(uri=str(missing)), "train")
    with pytest.raises(DnaError, match="nowhere"):
        num_classes(DataConfig(uri=str(missing)))
    (tmp_path / "empty" / "train").mkdir(parents=True)
    with pytest.raises(DnaError, match="no class folders"):
        make_dataset(DataConfig(uri=str(tmp_path / "empty")), "train")
    (tmp_path / "noval" / "train" / "a").mkdir(parents=True)
    with pytest.raises(DnaError, match="no image files"):
        make_dataset(DataConfig(uri=str(tmp_path / "noval"), rating_size=1), "train")
    root = _write_tree(tmp_path / "trainonly", splits=("train",))
    with pytest.raises(DnaError, match="val"):
        make_dataset(DataConfig(uri=str(root), rating_size=3), "val")


def test_imagefolder_s3(s3_bucket, tmp_path):  # noqa: F811
    from dna import storage

    local = _write_tree(tmp_path / "ds", per_class=3)
    fs, base = storage.filesystem(s3_bucket + "/imgs")
    for f in sorted(local.rglob("*")):
        if f.is_file():
            with fs.open_output_stream(f"{base}/{f.relative_to(local).as_posix()}") as out:
                out.write(f.read_bytes())
    uri = s3_bucket + "/imgs"
    cfg = DataConfig(uri=uri, rating_size=3, batch_size=3)
    assert class_names(cfg) == ["ant", "bee", "cat"]
    train, rating, val = (make_dataset(cfg, s) for s in ("train", "rating", "val"))
    assert (len(train), len(rating), len(val)) == (6, 3, 9)
    assert not {p for p, _ in train.samples} & {p for p, _ in rating.samples}
    x, y = next(iter(make_loader(cfg, "val")))
    assert x.shape == (3, 3, 32, 32) and y.tolist() == [0, 0, 0]
    with pytest.raises(DnaError, match="missing"):
        make_dataset(DataConfig(uri=s3_bucket + "/missing"), "train")


def test_shapes_keeps_rendered_samples_and_hands_out_copies(monkeypatch):
    """A second epoch reuses the rendered samples (bitwise the same items as rendering afresh);
    a caller writing into a target does not change the kept sample; past the byte budget the data
    set renders on demand again."""
    import dna.data.shapes as shapes

    ds = shapes.ShapesDataset(4, "train", task="seg", resolution=16, num_classes=5, seed=3)
    fresh = shapes.ShapesDataset(4, "train", task="seg", resolution=16, num_classes=5, seed=3)
    calls = []
    real = shapes.render
    monkeypatch.setattr(shapes, "render", lambda *a: calls.append(a) or real(*a))
    first = [ds[i] for i in range(4)]
    again = [ds[i] for i in range(4)]
    assert len(calls) == 4                                       # rendered once each
    for (x1, m1), (x2, m2), i in zip(first, again, range(4), strict=True):
        x0, m0 = fresh[i]
        assert torch.equal(x1, x0) and torch.equal(x2, x0) and torch.equal(m1, m0) and torch.equal(m2, m0)
    first[0][1].fill_(7)                                          # the caller's copy, not the kept one
    assert torch.equal(ds[0][1], fresh[0][1])

    det = shapes.ShapesDataset(2, "val", task="det", resolution=16, num_classes=5)
    det[0][1]["boxes"].zero_()
    assert torch.equal(det[0][1]["boxes"], shapes.ShapesDataset(2, "val", task="det", resolution=16,
                                                                num_classes=5)[0][1]["boxes"])

    monkeypatch.setattr(shapes, "RENDER_CACHE_BYTES", 1)
    small = shapes.ShapesDataset(2, "train", resolution=16)
    calls.clear()
    small[0], small[0]
    assert len(calls) == 2                                        # over budget: rendered each time
