"""Objects that only context can name: a boat on water, a car on a road (chapter 4, PSPNet)."""

from __future__ import annotations

import numpy as np
from torchvision import tv_tensors

from .synthetic import SyntheticSet, hsv, pixel_grid, upsample_matrix
from .transforms import Transforms

__all__ = [
    "CONTEXT_CLASSES",
    "CONTEXT_SCENES",
    "ContextShapes",
]


#: The classes of :class:`ContextShapes`: the same object is a boat on water, a car on a road.
CONTEXT_CLASSES = ("background", "boat", "car")

#: The two scenes of :class:`ContextShapes` and the class an object gets in each.
CONTEXT_SCENES = {"water": 1, "road": 2}


class ContextShapes(SyntheticSet):
    """One vehicle-like object in a patch of fog, on water (a "boat") or on a road (a "car").

    The confusion of the PSPNet paper's Fig. 2, made exact: the object's pixels are drawn from
    a random stream that does not depend on the scene, so the *same* object, pixel for pixel,
    is labelled ``boat`` in a water scene and ``car`` in a road scene (:meth:`in_scene` renders
    one sample in either). Around the object lies a patch of fog, ``margin`` pixels wide and
    also independent of the scene: whatever sees only the object and its surroundings up to
    ``margin`` pixels away cannot tell the two classes apart (it is right half the time). The
    scene shows only further out, towards the image border:

    * **water**: blue-green, with wavy horizontal ripples;
    * **road**: grey asphalt with speckle and a dashed lane marking;
    * **object**: an elongated rounded rectangle of random colour, length and angle, with a
      darker "cabin" on it; anti-aliased edges (the label follows the pixel centre);
    * **fog**: a soft, light, low-saturation disk of radius ``object radius + margin``;
    * Gaussian noise and 8-bit quantisation, as in :class:`SyntheticShapes`.

    Scenes alternate: even indices are water, odd ones road, so every split is balanced.

    Args:
        split: ``"train"`` or ``"val"``.
        size: height and width in pixels (at least 32).
        length: number of samples; default 512 for train, 128 for val.
        seed: selects a different (but again deterministic) data set.
        transforms: called as ``transforms(image, mask)``.
        margin: width of the fog around the object, in pixels (0: the scene touches the object).
        cache: keep generated samples in memory.

    Returns (from ``dataset[i]``):
        ``(image, mask)``: ``tv_tensors.Image`` (3, H, W) float32 in [0, 1] and
        ``tv_tensors.Mask`` (H, W) long: 0 background (water, road, fog), 1 boat, 2 car.
    """

    classes = CONTEXT_CLASSES

    def __init__(
        self,
        split: str = "train",
        size: int = 64,
        length: int | None = None,
        seed: int = 0,
        transforms: Transforms | None = None,
        margin: float = 12.0,
        cache: bool = True,
    ) -> None:
        super().__init__(split, size, length, seed, transforms, cache, min_size=32)
        if margin < 0:
            raise ValueError(f"margin must be >= 0 pixels, got {margin}.")
        self.margin = float(margin)

    def scene(self, index: int) -> str:
        """``"water"`` (even indices) or ``"road"`` (odd indices)."""
        return "water" if self._check_index(index) % 2 == 0 else "road"

    def __getitem__(self, index: int) -> tuple[tv_tensors.Image, tv_tensors.Mask]:
        return self.in_scene(index, self.scene(index))

    def in_scene(self, index: int, scene: str) -> tuple[tv_tensors.Image, tv_tensors.Mask]:
        """Sample ``index`` rendered in ``scene`` (``"water"`` or ``"road"``): the object and
        the fog are the same pixels in both; only the scene around them and the label differ."""
        if scene not in CONTEXT_SCENES:
            raise ValueError(f"scene must be one of {tuple(CONTEXT_SCENES)}, got {scene!r}.")
        index = self._check_index(index)
        return self._sample((index, scene), lambda: self._render(index, scene))

    # -- generation ----------------------------------------------------------------------------

    def _scene(self, scene: str, rng: np.random.Generator) -> np.ndarray:
        """A (3, S, S) water or road background."""
        size = self.size
        xs, ys = pixel_grid(size)
        up = upsample_matrix(size, 4)
        if scene == "water":
            base = hsv(rng.uniform(180, 220), rng.uniform(0.45, 0.8), rng.uniform(0.4, 0.7))
            image = base[:, None, None] + up @ rng.uniform(-0.06, 0.06, (3, 4, 4)) @ up.T
            period, phase = rng.uniform(4, 7), rng.uniform(0, 2 * np.pi)
            wobble = 1.5 * np.sin(xs * rng.uniform(0.15, 0.3) + rng.uniform(0, 2 * np.pi))
            ripples = np.sin((ys + wobble) * (2 * np.pi / period) + phase)
            tint = np.array([0.6, 1.0, 1.0])[:, None, None]  # ripples are bluish-white
            return image + rng.uniform(0.04, 0.08) * ripples * tint
        grey = rng.uniform(0.25, 0.45)
        image = np.full((3, size, size), grey) + rng.uniform(-0.02, 0.02, (3, 1, 1))
        image = image + up @ rng.uniform(-0.04, 0.04, (4, 4)) @ up.T  # uneven asphalt
        image = image + rng.normal(0, 0.04, (1, size, size))  # speckle, the same in R, G, B
        # a dashed lane marking along a random direction through the image
        theta = rng.uniform(0, np.pi)
        across = (xs - size / 2) * np.sin(theta) - (ys - size / 2) * np.cos(theta)
        along = (xs - size / 2) * np.cos(theta) + (ys - size / 2) * np.sin(theta)
        offset, dash = rng.uniform(-size / 3, size / 3), rng.uniform(5, 9)
        line = (np.abs(across - offset) < 1.2) & (np.mod(along, 2 * dash) < dash)
        return np.where(line, np.float32(rng.uniform(0.8, 0.95)), image)

    def _render(self, index: int, scene: str) -> tuple[np.ndarray, np.ndarray]:
        """Draw sample ``index`` in ``scene``: image (3, S, S) uint8 and mask (S, S) uint8."""
        size = self.size
        # Three independent streams: the object (and fog), the scene, the noise. The object's
        # stream does not depend on the scene, so its pixels are the same in both.
        obj_rng = np.random.default_rng([self.seed, self._SPLITS[self.split], index, 0])
        scene_rng = np.random.default_rng([self.seed, self._SPLITS[self.split], index,
                                           1 + CONTEXT_SCENES[scene]])
        xs, ys = pixel_grid(size)

        length = obj_rng.uniform(size / 6, size / 4)        # half-length, half-width in pixels
        half_w = length * obj_rng.uniform(0.4, 0.6)
        cx, cy = obj_rng.uniform(size * 0.3, size * 0.7, size=2)
        angle = obj_rng.uniform(0, np.pi)
        u = (xs - cx) * np.cos(angle) + (ys - cy) * np.sin(angle)
        v = -(xs - cx) * np.sin(angle) + (ys - cy) * np.cos(angle)
        corner = 0.35 * half_w  # rounded-rectangle signed distance
        qu, qv = np.abs(u) - (length - corner), np.abs(v) - (half_w - corner)
        dist = (np.hypot(np.maximum(qu, 0), np.maximum(qv, 0))
                + np.minimum(np.maximum(qu, qv), 0) - corner)
        body = hsv(obj_rng.uniform(0, 360), obj_rng.uniform(0.5, 0.9), obj_rng.uniform(0.55, 0.9))
        cabin_at = obj_rng.uniform(-0.3, 0.3) * length
        cabin = (np.abs(u - cabin_at) < 0.35 * length) & (np.abs(v) < 0.55 * half_w)
        colour = np.where(cabin, body[:, None, None] * 0.45, body[:, None, None])
        fog_colour = hsv(obj_rng.uniform(0, 360), obj_rng.uniform(0.0, 0.1),
                          obj_rng.uniform(0.7, 0.85))
        fog_texture = obj_rng.normal(0, 0.02, (1, size, size)).astype(np.float32)
        radius = np.hypot(length, half_w)

        image = self._scene(scene, scene_rng)
        fog = np.clip((radius + self.margin - np.hypot(xs - cx, ys - cy)) / 3 + 0.5, 0, 1)
        image = image * (1 - fog) + (fog_colour[:, None, None] + fog_texture) * fog
        alpha = np.clip(0.5 - dist, 0.0, 1.0)  # anti-aliased edge
        image = image * (1 - alpha) + colour * alpha
        label = np.where(dist < 0, CONTEXT_SCENES[scene], 0).astype(np.uint8)
        image = image + obj_rng.normal(0, 0.02, image.shape)  # noise: same stream, same pixels
        image_u8 = (np.clip(image, 0.0, 1.0) * 255 + 0.5).astype(np.uint8)
        return image_u8, label
