"""SmallObjects: an offline set where one class is rare, for chapter 7's losses.

What it isolates: **class imbalance**. Each image holds one or two large discs ("blob", about
8% of the pixels) and a few specks of radius 1-2 pixels ("speck", about 1%), on a dull textured
background (about 91%). Objects and specks draw their colours from the *same* distribution
(saturated and bright, any hue), so colour tells object from background but never blob from
speck: only size does. A loss that averages over pixels (cross-entropy) is dominated by the
background; Dice and Focal re-weight towards the rare class. Per-class IoU, not mIoU alone,
shows which class a loss helped. Deterministic: sample ``i`` is the same everywhere.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from .synthetic import SyntheticSet, hsv, pixel_grid, upsample_matrix

__all__ = ["IMBALANCE_CLASSES", "SmallObjects"]

#: The classes of :class:`SmallObjects`, frequent to rare.
IMBALANCE_CLASSES = ("background", "blob", "speck")


class SmallObjects(SyntheticSet):
    """Large blobs and tiny specks of the same colours on a dull background.

    Args:
        split: ``"train"`` or ``"val"`` (different samples).
        size: image side in pixels (at least 16).
        length: number of samples (default 512 train, 128 val).
        seed: changes every sample.
        transforms: called as ``transforms(image, mask)``.
        specks: (min, max) number of specks per image.
    """

    classes = IMBALANCE_CLASSES

    def __init__(self, split: str = "train", size: int = 64, length: int | None = None,
                 seed: int = 0, transforms: Callable | None = None,
                 specks: tuple[int, int] = (3, 7), cache: bool = True) -> None:
        super().__init__(split, size, length, seed, transforms, cache, min_size=16)
        self.specks = specks

    def _render(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        rng, s = self._rng(index), self.size
        xs, ys = pixel_grid(s)
        base = hsv(rng.uniform(0, 360), rng.uniform(0.0, 0.3), rng.uniform(0.3, 0.6))
        up = upsample_matrix(s, 4)
        image = base[:, None, None] + up @ rng.uniform(-0.12, 0.12, (3, 4, 4)).astype(
            np.float32) @ up.T
        label = np.zeros((s, s), dtype=np.uint8)
        objects = [(1, rng.uniform(0.10, 0.16) * s) for _ in range(rng.integers(1, 3))]
        objects += [(2, rng.uniform(1.0, 2.0)) for _ in range(rng.integers(*self.specks))]
        for cls, radius in objects:
            cx, cy = rng.uniform(radius + 1, s - radius - 1, size=2)
            colour = hsv(rng.uniform(0, 360), rng.uniform(0.6, 1.0), rng.uniform(0.7, 1.0))
            dist = np.hypot(xs - cx, ys - cy) - radius
            alpha = np.clip(0.5 - dist, 0.0, 1.0)[None]
            image = image * (1 - alpha) + colour[:, None, None] * alpha
            label[dist < 0] = cls
        image = image + rng.standard_normal(image.shape).astype(np.float32) * 0.02
        return (np.clip(image, 0, 1) * 255 + 0.5).astype(np.uint8), label
