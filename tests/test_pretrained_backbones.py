"""The shape-pretrained backbones the package ships (the CPU profile's stand-in for ImageNet
weights): every pretext backbone has a file, it loads strictly, it really finds objects on
held-out pretext images, every builder's ``pretrained_backbone="shapes"`` puts it in place, bad
requests get clear errors, and the script that makes the files runs and is deterministic."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

import segedu
from segedu.backbones.pretrained import (
    SHAPES_BACKBONES,
    SHAPES_WEIGHTS_DIR,
    load_backbone_weights,
    load_shapes_weights,
    read_shapes_weights,
    shapes_weights_path,
)
from segedu.train.pretext import (
    PRETEXT_BACKBONES,
    PRETEXT_SEED,
    Objectness,
    PretextRecipe,
    foreground_iou,
    pretext_images,
)

ROOT = Path(__file__).resolve().parents[1]
ARCHS = list(SHAPES_BACKBONES)


def test_the_shipped_files_are_exactly_the_listed_backbones_each_with_a_pretext_recipe():
    assert sorted(p.name for p in SHAPES_WEIGHTS_DIR.glob("*.pt")) == sorted(
        shapes_weights_path(arch).name for arch in SHAPES_BACKBONES)
    assert set(SHAPES_BACKBONES) <= set(PRETEXT_BACKBONES)


@pytest.mark.parametrize("arch", ARCHS)
def test_every_listed_backbone_is_shipped_and_loads_strictly(arch):
    assert shapes_weights_path(arch).exists(), (
        f"no shipped weights for {arch}: run `python benchmarks/pretrain_backbones.py "
        f"--arch {arch}` and commit the file")
    stored = read_shapes_weights(arch)
    assert stored["recipe"]["arch"] == arch and stored["recipe"]["width"] == 0.125
    assert stored["recipe"]["pretext_seed"] == PRETEXT_SEED
    build, options, _, _ = PRETEXT_BACKBONES[arch]
    load_shapes_weights(build(include_top=False, width=0.125, **options), arch)
    assert shapes_weights_path(arch).stat().st_size < 4e6  # package data stays small


@pytest.mark.parametrize("arch", ARCHS)
def test_shipped_weights_find_objects_on_held_out_images(arch):
    # Backbone and the two scorers it was trained with, on 64 held-out pretext images that the
    # pretraining never trained on: the stored IoU (256 images) is reproduced, and it is far
    # from what the same network scores with random weights.
    stored = read_shapes_weights(arch)
    x, m = pretext_images(PretextRecipe(arch=arch, val_images=64), "val")
    random_iou = foreground_iou(Objectness(arch), x, m)
    model = Objectness(arch)
    model.backbone.load_state_dict(stored["backbone"], strict=True)
    model.deep.load_state_dict(stored["head"]["deep"])
    model.shallow.load_state_dict(stored["head"]["shallow"])
    iou = foreground_iou(model, x, m)
    assert iou == pytest.approx(stored["val_foreground_iou"], abs=0.08), arch
    assert iou > 0.5 and iou > random_iou + 0.25, (arch, iou, random_iou)


def _holds_every_tensor_of(model: torch.nn.Module, state: dict) -> bool:
    """Every weight of ``state`` is, bit for bit, a tensor of ``model`` (whatever its key)."""
    by_shape: dict[tuple, list[torch.Tensor]] = {}
    for t in model.state_dict().values():
        by_shape.setdefault(tuple(t.shape), []).append(t)
    return all(any(torch.equal(t, u) for u in by_shape.get(tuple(t.shape), []))
               for k, t in state.items() if not k.endswith("num_batches_tracked"))


@pytest.mark.parametrize("name, options, arch", [
    ("fcn8s", {"batch_norm": True}, "vgg16_bn"),
    ("segnet", {"batch_norm": True}, "vgg16_bn"),
    ("deeplabv1", {"batch_norm": True}, "vgg16_bn"),
    ("fcn_resnet50", {}, "resnet50"),
    ("pspnet", {}, "resnet50"),
    ("deeplabv3_resnet50", {}, "resnet50"),
    ("deeplabv3", {}, "resnet101"),
    ("refinenet", {"backbone": "resnet101"}, "resnet101"),
    ("lw_refinenet", {}, "resnet50"),
    ("deeplabv3_mobilenet_v3_large", {}, "mobilenet_v3_large"),
    ("lraspp_mobilenet_v3_large", {}, "mobilenet_v3_large"),
])
def test_every_builder_puts_the_shipped_backbone_in_place(name, options, arch):
    state = read_shapes_weights(arch)["backbone"]
    model = segedu.build_model(name, 3, width=0.125, pretrained_backbone="shapes", **options)
    assert _holds_every_tensor_of(model, state), name
    fresh = segedu.build_model(name, 3, width=0.125, **options)
    assert not _holds_every_tensor_of(fresh, state), name


def test_bad_requests_get_clear_errors():
    with pytest.raises(ValueError, match="width=0.125"):
        segedu.build_model("pspnet", 3, width=0.25, pretrained_backbone="shapes")
    with pytest.raises(ValueError, match="shipped for .*batch_norm=True"):
        segedu.build_model("fcn8s", 3, width=0.125, batch_norm=False,
                           pretrained_backbone="shapes")
    with pytest.raises(ValueError, match="'imagenet'.*'shapes'"):
        segedu.build_model("pspnet", 3, width=0.125, pretrained_backbone="imagenett")
    with pytest.raises(ValueError, match="'xception65'.*shipped for"):
        segedu.build_model("deeplabv3plus", 3, backbone="xception65", width=0.125,
                           pretrained_backbone="shapes")
    with pytest.raises(ValueError, match="include_top=False"):
        load_shapes_weights(segedu.backbones.resnet50(width=0.125), "resnet50")
    with pytest.raises(ValueError, match="3 input channels"):
        segedu.build_model("pspnet", 3, width=0.125, in_channels=1, pretrained_backbone="shapes")
    with pytest.raises(ValueError, match="pretrained_backbone"):
        load_backbone_weights(segedu.backbones.resnet50(include_top=False, width=0.125),
                              "resnet50", "yes")


def test_the_script_that_makes_the_files_runs_and_is_deterministic(tmp_path, monkeypatch):
    monkeypatch.syspath_prepend(str(ROOT / "benchmarks"))
    import pretrain_backbones

    files, threads = [], torch.get_num_threads()
    for run in ("a", "b"):
        out = tmp_path / run / "weights.pt"
        pretrain_backbones.main(["--arch", "mobilenet_v3_large", "--iterations", "3",
                                 "--images", "16", "--out", str(out),
                                 "--results", str(tmp_path / run)])
        files.append(torch.load(out, weights_only=True))
        assert (tmp_path / run / "pretrain_backbones_mobilenet_v3_large.json").exists()
    first, second = (f["backbone"] for f in files)
    assert first.keys() == second.keys()
    assert all(torch.equal(first[k], second[k]) for k in first)
    assert files[0]["recipe"]["iterations"] == 3
    sys.modules.pop("pretrain_backbones", None)
    torch.set_num_threads(threads)  # the script sets one thread
