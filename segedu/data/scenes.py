"""ShapeScenes: an offline set where the class is decided by *shape*, never by colour.

What it isolates: **shape**. The classes are :class:`~segedu.data.SyntheticShapes`' (background,
circle, square, triangle, ring), but colour and texture carry no class information:

* every region, the background and each object, is painted by the *same* function
  (:func:`textured_paint`) with parameters drawn from the *same* distribution whatever its class:
  a base colour with hue uniform on the colour wheel, saturation and brightness uniform in
  fixed ranges, and a second colour with a random hue offset, mixed by a random texture (stripes,
  a checkerboard, smooth blobs or fine noise) of random period and orientation. So the colour of
  a pixel, and the texture around it, have the same distribution in every class, background
  included: a colour-only classifier can do no better than calling everything background;
* an object differs from what lies behind it only at its outline: its base hue is the
  background's turned by 40 to 320 degrees (so the two never share a hue, and because the
  background's hue is uniform, so is the object's: exactly the same distribution), so what a
  model must learn is the outline's *shape*: round, four corners, three corners, or round with
  a hole;
* **several scales**: object radii are log-uniform from ``size/16`` to ``size/3`` (``scale_range``
  widens it: the scale-range task);
* **partial occlusion**: 1..``max_shapes`` objects, drawn in the painter's order, later ones on
  top; the mask follows the painter's order, so a half-hidden square is still a square where it
  shows;
* **thin parts**: a ring's band is 15% to 50% of its outer radius (down to ~1.5 pixels on a small
  ring), and triangles have sharp corners, which coarse predictions round off;
* anti-aliased edges, with the 1-pixel band of mixed pixels labelled 255 (``ignore_boundary``),
  a shading gradient on every object, mild noise, 8-bit quantisation.

Chapter 0 measures what that buys: a per-pixel colour classifier and a windowed one (colour
statistics in windows around the pixel) against a network that sees shapes.

Deterministic like every :class:`~segedu.data.synthetic.SyntheticSet`: sample ``i`` of a split is
the same image whatever the access order, rendered in under 2 ms at 64x64 and cached.
"""

from __future__ import annotations

import numpy as np

from .synthetic import (
    SHAPE_CLASSES,
    Shape,
    SyntheticSet,
    draw_object,
    finish_sample,
    hsv,
    pixel_grid,
    signed_distance,
    upsample_matrix,
)
from .transforms import Transforms

__all__ = ["ShapeScenes", "textured_paint", "TEXTURES"]

#: The texture families :func:`textured_paint` draws from (each equally likely, for every class).
TEXTURES = ("stripes", "checker", "blobs", "grain")

# Colour ranges shared by every region (background and objects alike).
_SATURATION = (0.25, 0.9)
_VALUE = (0.25, 0.95)


def textured_paint(rng: np.random.Generator, size: int,
                   hue: float | None = None) -> tuple[np.ndarray, np.ndarray]:
    """A (3, size, size) textured image, and its base colour as (hue degrees, saturation, value).

    The base colour has hue ``hue`` (degrees; drawn uniformly when None) and saturation and
    value uniform in the shared ranges; a second
    colour (hue offset by up to 60 degrees, brightness shifted by up to 0.3) is mixed in by one
    of :data:`TEXTURES` at a random period, orientation and strength. ShapeScenes paints the
    background and every object with this function, whatever their class.
    """
    h = rng.uniform(0, 360) if hue is None else float(hue) % 360
    s, v = rng.uniform(*_SATURATION), rng.uniform(*_VALUE)
    first = hsv(h, s, v)
    second = hsv(h + rng.uniform(-60, 60), rng.uniform(*_SATURATION),
                 float(np.clip(v + rng.uniform(-0.3, 0.3), 0.05, 1.0)))
    xs, ys = pixel_grid(size)
    kind = TEXTURES[int(rng.integers(len(TEXTURES)))]
    theta, phase = rng.uniform(0, np.pi), rng.uniform(0, 2 * np.pi)
    period = size * rng.uniform(1 / 16, 1 / 6)
    if kind == "stripes":
        u = xs * np.cos(theta) + ys * np.sin(theta)
        t = 0.5 + 0.5 * np.sin(u * (2 * np.pi / period) + phase)
    elif kind == "checker":
        u = xs * np.cos(theta) + ys * np.sin(theta)
        w = -xs * np.sin(theta) + ys * np.cos(theta)
        t = 0.5 + 0.5 * np.sin(u * (np.pi / period) + phase) * np.sin(w * (np.pi / period))
    elif kind == "blobs":
        nodes = int(rng.integers(4, 9))
        up = upsample_matrix(size, nodes)
        t = up @ rng.uniform(0, 1, size=(nodes, nodes)).astype(np.float32) @ up.T
    else:  # grain: fine per-pixel noise
        t = rng.uniform(0, 1, size=(size, size)).astype(np.float32)
    strength = rng.uniform(0.3, 1.0)
    t = (strength * t).astype(np.float32)
    image = first[:, None, None] * (1 - t) + second[:, None, None] * t
    return image.astype(np.float32), np.array([h, s, v], dtype=np.float32)


class ShapeScenes(SyntheticSet):
    """Textured circles, squares, triangles and rings on textured backgrounds, colour
    independent of class: only the shape of an outline tells the class (see the module
    docstring for what it isolates and why colour says nothing).

    Args:
        split: ``"train"`` or ``"val"``.
        size: height and width in pixels (at least 32).
        length: number of samples; default 512 for train, 128 for val.
        seed: selects a different (but again deterministic) data set.
        transforms: called as ``transforms(image, mask)``.
        max_shapes: at most this many objects per image (at least 1).
        scale_range: (smallest, largest) object radius as a fraction of ``size``; radii are
            log-uniform between them. Default ``(1/16, 1/3)``.
        ignore_boundary: label the 1-pixel band of mixed pixels around each outline 255.
        cache: keep generated samples (8-bit) in memory.

    Returns (from ``dataset[i]``):
        ``(image, mask)``: ``tv_tensors.Image`` (3, H, W) float32 in [0, 1] and
        ``tv_tensors.Mask`` (H, W) long, after ``transforms`` if given.
    """

    classes = SHAPE_CLASSES

    def __init__(
        self,
        split: str = "train",
        size: int = 64,
        length: int | None = None,
        seed: int = 0,
        transforms: Transforms | None = None,
        max_shapes: int = 4,
        scale_range: tuple[float, float] = (1 / 16, 1 / 3),
        ignore_boundary: bool = True,
        cache: bool = True,
    ) -> None:
        super().__init__(split, size, length, seed, transforms, cache, min_size=32)
        if max_shapes < 1:
            raise ValueError(f"max_shapes must be at least 1, got {max_shapes}.")
        low, high = (float(r) for r in scale_range)
        if not 0 < low <= high <= 0.5:
            raise ValueError(
                f"scale_range must be (smallest, largest) radius as fractions of the image side "
                f"with 0 < smallest <= largest <= 0.5, got {scale_range}; e.g. (1/16, 1/3).")
        self.max_shapes = int(max_shapes)
        self.scale_range = (low, high)
        self.ignore_boundary = ignore_boundary

    def layout(self, index: int) -> list[Shape]:
        """The objects drawn into sample ``index``, bottom to top (``Shape.rgb`` is the base
        colour of the object's paint)."""
        return self._scene(self._check_index(index))[0]

    def _scene(self, index: int):
        """Draw sample ``index``'s layout, paints and ring holes, in a fixed order of draws."""
        rng, size = self._rng(index), self.size
        background, bg_colour = textured_paint(rng, size)
        r_min = max(self.scale_range[0] * size, 2.0)
        r_max = max(self.scale_range[1] * size, r_min)
        shapes, paints, holes = [], [], []
        for _ in range(rng.integers(1, self.max_shapes + 1)):
            label = int(rng.integers(1, len(self.classes)))
            radius = float(np.exp(rng.uniform(np.log(r_min), np.log(r_max))))
            hole = 0.0
            if SHAPE_CLASSES[label] == "ring":
                radius = max(radius, 5.0)  # room for a visible hole and band
                hole = radius * (1 - rng.uniform(0.15, 0.5))  # band: 15-50% of the radius
            margin = 0.85 * min(radius, size / 2)  # a little of an object may leave the image
            cx, cy = rng.uniform(margin, size - 1 - margin, size=2)
            angle = float(rng.uniform(0, 2 * np.pi))
            # Another hue than the background's (uniform, as the background's is uniform).
            paint, colour = textured_paint(rng, size, hue=bg_colour[0] + rng.uniform(40, 320))
            rgb = tuple(hsv(*colour.tolist()).tolist())
            shapes.append(Shape(label, float(cx), float(cy), radius, angle, rgb))
            paints.append(paint)
            holes.append(hole)
        return shapes, paints, holes, background, rng

    def _render(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        """Draw sample ``index``: the image (3, S, S) uint8 and the mask (S, S) uint8."""
        shapes, paints, holes, image, rng = self._scene(index)
        size = self.size
        label = np.zeros((size, size), dtype=np.uint8)
        boundary = np.zeros((size, size), dtype=bool)
        xs, ys = pixel_grid(size)
        # The background gets a shading gradient too (as strong across the image as an
        # object's across itself), so brightness gradients say nothing about the class either.
        gx, gy = rng.normal(size=2) * (rng.uniform(0.05, 0.15) / (size / 2))
        image = image * (1 + gx * (xs - size / 2) + gy * (ys - size / 2))
        for shape, paint, hole in zip(shapes, paints, holes, strict=True):
            dist = signed_distance(shape, SHAPE_CLASSES[shape.label], hole, size)
            image = draw_object(image, label, boundary, shape, dist, paint, rng)
        return finish_sample(image, label, boundary, rng, self.ignore_boundary)
