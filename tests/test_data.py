"""Specification of segedu.data: synthetic shapes, real-data wrappers, joint transforms, loaders.

Real data sets are tested offline on a few fake files laid out exactly as torchvision expects.
"""

from __future__ import annotations

import colorsys
import urllib.error

import numpy as np
import pytest
import torch
import torchvision
from PIL import Image
from torchvision import tv_tensors

from segedu.core.validation import check_mask
from segedu.data import (
    IGNORE_INDEX,
    IMAGENET_MEAN,
    IMAGENET_STD,
    PET_CLASSES,
    VOC_CLASSES,
    DatasetUnavailableError,
    OxfordPet,
    Shape,
    SyntheticShapes,
    VOCSegmentation,
    eval_transforms,
    load_dataset,
    make_loaders,
    mask_from_palette,
    train_transforms,
)

# ----------------------------------------------------------------------------------------------
# SyntheticShapes
# ----------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def train64():
    data = SyntheticShapes("train", size=64, length=64)
    return data, [data[i] for i in range(len(data))]


def test_constants_have_the_documented_values():
    assert IMAGENET_MEAN == (0.485, 0.456, 0.406)
    assert IMAGENET_STD == (0.229, 0.224, 0.225)
    assert IGNORE_INDEX == 255
    assert len(VOC_CLASSES) == 21 and VOC_CLASSES[0] == "background"
    assert PET_CLASSES == ("background", "pet")


def test_synthetic_has_five_classes_and_default_lengths():
    data = SyntheticShapes()
    assert data.num_classes == len(data.classes) == 5
    assert data.classes[0] == "background"
    assert len(SyntheticShapes("train")) == 512
    assert len(SyntheticShapes("val")) == 128
    assert len(SyntheticShapes("val", length=7)) == 7


def test_synthetic_returns_float_image_and_long_mask_tv_tensors(train64):
    image, mask = train64[1][0]
    assert isinstance(image, tv_tensors.Image) and isinstance(mask, tv_tensors.Mask)
    assert image.shape == (3, 64, 64) and image.dtype == torch.float32
    assert mask.shape == (64, 64) and mask.dtype == torch.long
    assert 0.0 <= image.min() and image.max() <= 1.0


def test_synthetic_sample_is_the_same_whatever_the_access_order_or_instance():
    a = SyntheticShapes("train", size=32, length=10)
    forward = [a[i] for i in range(10)]
    b = SyntheticShapes("train", size=32, length=10, cache=False)
    backward = [b[i] for i in reversed(range(10))][::-1]
    for (img1, mask1), (img2, mask2) in zip(forward, backward, strict=True):
        torch.testing.assert_close(img1, img2, rtol=0, atol=0)
        torch.testing.assert_close(mask1, mask2, rtol=0, atol=0)
    torch.testing.assert_close(b[3][0], b[3][0], rtol=0, atol=0)  # rendered twice, same


def test_a_cached_sample_equals_a_freshly_generated_one_and_is_not_rendered_again(monkeypatch):
    cached = SyntheticShapes("train", size=32, length=10)
    first = cached[3]
    monkeypatch.setattr(cached, "_render", lambda index: pytest.fail("rendered again"))
    again = cached[3]
    fresh = SyntheticShapes("train", size=32, length=10, cache=False)[3]
    for image, mask in (first, again):
        torch.testing.assert_close(image, fresh[0], rtol=0, atol=0)
        torch.testing.assert_close(mask, fresh[1], rtol=0, atol=0)


def test_synthetic_train_and_val_splits_and_seeds_differ():
    train = SyntheticShapes("train", size=32, length=4)
    val = SyntheticShapes("val", size=32, length=4)
    other_seed = SyntheticShapes("train", size=32, length=4, seed=1)
    for i in range(4):
        assert not torch.equal(train[i][0], val[i][0])
        assert not torch.equal(train[i][0], other_seed[i][0])
    assert not torch.equal(train[0][0], train[1][0])


def test_synthetic_masks_hold_only_classes_and_ignore(train64):
    data, samples = train64
    for _, mask in samples:
        check_mask(mask, data.num_classes, IGNORE_INDEX)


def test_synthetic_every_class_and_the_ignore_label_appear(train64):
    data, samples = train64
    seen = set(torch.cat([mask.flatten() for _, mask in samples]).unique().tolist())
    assert seen == set(range(data.num_classes)) | {IGNORE_INDEX}


def test_synthetic_ignore_band_is_thin_and_can_be_switched_off(train64):
    _, samples = train64
    masks = torch.stack([mask for _, mask in samples])
    ignored = (masks == IGNORE_INDEX).float().mean().item()
    assert 0.01 < ignored < 0.10  # a 1-pixel outline, not whole objects
    plain = SyntheticShapes("train", size=64, length=8, ignore_boundary=False)
    for i in range(8):
        mask = plain[i][1]
        assert not (mask == IGNORE_INDEX).any()
        # the same objects, only the band relabelled
        keep = samples[i][1] != IGNORE_INDEX
        assert torch.equal(mask[keep], samples[i][1][keep])


def test_synthetic_foreground_covers_a_fair_share_of_pixels(train64):
    _, samples = train64
    masks = torch.stack([mask for _, mask in samples])
    foreground = (masks != 0).float().mean().item()  # objects and their outlines
    assert 0.2 < foreground < 0.5


def test_synthetic_objects_come_in_several_scales(train64):
    data, samples = train64
    radii = [shape.radius for i in range(len(data)) for shape in data.layout(i)]
    assert min(radii) >= 64 / 16 and max(radii) > 64 / 4  # from ~4 px to ~21 px
    areas = []
    for i, (_, mask) in enumerate(samples):
        shapes = data.layout(i)
        if len(shapes) == 1:  # a lone object: its area can be read off the mask
            areas.append(int((mask == shapes[0].label).sum()))
    assert len(areas) >= 5
    assert min(areas) >= 20  # smallest radius ~4 px at size 64: still learnable
    assert max(areas) / min(areas) > 6


def test_synthetic_layout_matches_the_mask(train64):
    data, samples = train64
    for i in range(8):
        labels = {shape.label for shape in data.layout(i)}
        present = set(samples[i][1].unique().tolist()) - {0, IGNORE_INDEX}
        assert present <= labels  # every labelled class was drawn (some may be covered)
        assert present


def test_synthetic_top_object_hides_the_outline_beneath(monkeypatch):
    small_circle = Shape(label=1, cx=32, cy=32, radius=8, angle=0, rgb=(1.0, 0.0, 0.0))
    big_square = Shape(label=2, cx=32, cy=32, radius=16, angle=0.3, rgb=(0.0, 1.0, 0.0))
    stacked = SyntheticShapes("val", size=64, length=1)
    monkeypatch.setattr(stacked, "_sample_layout", lambda rng: [small_circle, big_square])
    alone = SyntheticShapes("val", size=64, length=1)
    monkeypatch.setattr(alone, "_sample_layout", lambda rng: [big_square])
    mask = stacked[0][1]
    assert not (mask == 1).any()  # the circle is completely covered ...
    assert torch.equal(mask, alone[0][1])  # ... and so is its outline


@pytest.mark.parametrize("kind", [1, 2, 3, 4])
def test_synthetic_label_area_matches_the_geometric_area(monkeypatch, kind):
    shape = Shape(label=kind, cx=31.3, cy=32.6, radius=12, angle=0.7, rgb=(0.5, 0.5, 0.5))
    data = SyntheticShapes("val", size=64, length=1, ignore_boundary=False)
    monkeypatch.setattr(data, "_sample_layout", lambda rng: [shape])
    area = int((data[0][1] == kind).sum())
    expected = np.pi * 12**2  # every kind has the area of a circle of the same radius
    if kind == 4:
        assert 0.5 * expected < area < 0.9 * expected  # a ring: minus its hole
    else:
        assert abs(area - expected) < 0.03 * expected


def test_synthetic_background_is_textured_not_flat(train64):
    _, samples = train64
    for image, mask in samples[:16]:
        # 2x2 block averages: pixel noise averages out, stripes and colour fields do not
        blocks = torch.nn.functional.avg_pool2d(image[None], 2)[0]
        background = (mask == 0).reshape(32, 2, 32, 2).all(3).all(1)
        assert background.sum() > 50
        assert blocks[:, background].std(dim=1).mean() > 0.04


def test_synthetic_colour_alone_does_not_decide_the_class():
    data = SyntheticShapes("train", size=64)  # layout() draws no pixels: 512 samples are cheap
    hues = {label: [] for label in range(1, data.num_classes)}
    for i in range(len(data)):
        for shape in data.layout(i):
            hues[shape.label].append(colorsys.rgb_to_hsv(*shape.rgb)[0] * 360)
    hues = {label: np.array(h) for label, h in hues.items()}
    assert all(len(h) >= 5 for h in hues.values())

    def angle(a):  # wrap to (-180, 180]
        return (a + 180) % 360 - 180

    typical = {k: np.degrees(np.angle(np.exp(1j * np.radians(h)).mean())) for k, h in hues.items()}
    for k, h in hues.items():  # each class keeps its own typical hue, +-45 degrees
        assert np.abs(angle(h - typical[k])).max() < 50
    for a, b in [(1, 2), (2, 3), (3, 4), (4, 1)]:  # neighbours on the colour wheel ...
        assert abs(angle(typical[a] - typical[b])) > 60
        # ... meet: some circles are as yellowish as some squares, etc.
        assert np.abs(angle(hues[a][:, None] - hues[b][None, :])).min() < 8


@pytest.mark.parametrize("size", [16, 64, 127])
def test_synthetic_works_for_any_size_from_16(size):
    data = SyntheticShapes("val", size=size, length=8)
    for image, mask in (data[i] for i in range(8)):
        assert image.shape == (3, size, size) and mask.shape == (size, size)
        check_mask(mask, data.num_classes, IGNORE_INDEX)
    assert any((data[i][1] != 0).any() for i in range(8))


def test_synthetic_rejects_bad_arguments():
    with pytest.raises(ValueError, match="split"):
        SyntheticShapes("test")
    with pytest.raises(ValueError, match="16"):
        SyntheticShapes(size=8)
    with pytest.raises(IndexError):
        SyntheticShapes(length=3)[3]


def test_synthetic_applies_joint_transforms():
    data = SyntheticShapes("train", size=48, length=2, transforms=train_transforms(32))
    image, mask = data[0]
    assert image.shape == (3, 32, 32) and mask.shape == (32, 32) and mask.dtype == torch.long


def test_every_one_of_the_512_uncached_training_samples_is_a_valid_distinct_pair():
    # (How fast they are generated, ~0.5 ms a sample, is a benchmark, not a test: wall-clock
    # limits fail on shared cores.)
    data = SyntheticShapes("train", size=64, cache=False)
    previous = None
    for i in range(len(data)):
        image, mask = data[i]
        assert image.shape == (3, 64, 64) and 0.0 <= image.min() and image.max() <= 1.0, i
        check_mask(mask, data.num_classes, IGNORE_INDEX)
        assert previous is None or not torch.equal(image, previous), i
        previous = image


# ----------------------------------------------------------------------------------------------
# Real data sets, offline: fake files in torchvision's layout
# ----------------------------------------------------------------------------------------------


def _write_fake_pet(root, names=("Abyssinian_1", "Abyssinian_2")):
    base = root / "oxford-iiit-pet"
    (base / "images").mkdir(parents=True)
    (base / "annotations" / "trimaps").mkdir(parents=True)
    trimap = np.full((20, 30), 2, dtype=np.uint8)  # 2 = background
    trimap[5:15, 8:22] = 3  # border ...
    trimap[7:13, 10:20] = 1  # ... around the pet
    for name in names:
        Image.fromarray(np.full((20, 30, 3), 128, np.uint8)).save(base / "images" / f"{name}.jpg")
        Image.fromarray(trimap).save(base / "annotations" / "trimaps" / f"{name}.png")
    lines = [f"{name} 1 1 1" for name in names]
    (base / "annotations" / "trainval.txt").write_text("\n".join(lines) + "\n")
    (base / "annotations" / "test.txt").write_text(lines[0] + "\n")
    return trimap


def _voc_like_palette():
    palette = np.zeros((256, 3), dtype=np.uint8)
    palette[15] = (192, 128, 128)  # person
    palette[255] = (224, 224, 192)  # boundary
    return palette


def _write_fake_voc(root, ids=("2007_000032", "2007_000039")):
    base = root / "VOCdevkit" / "VOC2012"
    for folder in ("JPEGImages", "SegmentationClass", "ImageSets/Segmentation"):
        (base / folder).mkdir(parents=True)
    indices = np.zeros((24, 32), dtype=np.uint8)
    indices[4:20, 6:26] = 255
    indices[6:18, 8:24] = 15  # a "person" with a boundary band
    for image_id in ids:
        photo = Image.fromarray(np.full((24, 32, 3), 90, np.uint8))
        photo.save(base / "JPEGImages" / f"{image_id}.jpg")
        png = Image.frombytes("P", indices.shape[::-1], indices.tobytes())
        png.putpalette(_voc_like_palette().flatten().tolist())
        png.save(base / "SegmentationClass" / f"{image_id}.png")
    (base / "ImageSets" / "Segmentation" / "train.txt").write_text("\n".join(ids) + "\n")
    return indices


def test_oxford_pet_trimap_becomes_background_pet_and_ignore(tmp_path):
    trimap = _write_fake_pet(tmp_path)
    data = OxfordPet(tmp_path, split="trainval")
    assert len(data) == 2 and data.classes == PET_CLASSES and data.num_classes == 2
    image, mask = data[0]
    assert isinstance(image, tv_tensors.Image) and isinstance(mask, tv_tensors.Mask)
    assert image.shape == (3, 20, 30) and image.dtype == torch.float32
    assert mask.dtype == torch.long
    expected = np.select([trimap == 1, trimap == 2], [1, 0], default=IGNORE_INDEX)
    assert torch.equal(mask, torch.from_numpy(expected))


def test_oxford_pet_rejects_a_mask_that_is_not_a_trimap(tmp_path):
    _write_fake_pet(tmp_path, names=("Bengal_1",))
    trimap_file = tmp_path / "oxford-iiit-pet" / "annotations" / "trimaps" / "Bengal_1.png"
    Image.fromarray(np.full((20, 30), 7, np.uint8)).save(trimap_file)
    with pytest.raises(ValueError, match="trimap"):
        OxfordPet(tmp_path)[0]


def test_voc_palette_png_gives_class_indices_with_boundaries(tmp_path):
    indices = _write_fake_voc(tmp_path)
    data = VOCSegmentation(tmp_path, image_set="train")
    assert len(data) == 2 and data.classes == VOC_CLASSES and data.num_classes == 21
    image, mask = data[1]
    assert image.shape == (3, 24, 32) and image.dtype == torch.float32
    assert mask.dtype == torch.long
    assert torch.equal(mask, torch.from_numpy(indices.astype(np.int64)))
    assert set(mask.unique().tolist()) == {0, 15, 255}


def test_real_datasets_apply_joint_transforms(tmp_path):
    _write_fake_voc(tmp_path)
    data = VOCSegmentation(tmp_path, transforms=eval_transforms(16))
    image, mask = data[0]
    assert image.shape == (3, 16, 16) and mask.shape == (16, 16) and mask.dtype == torch.long
    assert set(mask.unique().tolist()) <= {0, 15, 255}  # nearest: no blended indices


@pytest.mark.parametrize(
    ("make", "folder"),
    [
        (lambda root: OxfordPet(root), "oxford-iiit-pet"),
        (lambda root: VOCSegmentation(root), "VOC2012"),
    ],
    ids=["oxford_pet", "voc"],
)
def test_missing_dataset_raises_a_helpful_error(tmp_path, make, folder):
    with pytest.raises(DatasetUnavailableError) as info:
        make(tmp_path)
    message = str(info.value)
    assert folder in message and str(tmp_path) in message  # where it looked
    assert "download=True" in message and "synthetic" in message  # what to do
    assert "not found" in message.lower()
    assert isinstance(info.value, RuntimeError)


def test_failed_download_is_reported_with_the_original_error(tmp_path, monkeypatch):
    def no_network(*args, **kwargs):
        raise urllib.error.URLError("Temporary failure in name resolution")

    monkeypatch.setattr(
        torchvision.datasets.oxford_iiit_pet, "download_and_extract_archive", no_network
    )
    with pytest.raises(DatasetUnavailableError) as info:
        OxfordPet(tmp_path, download=True)
    assert "could not be downloaded" in str(info.value)
    assert "name resolution" in str(info.value)
    assert isinstance(info.value.__cause__, urllib.error.URLError)


def test_load_dataset_falls_back_to_synthetic_with_one_line(tmp_path, capsys):
    data = load_dataset("voc", "val", root=tmp_path, size=32)
    assert isinstance(data, SyntheticShapes) and data.split == "val" and data.size == 32
    out = capsys.readouterr().out.strip().splitlines()
    assert len(out) == 1 and "VOC" in out[0] and "SyntheticShapes" in out[0]


def test_load_dataset_without_fallback_raises(tmp_path):
    with pytest.raises(DatasetUnavailableError):
        load_dataset("oxford_pet", "train", root=tmp_path, fallback=False)


def test_load_dataset_loads_real_data_when_present(tmp_path, capsys):
    _write_fake_pet(tmp_path)
    data = load_dataset("oxford_pet", "train", root=tmp_path)
    assert isinstance(data, OxfordPet) and data.split == "trainval" and len(data) == 2
    assert capsys.readouterr().out == ""
    assert isinstance(load_dataset("synthetic", "val", size=16), SyntheticShapes)


def test_load_dataset_rejects_unknown_names_and_splits():
    with pytest.raises(ValueError, match="synthetic, oxford_pet, voc"):
        load_dataset("cityscape", "train")
    with pytest.raises(ValueError, match="split"):
        load_dataset("voc", "test")


# ----------------------------------------------------------------------------------------------
# mask_from_palette
# ----------------------------------------------------------------------------------------------


def test_mask_from_palette_round_trips_a_palette_mask():
    from segedu.tools.viz import VOC_PALETTE

    rng = np.random.default_rng(0)
    indices = rng.integers(0, 21, size=(12, 17))
    indices[0, :5] = 255
    rgb = np.asarray(VOC_PALETTE, dtype=np.uint8)[indices]
    result = mask_from_palette(rgb, VOC_PALETTE)
    assert result.dtype == np.int64 and result.shape == (12, 17)
    np.testing.assert_array_equal(result, indices)
    # only the 21 class colours: VOC's boundary colour (224, 224, 192) still means "ignore"
    np.testing.assert_array_equal(mask_from_palette(rgb, VOC_PALETTE[:21]), indices)


def test_mask_from_palette_gives_a_repeated_colour_its_first_index():
    palette = np.array([[0, 0, 0], [255, 0, 0], [255, 0, 0]], dtype=np.uint8)
    rgb = palette[[[0, 1], [2, 2]]]
    np.testing.assert_array_equal(mask_from_palette(rgb, palette), [[0, 1], [1, 1]])


def test_mask_from_palette_lists_unknown_colours():
    palette = np.array([[0, 0, 0], [255, 0, 0]], dtype=np.uint8)
    rgb = np.zeros((4, 4, 3), dtype=np.uint8)
    rgb[0, 0] = (128, 0, 0)  # a bilinearly blended edge pixel
    with pytest.raises(ValueError, match=r"\(128, 0, 0\): 1 px"):
        mask_from_palette(rgb, palette)
    with pytest.raises(ValueError, match=r"\(H, W, 3\)"):
        mask_from_palette(rgb[..., 0], palette)


# ----------------------------------------------------------------------------------------------
# Joint transforms
# ----------------------------------------------------------------------------------------------

# Three pure colours for three classes: after any transform, an unblended pixel's colour must
# still name its mask class.
_CLASS_COLOURS = torch.eye(3)


def _colour_coded_sample(size=48):
    mask = torch.zeros(size, size, dtype=torch.long)
    mask[:, : size // 4] = 1  # a band on the left (catches a flip of only one of the two)
    mask[size // 2 :, size // 2 :] = 2  # a block bottom right
    image = _CLASS_COLOURS[mask].permute(2, 0, 1).contiguous()
    return tv_tensors.Image(image), tv_tensors.Mask(mask)


@pytest.mark.parametrize("seed", range(6))
def test_train_transforms_keep_image_and_mask_aligned(seed):
    torch.manual_seed(seed)
    transform = train_transforms(32, color_jitter=None, normalize=False)
    image, mask = transform(*_colour_coded_sample())
    assert image.shape == (3, 32, 32) and mask.shape == (32, 32)
    assert mask.dtype == torch.long and image.dtype == torch.float32
    labelled = mask != IGNORE_INDEX
    pure = image.max(dim=0).values > 0.9  # not a pixel blended by bilinear resizing
    agree = image.argmax(dim=0) == mask
    assert agree[labelled & pure].float().mean() > 0.98
    assert (labelled & pure).sum() > 0.5 * labelled.sum()


def test_train_transforms_pad_the_mask_with_ignore_and_the_image_with_zero():
    image, mask = _colour_coded_sample(size=48)
    transform = train_transforms(48, scale=(0.5, 0.5), hflip=0, color_jitter=None, normalize=False)
    out_image, out_mask = transform(image, mask)
    assert out_image.shape == (3, 48, 48)
    padded = out_mask == IGNORE_INDEX
    assert padded.sum() == 48 * 48 - 24 * 24  # the image shrank to 24x24
    assert (out_image[:, padded] == 0).all()


def test_train_transforms_flip_image_and_mask_together():
    image, mask = _colour_coded_sample(size=32)
    transform = train_transforms(32, scale=(1, 1), hflip=1.0, color_jitter=None, normalize=False)
    out_image, out_mask = transform(image, mask)
    assert torch.equal(out_mask, mask.flip(-1))
    torch.testing.assert_close(out_image, image.flip(-1))


def test_train_transforms_colour_jitter_leaves_the_mask_alone():
    torch.manual_seed(0)
    image, mask = _colour_coded_sample(size=32)
    transform = train_transforms(32, scale=(1, 1), hflip=0, color_jitter=0.5)
    out_image, out_mask = transform(image, mask)
    assert torch.equal(out_mask, mask) and out_mask.dtype == torch.long
    assert out_image.dtype == torch.float32


def test_train_transforms_accept_uint8_images_and_normalise():
    torch.manual_seed(0)
    image = tv_tensors.Image(torch.full((3, 40, 40), 255, dtype=torch.uint8))
    mask = tv_tensors.Mask(torch.zeros(40, 40, dtype=torch.long))
    out_image, out_mask = train_transforms(32, scale=(1.5, 1.5), color_jitter=None)(image, mask)
    expected = (1 - torch.tensor(IMAGENET_MEAN)) / torch.tensor(IMAGENET_STD)
    torch.testing.assert_close(out_image[:, 10, 10], expected)
    assert out_mask.dtype == torch.long and (out_mask == 0).all()


def test_eval_transforms_resize_with_nearest_for_masks_and_normalise():
    image, mask = _colour_coded_sample(size=48)
    out_image, out_mask = eval_transforms(20)(image, mask)
    assert out_image.shape == (3, 20, 20) and out_mask.shape == (20, 20)
    assert set(out_mask.unique().tolist()) <= {0, 1, 2} and out_mask.dtype == torch.long
    unchanged_image, unchanged_mask = eval_transforms(None, normalize=False)(image, mask)
    assert torch.equal(unchanged_image, image) and torch.equal(unchanged_mask, mask)


# ----------------------------------------------------------------------------------------------
# Loaders
# ----------------------------------------------------------------------------------------------


def test_make_loaders_gives_normalised_batches_and_class_names():
    train, val, classes = make_loaders(size=32, batch_size=8, train_length=20, val_length=12)
    assert classes == SyntheticShapes.classes
    images, masks = next(iter(train))
    assert images.shape == (8, 3, 32, 32) and images.dtype == torch.float32
    assert masks.shape == (8, 32, 32) and masks.dtype == torch.long
    assert images.min() < 0  # normalised, not [0, 1]
    assert len(train) == 2  # 20 samples, last incomplete batch dropped
    val_batches = list(val)
    assert [len(m) for _, m in val_batches] == [8, 4]
    for _, m in val_batches:
        check_mask(m, len(classes), IGNORE_INDEX)


def test_make_loaders_shuffles_train_reproducibly_and_keeps_val_order():
    def first_masks(seed):
        train, val, _ = make_loaders(
            size=16, batch_size=4, train_length=16, val_length=4, seed=seed, augment=False
        )
        return next(iter(train))[1], next(iter(val))[1]

    train_a, val_a = first_masks(0)
    train_b, val_b = first_masks(0)
    train_c, _ = first_masks(1)
    assert torch.equal(train_a, train_b) and not torch.equal(train_a, train_c)
    expected_val = torch.stack([SyntheticShapes("val", size=16, length=4)[i][1] for i in range(4)])
    assert torch.equal(val_a, expected_val)


def test_make_loaders_falls_back_for_missing_real_data(tmp_path, capsys):
    train, val, classes = make_loaders("oxford_pet", size=16, batch_size=4, root=tmp_path,
                                       train_length=8, val_length=4)  # fmt: skip
    assert classes == SyntheticShapes.classes
    assert isinstance(val.dataset, SyntheticShapes)
    assert "falling back" in capsys.readouterr().out
    assert next(iter(train))[0].shape == (4, 3, 16, 16)


def test_make_loaders_resizes_real_images_to_a_common_size(tmp_path):
    _write_fake_pet(tmp_path)
    train, val, classes = make_loaders("oxford_pet", size=16, batch_size=2, root=tmp_path)
    assert classes == PET_CLASSES
    images, masks = next(iter(val))
    assert images.shape == (1, 3, 16, 16) and masks.shape == (1, 16, 16)
    images, masks = next(iter(train))
    assert images.shape == (2, 3, 16, 16) and masks.dtype == torch.long
