"""TouchingCells: the offline cell data set of chapter 3 (U-Net)."""

import numpy as np
import pytest
import torch
from scipy import ndimage
from torch.utils.data import DataLoader
from torchvision import tv_tensors

from segedu.data import CELL_CLASSES, TouchingCells
from segedu.unet import weight_map


def test_samples_have_the_course_format():
    ds = TouchingCells("train", size=64, length=4)
    image, mask = ds[0]
    assert isinstance(image, tv_tensors.Image) and isinstance(mask, tv_tensors.Mask)
    assert image.shape == (1, 64, 64) and image.dtype == torch.float32
    assert 0 <= image.min() and image.max() <= 1
    assert mask.shape == (64, 64) and mask.dtype == torch.long
    assert set(mask.unique().tolist()) <= {0, 1}
    assert ds.num_classes == 2 and ds.classes == CELL_CLASSES


def test_samples_are_deterministic_per_index_whatever_the_access_order():
    a = TouchingCells("train", length=6)
    b = TouchingCells("train", length=6, cache=False)
    later = b[5]
    for i in (5, 0, 3):
        torch.testing.assert_close(a[i][0], b[i][0])
        torch.testing.assert_close(a.instances(i), b.instances(i))
    torch.testing.assert_close(later[0], a[5][0])
    assert not torch.equal(TouchingCells("val", length=1)[0][0], a[0][0])
    assert not torch.equal(TouchingCells("train", length=1, seed=1)[0][0], a[0][0])


def test_instances_agree_with_the_mask_and_are_numbered_from_one():
    ds = TouchingCells("train", length=8)
    for i in range(8):
        ids = ds.instances(i)
        torch.testing.assert_close((ids > 0).long(), ds[i][1].as_subclass(torch.Tensor))
        present = ids.unique().tolist()
        assert present == list(range(len(present)))  # 0, 1, ..., K: no holes in the ids
        assert len(present) - 1 >= 1


def test_touching_cells_are_separated_by_background():
    # No pixel of a cell has an 8-neighbour in another cell, and many images have cells
    # whose gap is at most 2 pixels: the case U-Net's weight map is for.
    ds = TouchingCells("train", length=32)
    close = 0
    for i in range(len(ds)):
        ids = ds.instances(i).numpy()
        grown = ndimage.grey_dilation(ids, size=3)
        assert not ((ids > 0) & (grown > 0) & (grown != ids)).any()
        cells = ids > 0
        merged, n = ndimage.label(ndimage.binary_closing(cells, iterations=2) | cells)
        close += n < len(np.unique(ids)) - 1  # closing a 2-px gap merges touching cells
    assert close >= len(ds) // 2


def test_weight_maps_match_unet_weight_map_and_batch():
    ds = TouchingCells("train", length=4, weight_map=weight_map)
    image, mask, weights = ds[1]
    torch.testing.assert_close(weights, weight_map(ds.instances(1)))
    assert weights.max() > 5  # the border term in the narrow gaps
    images, masks, maps = next(iter(DataLoader(ds, batch_size=4)))
    assert images.shape == (4, 1, 64, 64) and masks.shape == maps.shape == (4, 64, 64)


def test_bad_arguments_are_rejected_clearly():
    with pytest.raises(ValueError, match="split"):
        TouchingCells("test")
    with pytest.raises(ValueError, match="at least 32"):
        TouchingCells(size=16)
    with pytest.raises(ValueError, match="max_cells"):
        TouchingCells(max_cells=2)
    with pytest.raises(IndexError):
        TouchingCells(length=3)[3]
