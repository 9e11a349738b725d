"""Transfer: DeepLabv3+ segmentation, Faster R-CNN detection (C4 and FPN) and classification
fine-tuning on a searched MBConv net and on ViTs; data loaders, metrics, weight handling."""

from __future__ import annotations

import io
import json

import numpy as np
import pytest
import torch
from PIL import Image

from dna import storage
from dna.errors import DnaError
from dna.model.arch import Architecture
from dna.model.efficientnet import build_model
from dna.space import BlockChoice, get_space
from dna.transfer import (
    RANDOM_INIT,
    ClsConfig,
    DetConfig,
    SegConfig,
    SegMetric,
    build_detector,
    build_segmenter,
    feature_backbone,
    load_backbone,
    mean_average_precision,
    split_c4,
    transfer_cls,
    transfer_det,
    transfer_seg,
)
from dna.transfer.datasets import CocoDetection, detect_seg_format, make_seg_dataset
from dna.transfer.det import detection_loss
from dna.transfer.seg import seg_loss
from tests.s3fixture import s3_bucket  # noqa: F401

VIT = "vit_tiny_patch16_224"
VIT_KW = {"img_size": 32, "patch_size": 4, "depth": 4, "num_classes": 10}


# ----------------------------------------------------------------------------------------------
# fixtures


@pytest.fixture(autouse=True)
def _one_thread():
    """The tiny models here are latency-bound; one intra-op thread avoids OpenMP threads spinning
    against other processes on a shared 2-core machine (several times faster there)."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture(scope="module")
def mbconv(tmp_path_factory):
    """A searched mbconv-tiny net: (arch JSON URI, checkpoint URI as `dna retrain` writes it)."""
    root = tmp_path_factory.mktemp("mbconv")
    s = get_space("mbconv-tiny")
    arch = Architecture.from_choices(
        s, [BlockChoice(k, 0, (s.ops[0],) * s.blocks[k].cells[0].layers) for k in range(6)])
    arch_uri = arch.save(str(root / "arch.json"))
    torch.manual_seed(0)
    ckpt = str(root / "model.pt")
    storage.save_torch({"model": build_model(arch).state_dict(), "arch": arch.to_json(), "num_classes": 10}, ckpt)
    return arch_uri, ckpt


@pytest.fixture(scope="module")
def vit_ckpt(tmp_path_factory):
    import timm

    torch.manual_seed(0)
    path = str(tmp_path_factory.mktemp("vit") / "model.pt")
    storage.save_torch({"model": timm.create_model(VIT, pretrained=False, **VIT_KW).state_dict()}, path)
    return path


@pytest.fixture(scope="module")
def searched_vit(tmp_path_factory):
    """A searched ViT of the vit-tiny space (widths change between blocks): (arch URI, ckpt)."""
    from dna.model.vit import build_from_arch, vit_arch_json

    root = tmp_path_factory.mktemp("svit")
    uri = str(root / "arch.json")
    storage.write_json(vit_arch_json("vit-tiny", ["h2-r2.0-d1", "h3-r4.0-d2", "h2-r2.0-d1", "h3-r2.0-d1"]), uri)
    torch.manual_seed(0)
    ckpt = str(root / "model.pt")
    storage.save_torch({"model": build_from_arch(uri).state_dict()}, ckpt)
    return uri, ckpt


def _cnn(mbconv):
    return load_backbone(mbconv[0], mbconv[1])[0]


def _vit(vit_ckpt):
    return load_backbone(VIT, vit_ckpt, model_kwargs=VIT_KW)[0]


def _png(arr: np.ndarray, mode: str | None = None, palette: bool = False) -> bytes:
    img = Image.fromarray(arr.astype(np.uint8), mode=mode) if mode else Image.fromarray(arr.astype(np.uint8))
    if palette:
        from dna.transfer.viz import palette as pal

        img = img.convert("P") if img.mode != "P" else img
        img.putpalette(pal(256).reshape(-1).tolist())
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()


def _jpg(h: int, w: int, seed: int) -> bytes:
    rng = np.random.default_rng(seed)
    buf = io.BytesIO()
    Image.fromarray(rng.integers(0, 255, (h, w, 3), dtype=np.uint8)).save(buf, format="JPEG")
    return buf.getvalue()


def write_voc(root: str, n_train: int = 4, n_val: int = 2) -> None:
    ids = [f"2007_{i:06d}" for i in range(n_train + n_val)]
    for i, name in enumerate(ids):
        mask = np.zeros((30, 40), np.uint8)
        mask[5:20, 8:25] = 15  # person
        mask[22:28, 30:38] = 1  # aeroplane
        mask[4, :] = 255  # boundary
        mask[0, 0] = 21 + i  # not a VOC class -> ignored
        storage.write_bytes(_jpg(30, 40, i), storage.join(root, "JPEGImages", f"{name}.jpg"))
        storage.write_bytes(_png(mask, mode="P", palette=True), storage.join(root, "SegmentationClass", f"{name}.png"))
    storage.write_bytes("\n".join(ids[:n_train]).encode() + b"\n",
                        storage.join(root, "ImageSets", "Segmentation", "train.txt"))
    storage.write_bytes("\n".join(ids[n_train:]).encode(), storage.join(root, "ImageSets", "Segmentation", "val.txt"))


def write_coco(root: str) -> None:
    cats = [{"id": 1, "name": "cat"}, {"id": 3, "name": "dog"}]
    for split, seed in (("train", 0), ("val", 10)):
        images = [{"id": 7, "file_name": "a.jpg", "height": 40, "width": 60},
                  {"id": 9, "file_name": "b.jpg", "height": 50, "width": 50}]
        anns = [
            {"id": 1, "image_id": 7, "category_id": 3, "bbox": [10, 5, 20, 30], "iscrowd": 0, "area": 600},
            {"id": 2, "image_id": 7, "category_id": 1, "bbox": [0, 0, 5, 5], "iscrowd": 1, "area": 25},
            {"id": 3, "image_id": 9, "category_id": 1, "bbox": [1, 2, 3, 4], "iscrowd": 0, "area": 12},
            {"id": 4, "image_id": 9, "category_id": 1, "bbox": [1, 2, 0, 4], "iscrowd": 0, "area": 0},
        ]
        storage.write_json({"images": images, "annotations": anns, "categories": cats},
                           storage.join(root, "annotations", f"instances_{split}.json"))
        storage.write_bytes(_jpg(40, 60, seed), storage.join(root, split, "a.jpg"))
        storage.write_bytes(_jpg(50, 50, seed + 1), storage.join(root, split, "b.jpg"))


# ----------------------------------------------------------------------------------------------
# metrics


def test_miou_matches_hand_computed_4x4():
    target = torch.tensor([[0, 0, 1, 1], [0, 0, 1, 1], [2, 2, 255, 255], [2, 2, 2, 2]])
    pred = torch.tensor([[0, 1, 1, 1], [0, 0, 1, 1], [2, 0, 0, 1], [2, 2, 2, 1]])
    m = SegMetric(num_classes=4)
    m.update(pred, target)
    r = m.compute()
    # class 0: tp 3, gt 4, pred 4 -> 3/5; class 1: tp 4, gt 4, pred 6 -> 4/6; class 2: tp 4,
    # gt 6, pred 4 -> 4/6; class 3 absent everywhere -> left out; ignored pixels never count.
    assert r["iou"][:3] == pytest.approx([3 / 5, 4 / 6, 4 / 6])
    assert r["iou"][3] is None
    assert r["mIoU"] == pytest.approx((3 / 5 + 4 / 6 + 4 / 6) / 3)
    assert r["pixel_acc"] == pytest.approx(11 / 14)
    perfect = SegMetric(3)
    perfect.update(target.clamp(max=2), target)
    assert perfect.compute()["mIoU"] == pytest.approx(1.0)


def test_map_perfect_is_one_and_empty_is_zero():
    targets = [
        {"boxes": torch.tensor([[1.0, 2, 20, 30], [30, 30, 60, 60]]), "labels": torch.tensor([1, 2])},
        {"boxes": torch.tensor([[5.0, 5, 25, 25]]), "labels": torch.tensor([1])},
    ]
    perfect = [{"boxes": t["boxes"], "labels": t["labels"], "scores": torch.linspace(0.9, 0.5, len(t["labels"]))}
               for t in targets]
    r = mean_average_precision(perfect, targets, ["a", "b"])
    assert r["mAP"] == pytest.approx(1.0) and r["mAP50"] == pytest.approx(1.0)
    assert r["per_class_AP"] == {"a": pytest.approx(1.0), "b": pytest.approx(1.0)}
    empty = [{"boxes": torch.zeros(0, 4), "labels": torch.zeros(0, dtype=torch.int64), "scores": torch.zeros(0)}
             for _ in targets]
    r = mean_average_precision(empty, targets)
    assert r["mAP"] == 0.0 and r["mAP50"] == 0.0


# ----------------------------------------------------------------------------------------------
# weights


def test_random_init_is_refused_without_the_explicit_flag(mbconv, tmp_path):
    arch, _ = mbconv
    with pytest.raises(DnaError, match="random-init"):
        load_backbone(arch, None)
    for cls in (SegConfig, DetConfig, ClsConfig):
        with pytest.raises(DnaError, match="random_init"):
            cls(model=arch, out=str(tmp_path)).validate()
    from dna.cli import main

    assert main(["transfer", "cls", arch, "--out", str(tmp_path / "x")]) == 2
    assert not storage.exists(str(tmp_path / "x"))
    with pytest.warns(UserWarning, match="RANDOM"):
        r = transfer_cls(ClsConfig(model=arch, out=str(tmp_path / "r"), random_init=True, epochs=1,
                                   train_size=32, val_size=16, batch_size=16, num_samples=0))
    assert r["backbone"] == RANDOM_INIT
    assert storage.read_json(str(tmp_path / "r" / "metrics.json"))["backbone"] == RANDOM_INIT


def test_checkpoint_loads_everything_but_the_classifier(mbconv, tmp_path):
    arch, ckpt = mbconv
    model, source = load_backbone(arch, ckpt, model_kwargs={"num_classes": 3})
    assert source == ckpt
    saved = storage.load_torch(ckpt)["model"]
    assert torch.equal(model.conv_stem.weight, saved["conv_stem.weight"])
    assert model.classifier.out_features == 3
    other = get_space("mbconv-tiny")
    wrong = Architecture.from_choices(
        other, [BlockChoice(k, 0, (other.ops[1],) * other.blocks[k].cells[0].layers) for k in range(6)])
    wrong_uri = wrong.save(str(tmp_path / "wrong.json"))
    with pytest.raises(DnaError, match="does not fit"):
        load_backbone(wrong_uri, ckpt)


def test_config_validation_names_the_bad_value(mbconv, tmp_path):
    arch, ckpt = mbconv
    base = dict(model=arch, checkpoint=ckpt, out=str(tmp_path))
    for bad, match in (
        (dict(epochs=0), "epochs"),
        (dict(output_stride=12), "output_stride"),
        (dict(optimizer="lamb"), "optimizer"),
        (dict(model="no_such_model"), "no_such_model"),
        (dict(checkpoint=str(tmp_path / "missing.pt")), "missing.pt"),
        (dict(data=str(tmp_path / "nodata")), "nodata"),
        (dict(data_format="coco"), "data_format"),
    ):
        with pytest.raises(DnaError, match=match):
            SegConfig(**{**base, **bad}).validate()
    with pytest.raises(DnaError, match="min_size"):
        DetConfig(**base, min_size=4).validate()


# ----------------------------------------------------------------------------------------------
# backbones and heads


def test_multiscale_features_of_cnn_and_vits(mbconv, vit_ckpt, searched_vit):
    x = torch.randn(2, 3, 64, 48)
    f = feature_backbone(_cnn(mbconv), (4, 8, 16, 32))
    assert f.strides == [4, 8, 16, 32]
    assert [tuple(o.shape[-2:]) for o in f(x)] == [(16, 12), (8, 6), (4, 3), (2, 2)]
    f16 = feature_backbone(_cnn(mbconv), (4, 32), output_stride=16)  # last stages dilated
    assert f16.strides == [4, 16] and tuple(f16(x)[1].shape[-2:]) == (4, 3)
    for model in (_vit(vit_ckpt), load_backbone(*searched_vit)[0]):  # input size != img_size
        fv = feature_backbone(model, (4, 8, 16, 32))
        outs = fv(x)
        assert [tuple(o.shape[-2:]) for o in outs] == [(16, 12), (8, 6), (4, 3), (2, 2)]
        assert [o.shape[1] for o in outs] == fv.channels


@pytest.mark.parametrize("kind", ["cnn", "vit"])
def test_deeplab_one_step_lowers_the_loss(kind, mbconv, vit_ckpt):
    model = _cnn(mbconv) if kind == "cnn" else _vit(vit_ckpt)
    seg = build_segmenter(model, 4, output_stride=16, resolution=32, aspp_channels=32, decoder_channels=32)
    x = torch.randn(4, 3, 32, 32)
    y = torch.randint(0, 4, (4, 32, 32))
    y[:, :2] = 255
    seg.train()
    opt = torch.optim.SGD(seg.parameters(), lr=0.05, momentum=0.9)

    def loss():
        torch.manual_seed(1)  # the same dropout mask before and after the step
        return seg_loss(seg(x), y)

    before = loss()
    assert seg(x).shape == (4, 4, 32, 32)
    opt.zero_grad()
    before.backward()
    opt.step()
    with torch.no_grad():
        after = loss()
    assert after < before


@pytest.mark.parametrize("kind,fpn", [("cnn", False), ("cnn", True), ("vit", False), ("vit", True)])
def test_faster_rcnn_one_step_lowers_the_loss(kind, fpn, mbconv, vit_ckpt):
    from dna.data import DataConfig, make_dataset

    model = _cnn(mbconv) if kind == "cnn" else _vit(vit_ckpt)
    det = build_detector(model, 4, fpn=fpn, min_size=64, max_size=64, fpn_channels=32, representation_size=64,
                         proposals_train=64, proposals_test=20, rois_per_image=16)
    if not fpn:
        assert det.roi_size == (14 if kind == "cnn" else 7)
        assert det.anchor_sizes == (3, 5, 10, 20, 41)
    ds = make_dataset(DataConfig(resolution=64, train_size=4, num_classes=3, augment=False), "train", "det")
    images, targets = [ds[i][0] for i in range(2)], [ds[i][1] for i in range(2)]
    det.train()
    opt = torch.optim.SGD(det.parameters(), lr=0.01, momentum=0.9)

    def loss():
        torch.manual_seed(1)  # the same anchor/proposal sampling before and after the step
        return detection_loss(det, images, targets)[0]

    before = loss()
    opt.zero_grad()
    before.backward()
    opt.step()
    with torch.no_grad():
        after = loss()
    assert after < before
    det.eval()
    with torch.no_grad():
        out = det(images)
    assert len(out) == 2 and set(out[0]) == {"boxes", "labels", "scores"}


def test_frozen_batchnorm_for_small_detection_batches(mbconv):
    det = build_detector(_cnn(mbconv), 3, min_size=64, max_size=64, freeze_bn=True)
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in det.backbone.modules())
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in det.roi_heads.box_head.modules())


def test_c4_split_of_a_searched_vit_and_cnn(mbconv, searched_vit):
    trunk, head = split_c4(_cnn(mbconv))
    fmap = trunk(torch.randn(1, 3, 64, 64))["0"]
    assert fmap.shape[-1] == 4  # stride 16
    assert head(torch.randn(3, trunk.out_channels, 14, 14)).shape == (3, head.out_channels)
    trunk, head = split_c4(load_backbone(*searched_vit)[0])
    fmap = trunk(torch.randn(1, 3, 64, 64))["0"]
    assert fmap.shape[1] == trunk.out_channels
    assert head(torch.randn(3, trunk.out_channels, 7, 7)).shape == (3, head.out_channels)


# ----------------------------------------------------------------------------------------------
# data sets


def test_voc_and_ade20k_loaders(tmp_path):
    voc = str(tmp_path / "VOCdevkit" / "VOC2012")
    write_voc(voc)
    assert detect_seg_format(str(tmp_path)) == "voc"  # finds VOCdevkit/VOC2012 below the root
    ds = make_seg_dataset(str(tmp_path), "voc", "val", 40, training=False)
    assert len(ds) == 2 and ds.classes[15] == "person"
    x, y = ds[0]
    assert x.shape == (3, 40, 40) and y.shape == (40, 40)
    assert set(torch.unique(y).tolist()) == {0, 1, 15, 255}
    assert (y[30:] == 255).all()  # padding below the 40x30 image is ignored
    assert y[0, 0] == 255  # index 21+ is not a VOC class
    train = make_seg_dataset(str(tmp_path), "voc", "train", 24, training=True)
    assert len(train) == 4 and train[0][0].shape == (3, 24, 24)

    ade = tmp_path / "ade"
    for split in ("training", "validation"):
        mask = np.zeros((20, 20), np.uint8)
        mask[2:8, 2:8] = 1
        mask[10:15, 10:15] = 150
        storage.write_bytes(_jpg(20, 20, 3), str(ade / "images" / split / "ADE_1.jpg"))
        storage.write_bytes(_png(mask, mode="L"), str(ade / "annotations" / split / "ADE_1.png"))
    assert detect_seg_format(str(ade)) == "ade20k"
    ds = make_seg_dataset(str(ade), "ade20k", "val", 20, training=False)
    assert len(ds.classes) == 150
    _, y = ds[0]
    assert set(torch.unique(y).tolist()) == {0, 149, 255}  # 0 ("other") ignored, k -> k - 1


def _check_coco(root: str):
    cfg = DetConfig(model=VIT, checkpoint=None, random_init=True, out="unused", data=root, min_size=80, max_size=120)
    assert cfg.resolve_format() == "coco"
    ds = CocoDetection(root, "train", 80, 120, training=False)
    assert ds.classes == ["cat", "dog"] and len(ds) == 2
    x, t = ds[0]
    # 40x60 image -> shorter side 80 (scale 2), longer side 120 <= max_size
    assert x.shape == (3, 80, 120)
    assert t["labels"].tolist() == [2]  # dog (category id 3) -> label 2; the crowd box is skipped
    assert t["boxes"].tolist() == [[20.0, 10.0, 60.0, 70.0]]
    assert (t["boxes"] / t["scale"]).tolist() == [[10.0, 5.0, 30.0, 35.0]]
    _, t = ds[1]
    assert t["labels"].tolist() == [1]  # the zero-width box is dropped
    assert t["image_id"].item() == 9


def test_coco_loader_local(tmp_path):
    write_coco(str(tmp_path / "coco"))
    _check_coco(str(tmp_path / "coco"))


def test_coco_and_voc_loaders_on_s3(s3_bucket):  # noqa: F811
    root = f"{s3_bucket}/coco"
    write_coco(root)
    _check_coco(root)
    voc = f"{s3_bucket}/voc"
    write_voc(voc, n_train=2, n_val=1)
    ds = make_seg_dataset(voc, detect_seg_format(voc), "train", 32, training=False)
    assert ds[0][1].shape == (32, 32)


def test_seg_reads_and_writes_s3(s3_bucket, searched_vit):  # noqa: F811
    voc, out = f"{s3_bucket}/voc", f"{s3_bucket}/runs/seg"
    write_voc(voc, n_train=2, n_val=1)
    r = transfer_seg(SegConfig(model=searched_vit[0], checkpoint=searched_vit[1], out=out, data=voc,
                               resolution=32, epochs=1, batch_size=2, aspp_channels=16, decoder_channels=16,
                               num_samples=1))
    assert r["outputs"]["metrics"] == f"{out}/metrics.json"
    assert storage.read_json(f"{out}/metrics.json")["data_format"] == "voc"
    assert storage.exists(f"{out}/model.pt") and storage.exists(f"{out}/samples.png")


# ----------------------------------------------------------------------------------------------
# end to end


def test_seg_on_builtin_shapes_beats_all_background(mbconv, tmp_path):
    arch, ckpt = mbconv
    cfg = SegConfig(model=arch, checkpoint=ckpt, out=str(tmp_path / "seg"), resolution=32, num_classes=3,
                    train_size=256, val_size=64, epochs=10, batch_size=8, optimizer="adamw", lr=3e-3,
                    aspp_channels=32, decoder_channels=32, num_samples=3)
    r = transfer_seg(cfg)
    # the all-background prediction on the same validation images
    from dna.data import DataConfig, make_dataset

    base = SegMetric(4)
    for _, y in make_dataset(DataConfig(resolution=32, val_size=64, num_classes=3), "val", "seg"):
        base.update(torch.zeros_like(y), y)
    baseline = base.compute()["mIoU"]
    assert r["backbone"] == ckpt and r["head"] == "deeplabv3plus" and r["output_stride"] == 16
    assert r["mIoU"] > baseline + 0.1, (r["mIoU"], baseline)
    assert r["train_loss"][-1] < r["train_loss"][0]
    out = tmp_path / "seg"
    assert json.loads((out / "metrics.json").read_text())["mIoU"] == r["mIoU"]
    assert set(r["per_class_iou"]) == {"background", "circle", "square", "triangle"}
    assert Image.open(out / "samples.png").size[0] > 300
    state = storage.load_torch(str(out / "model.pt"))
    assert state["task"] == "seg" and "classifier.weight" in state["model"]


def test_det_c4_on_builtin_shapes_beats_chance(mbconv, tmp_path):
    arch, ckpt = mbconv
    cfg = DetConfig(model=arch, checkpoint=ckpt, out=str(tmp_path / "det"), resolution=64, num_classes=1,
                    train_size=192, val_size=32, epochs=4, batch_size=8, optimizer="adamw", lr=2e-3,
                    roi_size=7, proposals_train=100, proposals_test=50, rois_per_image=16, num_samples=2)
    r = transfer_det(cfg)
    assert r["head"] == "faster_rcnn_c4"
    assert r["mAP50"] > 0.1, r
    assert 0 <= r["mAP"] <= r["mAP50"]
    assert (tmp_path / "det" / "samples.png").exists()
    assert (tmp_path / "det" / "model.pt").exists()


def test_cls_finetune_replaces_the_classifier(mbconv, tmp_path):
    arch, ckpt = mbconv
    ended: list[dict] = []
    r = transfer_cls(ClsConfig(model=arch, checkpoint=ckpt, out=str(tmp_path / "cls"), num_classes=4,
                               train_size=256, val_size=64, epochs=4, batch_size=32, optimizer="adamw",
                               lr=3e-3, num_samples=4), on_epoch_end=ended.append)
    assert r["num_classes"] == 4 and r["backbone"] == ckpt
    assert r["train_loss"][-1] < r["train_loss"][0]
    # on_epoch_end: once per epoch, with that epoch's training loss and timing
    assert [(m["epoch"], m["epochs"], m["task"]) for m in ended] == [(e, 4, "classification") for e in (1, 2, 3, 4)]
    assert [m["loss"] for m in ended] == pytest.approx(r["train_loss"], abs=1e-4)
    assert all(m["images_per_s"] > 0 and m["seconds"] > 0 for m in ended)
    assert 0 <= r["top1"] <= 1 and set(r["per_class_acc"]) == {"circle", "square", "triangle", "plus"}
    assert (tmp_path / "cls" / "samples.png").exists()
    state = storage.load_torch(str(tmp_path / "cls" / "model.pt"))["model"]
    assert state["classifier.weight"].shape[0] == 4
    # the fine-tuned net is itself a backbone checkpoint (its classifier is dropped on loading)
    model, _ = load_backbone(arch, str(tmp_path / "cls" / "model.pt"))
    assert torch.equal(model.conv_stem.weight, state["conv_stem.weight"])


def test_cli_seg_on_a_voc_tree_with_a_searched_vit(searched_vit, tmp_path):
    from dna.cli import main

    arch, ckpt = searched_vit
    write_voc(str(tmp_path / "voc"))
    out = tmp_path / "out"
    code = main(["transfer", "seg", arch, "--checkpoint", ckpt, "--out", str(out), "--data",
                 str(tmp_path / "voc"), "--resolution", "32", "--epochs", "1", "--batch-size", "2",
                 "--samples", "1", "--json"])
    assert code == 0
    m = json.loads((out / "metrics.json").read_text())
    assert m["data_format"] == "voc" and m["num_classes"] == 21 and 0 <= m["mIoU"] <= 1
    assert m["backbone"] == ckpt
    assert (out / "samples.png").exists()
