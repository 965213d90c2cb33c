"""Chapter 7's data: the joint augmentation, SmallObjects, and the real data sets read from tiny
fake copies of their on-disk layouts (no network): VOC 2012 + SBD, Oxford-IIIT Pet, Cityscapes."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.io
import torch
from PIL import Image
from torchvision import tv_tensors

from segedu.data import (
    CITYSCAPES_CLASSES,
    Cityscapes,
    DatasetUnavailableError,
    OxfordPet,
    SmallObjects,
    VOCAugmented,
    VOCSegmentation,
    load_dataset,
    train_transforms,
)

# --- joint augmentation --------------------------------------------------------------------


@pytest.mark.parametrize("seed", range(6))
def test_augmentation_never_invents_a_label_value(seed):
    torch.manual_seed(seed)
    g = torch.Generator().manual_seed(seed)
    mask = torch.randint(0, 3, (37, 45), generator=g)
    mask[:5] = 255
    image = tv_tensors.Image(torch.rand(3, 37, 45, generator=g))
    out_image, out_mask = train_transforms(32)(image, tv_tensors.Mask(mask))
    assert out_image.shape == (3, 32, 32) and out_mask.shape == (32, 32)
    assert out_mask.dtype == torch.long
    assert set(out_mask.unique().tolist()) <= {0, 1, 2, 255}


def test_augmentation_pads_masks_with_255_and_images_with_0():
    torch.manual_seed(0)
    image = tv_tensors.Image(torch.ones(3, 16, 16))
    mask = tv_tensors.Mask(torch.ones(16, 16, dtype=torch.long))
    t = train_transforms(64, scale=(0.5, 0.5), hflip=0, color_jitter=None, normalize=False)
    out_image, out_mask = t(image, mask)
    padded = out_mask == 255
    assert padded.float().mean() == 0.75  # the 32x32 scaled image fills a quarter of 64x64
    assert torch.all(out_image[:, padded] == 0) and torch.all(out_mask[~padded] == 1)


def test_a_plain_tensor_mask_is_refused_not_left_untransformed():
    image = tv_tensors.Image(torch.rand(3, 40, 40))
    with pytest.raises(ValueError, match="tv_tensors.Mask"):
        train_transforms(32)(image, torch.zeros(40, 40, dtype=torch.long))


def test_colour_jitter_touches_the_image_only():
    torch.manual_seed(0)
    mask = tv_tensors.Mask(torch.randint(0, 3, (32, 32)))
    t = train_transforms(32, scale=(1.0, 1.0), hflip=0, color_jitter=0.8, normalize=False)
    image, out_mask = t(tv_tensors.Image(torch.rand(3, 32, 32)), mask)
    assert torch.equal(out_mask, mask)


# --- SmallObjects --------------------------------------------------------------------------


def test_small_objects_is_deterministic_and_imbalanced():
    a, b = SmallObjects("train", size=48, length=32), SmallObjects("train", size=48, length=32)
    masks = torch.stack([a[i][1] for i in range(32)])
    assert torch.equal(masks, torch.stack([b[i][1] for i in range(32)]))
    share = torch.bincount(masks.flatten(), minlength=3) / masks.numel()
    assert share[0] > 0.8 and 0.03 < share[1] < 0.2 and 0.002 < share[2] < 0.03
    assert not torch.equal(SmallObjects("val", size=48, length=1)[0][1], masks[0])


# --- fake layouts --------------------------------------------------------------------------


def _palette_png(indices, path):
    png = Image.frombytes("P", indices.shape[::-1], indices.tobytes())
    png.putpalette([0, 0, 0] * 256)
    png.save(path)


def _write_voc(root, train=("2008_000001", "2008_000002"), val=("2008_000003",)):
    base = root / "VOCdevkit" / "VOC2012"
    for folder in ("JPEGImages", "SegmentationClass", "ImageSets/Segmentation"):
        (base / folder).mkdir(parents=True, exist_ok=True)
    mask = np.zeros((12, 16), np.uint8)
    mask[3:9, 4:12] = 255
    mask[4:8, 5:11] = 15
    for image_id in train + val:
        Image.fromarray(np.full((12, 16, 3), 90, np.uint8)).save(base / "JPEGImages" /
                                                                 f"{image_id}.jpg")
        _palette_png(mask, base / "SegmentationClass" / f"{image_id}.png")
    (base / "ImageSets/Segmentation/train.txt").write_text("\n".join(train) + "\n")
    (base / "ImageSets/Segmentation/val.txt").write_text("\n".join(val) + "\n")
    return base


def _write_sbd(root, train=("2008_000002", "2008_000004"), val=("2008_000003", "2008_000005")):
    base = root / "sbd"
    (base / "img").mkdir(parents=True)
    (base / "cls").mkdir()
    for image_id in train + val:
        Image.fromarray(np.full((12, 16, 3), 30, np.uint8)).save(base / "img" / f"{image_id}.jpg")
        seg = np.zeros((12, 16), np.uint8)
        seg[2:6, 2:6] = 7  # a "car", no boundary band in SBD
        scipy.io.savemat(base / "cls" / f"{image_id}.mat", {"GTcls": {"Segmentation": seg}})
    (base / "train.txt").write_text("\n".join(train) + "\n")
    (base / "val.txt").write_text("\n".join(val) + "\n")


def _write_cityscapes(root, split="train"):
    base = root / "cityscapes"
    images, labels = base / "leftImg8bit" / split / "aachen", base / "gtFine" / split / "aachen"
    images.mkdir(parents=True)
    labels.mkdir(parents=True)
    ids = np.array([[7, 8, 11, 26], [24, 0, 1, 33], [23, 23, 4, 255]], np.uint8)  # 4 = static
    for stem in ("aachen_000000_000019", "aachen_000001_000019"):
        Image.fromarray(np.full((3, 4, 3), 50, np.uint8)).save(images / f"{stem}_leftImg8bit.png")
        Image.fromarray(ids).save(labels / f"{stem}_gtFine_labelIds.png")
    return ids


def test_voc_plus_sbd_is_voc_train_and_sbd_without_voc_val(tmp_path):
    _write_voc(tmp_path)
    _write_sbd(tmp_path)
    data = VOCAugmented(tmp_path)
    # VOC train 01, 02 (VOC's masks) + SBD 04, 05; SBD 02 is a duplicate, 03 is VOC val.
    assert len(data) == 4
    image, mask = data[2]
    assert image.shape == (3, 12, 16) and mask.dtype == torch.long
    assert set(mask.unique().tolist()) == {0, 7}
    assert 255 in data[1][1].unique().tolist()  # VOC's own mask, with its boundary band
    assert isinstance(load_dataset("voc_aug", "train", tmp_path, fallback=False), VOCAugmented)


def test_voc_without_sbd_says_where_to_get_it(tmp_path):
    _write_voc(tmp_path)
    with pytest.raises(DatasetUnavailableError, match="Berkeley"):
        VOCAugmented(tmp_path)


def test_missing_voc_names_the_mirrors(tmp_path):
    with pytest.raises(DatasetUnavailableError) as info:
        VOCSegmentation(tmp_path)
    assert "pjreddie.com" in str(info.value) and "host.robots.ox.ac.uk" in str(info.value)


def test_a_half_downloaded_voc_is_unavailable_and_names_a_missing_file(tmp_path):
    base = _write_voc(tmp_path)
    (base / "SegmentationClass" / "2008_000002.png").unlink()
    with pytest.raises(DatasetUnavailableError,
                       match="1 of 4 listed files are missing.*2008_000002"):
        VOCSegmentation(tmp_path)


def test_a_corrupt_mask_names_the_file(tmp_path):
    base = _write_voc(tmp_path)
    (base / "SegmentationClass" / "2008_000001.png").write_bytes(b"\x89PNG truncated")
    data = VOCSegmentation(tmp_path)
    with pytest.raises(ValueError, match="2008_000001.png"):
        data[0]
    data[1]  # the others still load


def test_cityscapes_label_ids_become_train_ids_and_the_rest_255(tmp_path):
    ids = _write_cityscapes(tmp_path)
    data = Cityscapes(tmp_path, "train")
    assert len(data) == 2 and data.num_classes == 19 == len(CITYSCAPES_CLASSES)
    _, mask = data[0]
    expected = torch.tensor([[0, 1, 2, 13], [11, 255, 255, 18], [10, 10, 255, 255]])
    assert torch.equal(mask, expected), ids
    assert CITYSCAPES_CLASSES[13] == "car"


def test_missing_cityscapes_says_to_register(tmp_path):
    with pytest.raises(DatasetUnavailableError, match="cityscapes-dataset.com"):
        Cityscapes(tmp_path, "val")


def test_a_corrupt_pet_image_names_the_file(tmp_path):
    base = tmp_path / "oxford-iiit-pet"
    (base / "images").mkdir(parents=True)
    (base / "annotations" / "trimaps").mkdir(parents=True)
    (base / "images" / "Abyssinian_1.jpg").write_bytes(b"not a jpeg")
    trimap = base / "annotations" / "trimaps" / "Abyssinian_1.png"
    Image.fromarray(np.full((4, 4), 2, np.uint8)).save(trimap)
    (base / "annotations" / "trainval.txt").write_text("Abyssinian_1 1 1 1\n")
    with pytest.raises(ValueError, match="Abyssinian_1.jpg"):
        OxfordPet(tmp_path)[0]
