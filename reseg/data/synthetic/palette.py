"""Random colours for the scene's surfaces, drawn from families that overlap between classes on purpose."""

from __future__ import annotations

import colorsys

import numpy as np

Color = tuple[int, int, int]


def hsv(rng: np.random.Generator, h: tuple[float, float], s: tuple[float, float], v: tuple[float, float]) -> Color:
    """An RGB colour with hue, saturation and value drawn (in that order) from the given ranges."""
    r, g, b = colorsys.hsv_to_rgb(rng.uniform(*h) % 1.0, rng.uniform(*s), rng.uniform(*v))
    return (int(r * 255), int(g * 255), int(b * 255))


def shade(c: Color, k: float) -> Color:
    """`c` darkened (k < 1) or lightened (k > 1), clipped to 8 bits."""
    return tuple(int(min(255, max(0, v * k))) for v in c)  # type: ignore[return-value]


def mix(a: Color, b: Color, t: float) -> Color:
    """The colour a fraction `t` of the way from `a` to `b`."""
    return tuple(int(x + (y - x) * t) for x, y in zip(a, b))  # type: ignore[return-value]


def building_color(rng: np.random.Generator) -> Color:
    family = rng.integers(5)
    if family == 0:
        return hsv(rng, (0.0, 0.06), (0.35, 0.7), (0.3, 0.7))  # brick
    if family == 1:
        return hsv(rng, (0.07, 0.15), (0.12, 0.45), (0.55, 0.92))  # sandstone / beige
    if family == 2:
        return hsv(rng, (0.0, 1.0), (0.0, 0.08), (0.3, 0.92))  # concrete grey / white
    if family == 3:
        return hsv(rng, (0.0, 1.0), (0.12, 0.35), (0.6, 0.95))  # painted pastel
    return hsv(rng, (0.0, 1.0), (0.0, 0.3), (0.15, 0.35))  # dark


def vehicle_color(rng: np.random.Generator) -> Color:
    if rng.random() < 0.45:
        return hsv(rng, (0.0, 1.0), (0.0, 0.08), (0.08, 0.95))  # black, greys, silver, white
    return hsv(rng, (0.0, 1.0), (0.35, 0.95), (0.2, 0.85))


def any_color(rng: np.random.Generator) -> Color:
    return hsv(rng, (0.0, 1.0), (0.0, 0.85), (0.08, 0.9))


def foliage(rng: np.random.Generator, autumn: bool) -> Color:
    if autumn:
        return hsv(rng, (0.02, 0.13), (0.45, 0.85), (0.3, 0.75))
    return hsv(rng, (0.16, 0.4), (0.3, 0.8), (0.12, 0.55))
