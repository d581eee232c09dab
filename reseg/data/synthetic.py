"""Procedural street scenes with CamVid's 11 classes: the dataset that works with no download.

A small 3-D street (road, markings, sidewalks, buildings with windows, trees, poles, signs,
fences, cars, pedestrians, cyclists) is laid out in world coordinates and projected through a
pinhole camera with random height, focal length, horizon and yaw, then drawn back to front so
near things occlude far ones. Colours overlap between classes (grey cars on grey roads, grey
buildings, clothes of any colour) and lighting, shadows, haze, texture noise and blur vary, so a
model has to learn shape and context rather than a colour lookup.

Every image depends only on (seed, split, index, difficulty), so a dataset is reproducible and can
be drawn in parallel. It is written in the CamVid SegNet layout and read back by the CamVid loader.

Two difficulties share the renderer: "standard" (people and cyclists up to 60 m away, 10-28 cm
poles, haze, blur, sensor noise) and "easy", which the CPU demo trains on: the same streets with
the small classes nearer, thicker and more frequent, and a clean camera, so that every class is
learnable at 120x160 in a few CPU minutes.
"""

from __future__ import annotations

import colorsys
import json
import logging
import math
import os
import shlex
import shutil
import time
from collections.abc import Callable, Collection
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from reseg.data.classes import CAMVID, CAMVID_VOID_LABEL
from reseg.errors import ResegError
from reseg.io import replace_dir

log = logging.getLogger("reseg.data")

SKY, BUILDING, POLE, ROAD, PAVEMENT, TREE, SIGN, FENCE, CAR, PEDESTRIAN, BICYCLIST = range(11)
VOID = CAMVID_VOID_LABEL
assert CAMVID.names[CAR] == "Car" and CAMVID.names[PAVEMENT] == "Pavement"

GENERATOR_VERSION = 1
META_FILE = "synthetic.json"
SPLITS = ("train", "val", "test")
# The data.* keys that say how to generate the set; a mismatch with synthetic.json is warned about.
SYNTHETIC_KEYS = ("synthetic_sizes", "synthetic_size", "synthetic_seed", "synthetic_difficulty")
_WARNED: set[tuple[str, str]] = set()  # (root, message): a warning is given once per process
Z_NEAR = 0.5        # metres in front of the camera where geometry is clipped
_PNG = [cv2.IMWRITE_PNG_COMPRESSION, 1]

Color = tuple[int, int, int]


@dataclass(frozen=True)
class Difficulty:
    """What makes a scene hard: how far and how thin the small classes are, and how poor the camera is.

    "standard" reproduces the generator's original distributions exactly (same random draws, same
    images); other levels change only these numbers.
    """

    person_far: float = 60.0        # metres: farthest pedestrian / cyclist / crossing person
    cyclist_far: float = 55.0
    crossing_far: float = 40.0
    car_far: float = 90.0
    pole_far: float = 1e9           # poles and signs are placed up to this distance
    pole_gap: float = 1.0           # multiplier of the spacing between poles
    thin_scale: float = 1.0         # multiplier of pole width, sign size and fence height
    crowd: float = 1.0              # multiplier of the number of pedestrians
    cyclists: float = 1.0           # multiplier of the number of cyclists
    fence_p: float = 0.35           # chance of a fence along each side
    max_noise: float = 7.0          # sensor noise (std of 8-bit values) is drawn from [1, max_noise]
    texture: float = 1.0            # multiplier of surface texture
    effects: bool = True            # haze, blur, vignette, camera roll, car bonnet


DIFFICULTIES: dict[str, Difficulty] = {
    "standard": Difficulty(),
    "easy": Difficulty(person_far=22.0, cyclist_far=24.0, crossing_far=20.0, car_far=45.0, pole_far=45.0,
                       pole_gap=0.6, thin_scale=2.2, crowd=2.0, cyclists=2.5, fence_p=0.7, max_noise=3.0,
                       texture=0.6, effects=False),
}


def get_difficulty(name: str) -> Difficulty:
    try:
        return DIFFICULTIES[name]
    except KeyError:
        raise ResegError(f"unknown synthetic difficulty {name!r}; valid choices: {', '.join(DIFFICULTIES)}") from None


# --------------------------------------------------------------------------- colours

def _hsv(rng: np.random.Generator, h: tuple[float, float], s: tuple[float, float],
         v: tuple[float, float]) -> Color:
    r, g, b = colorsys.hsv_to_rgb(rng.uniform(*h) % 1.0, rng.uniform(*s), rng.uniform(*v))
    return (int(r * 255), int(g * 255), int(b * 255))


def _shade(c: Color, k: float) -> Color:
    return tuple(int(min(255, max(0, v * k))) for v in c)  # type: ignore[return-value]


def _mix(a: Color, b: Color, t: float) -> Color:
    return tuple(int(x + (y - x) * t) for x, y in zip(a, b))  # type: ignore[return-value]


def _building_color(rng: np.random.Generator) -> Color:
    family = rng.integers(5)
    if family == 0:
        return _hsv(rng, (0.0, 0.06), (0.35, 0.7), (0.3, 0.7))      # brick
    if family == 1:
        return _hsv(rng, (0.07, 0.15), (0.12, 0.45), (0.55, 0.92))  # sandstone / beige
    if family == 2:
        return _hsv(rng, (0.0, 1.0), (0.0, 0.08), (0.3, 0.92))      # concrete grey / white
    if family == 3:
        return _hsv(rng, (0.0, 1.0), (0.12, 0.35), (0.6, 0.95))     # painted pastel
    return _hsv(rng, (0.0, 1.0), (0.0, 0.3), (0.15, 0.35))          # dark


def _vehicle_color(rng: np.random.Generator) -> Color:
    if rng.random() < 0.45:
        return _hsv(rng, (0.0, 1.0), (0.0, 0.08), (0.08, 0.95))     # black, greys, silver, white
    return _hsv(rng, (0.0, 1.0), (0.35, 0.95), (0.2, 0.85))


def _any_color(rng: np.random.Generator) -> Color:
    return _hsv(rng, (0.0, 1.0), (0.0, 0.85), (0.08, 0.9))


def _foliage(rng: np.random.Generator, autumn: bool) -> Color:
    if autumn:
        return _hsv(rng, (0.02, 0.13), (0.45, 0.85), (0.3, 0.75))
    return _hsv(rng, (0.16, 0.4), (0.3, 0.8), (0.12, 0.55))


# --------------------------------------------------------------------------- camera and canvas

@dataclass
class Camera:
    """Pinhole camera looking down +Z; Y is up, the ground is Y = 0, X is to the right."""

    f: float
    cx: float
    horizon: float
    height: float
    x: float = 0.0
    z: float = 0.0

    def uv(self, x: float, y: float, z: float) -> tuple[float, float]:
        zr = z - self.z
        return self.cx + self.f * (x - self.x) / zr, self.horizon + self.f * (self.height - y) / zr

    def scale(self, z: float) -> float:
        """Pixels per metre at world depth z."""
        return self.f / (z - self.z)


def _clip_near(pts: list[tuple[float, float, float]], zc: float) -> list[tuple[float, float, float]]:
    """Clip a planar polygon against the plane z = zc (keeps z >= zc)."""
    out = []
    n = len(pts)
    for i in range(n):
        a, b = pts[i], pts[(i + 1) % n]
        a_in, b_in = a[2] >= zc, b[2] >= zc
        if a_in:
            out.append(a)
        if a_in != b_in:
            t = (zc - a[2]) / (b[2] - a[2])
            out.append((a[0] + t * (b[0] - a[0]), a[1] + t * (b[1] - a[1]), zc))
    return out


class Canvas:
    """An RGB image and its label map drawn together; label None draws on the image only."""

    def __init__(self, height: int, width: int, cam: Camera) -> None:
        self.h, self.w, self.cam = height, width, cam
        self.img = np.zeros((height, width, 3), np.uint8)
        self.lab = np.full((height, width), SKY, np.uint8)
        self.shadow = np.zeros((height, width), np.uint8)

    @staticmethod
    def _pts(uv: Any) -> np.ndarray:
        # 4 fractional bits (shift=4); geometry is clipped at Z_NEAR, so coordinates stay small
        return (np.asarray(uv, np.float64) * 16 + 0.5).astype(np.int32)

    def polys_array(self, quads: np.ndarray, color: Color) -> None:
        """Image-only fill of N x K x 2 pixel polygons in one call (windows, paving)."""
        if len(quads):
            cv2.fillPoly(self.img, list((quads * 16 + 0.5).astype(np.int32)), color, cv2.LINE_AA, 4)

    def poly(self, uv: Any, color: Color, label: int | None) -> None:
        p = self._pts(uv)
        if len(p) < 3:
            return
        cv2.fillPoly(self.img, [p], color, cv2.LINE_AA, 4)
        if label is not None:
            cv2.fillPoly(self.lab, [p], int(label), cv2.LINE_8, 4)

    def polys(self, uvs: list[Any], color: Color, label: int | None) -> None:
        ps = [self._pts(uv) for uv in uvs if len(uv) >= 3]
        if ps:
            cv2.fillPoly(self.img, ps, color, cv2.LINE_AA, 4)
            if label is not None:
                cv2.fillPoly(self.lab, ps, int(label), cv2.LINE_8, 4)

    def quad3d(self, pts: list[tuple[float, float, float]], color: Color, label: int | None) -> None:
        pts = _clip_near(pts, self.cam.z + Z_NEAR)
        if len(pts) >= 3:
            self.poly([self.cam.uv(*p) for p in pts], color, label)

    def project(self, pts: list[tuple[float, float, float]]) -> list[tuple[float, float]]:
        pts = _clip_near(pts, self.cam.z + Z_NEAR)
        return [self.cam.uv(*p) for p in pts] if len(pts) >= 3 else []

    def shadow_quad(self, pts: list[tuple[float, float, float]]) -> None:
        uv = self.project(pts)
        if uv:
            cv2.fillPoly(self.shadow, [self._pts(uv)], 255, cv2.LINE_AA, 4)

    def ellipse(self, c: tuple[float, float], axes: tuple[float, float], angle: float, color: Color,
                label: int | None) -> None:
        cc = (int(round(c[0] * 16)), int(round(c[1] * 16)))
        ax = (max(1, int(round(axes[0] * 16))), max(1, int(round(axes[1] * 16))))
        cv2.ellipse(self.img, cc, ax, angle, 0, 360, color, -1, cv2.LINE_AA, 4)
        if label is not None:
            cv2.ellipse(self.lab, cc, ax, angle, 0, 360, int(label), -1, cv2.LINE_8, 4)

    def line(self, a: tuple[float, float], b: tuple[float, float], thick: float, color: Color,
             label: int | None) -> None:
        pa = (int(round(a[0] * 16)), int(round(a[1] * 16)))
        pb = (int(round(b[0] * 16)), int(round(b[1] * 16)))
        t = max(1, int(round(thick)))
        cv2.line(self.img, pa, pb, color, t, cv2.LINE_AA, 4)
        if label is not None:
            cv2.line(self.lab, pa, pb, int(label), t, cv2.LINE_8, 4)

    def ring(self, c: tuple[float, float], r: float, thick: float, color: Color, label: int | None) -> None:
        cc = (int(round(c[0] * 16)), int(round(c[1] * 16)))
        t = max(1, int(round(thick)))
        cv2.circle(self.img, cc, max(1, int(round(r * 16))), color, t, cv2.LINE_AA, 4)
        if label is not None:
            cv2.circle(self.lab, cc, max(1, int(round(r * 16))), int(label), t, cv2.LINE_8, 4)


def _rect(u0: float, v0: float, u1: float, v1: float) -> list[tuple[float, float]]:
    return [(u0, v0), (u1, v0), (u1, v1), (u0, v1)]


# --------------------------------------------------------------------------- scene objects

@dataclass
class Obj:
    """Something standing on the ground at (x, z), drawn at its depth; `vz` moves it along the road."""

    kind: str
    x: float
    z: float
    vz: float = 0.0
    p: dict[str, Any] = field(default_factory=dict)

    def zt(self, t: float) -> float:
        return self.z + self.vz * t


def _draw_car(cv: Canvas, o: Obj, z: float) -> None:
    cam, p = cv.cam, o.p
    w, length, h, hb = p["w"], p["len"], p["h"], p["hb"]
    if z - cam.z < Z_NEAR + 0.3:
        return
    x0, x1 = o.x - w / 2, o.x + w / 2
    zn, zf = z, z + length
    body, dark, glass = p["color"], _shade(p["color"], 0.7), p["glass"]
    inset = 0.0 if p["boxy"] else 0.18 * w
    cab0, cab1 = (zn + 0.25 * length, zf - 0.2 * length) if not p["boxy"] else (zn, zf)
    # the side facing the camera
    xs = x0 if o.x > cam.x else x1
    if abs(o.x - cam.x) > w / 2:
        xi = xs + (inset if xs == x0 else -inset)
        cv.quad3d([(xs, 0.3, zn), (xs, hb, zn), (xs, hb, zf), (xs, 0.3, zf)], dark, CAR)
        if p["boxy"]:
            cv.quad3d([(xs, hb, zn), (xs, h, zn), (xs, h, zf), (xs, hb, zf)], dark, CAR)
            cv.quad3d([(xs, hb + 0.1, zn + 0.3), (xs, h - 0.2, zn + 0.3), (xs, h - 0.2, zn + 0.3 + 0.35 * length),
                       (xs, hb + 0.1, zn + 0.3 + 0.35 * length)], glass, None)
        else:
            cv.quad3d([(xs, hb, zn + 0.1 * length), (xi, h, cab0), (xi, h, cab1), (xs, hb, zf - 0.05 * length)],
                      dark, CAR)
            cv.quad3d([(xs, hb + 0.05, zn + 0.17 * length), (xi, h - 0.08, cab0 + 0.05),
                       (xi, h - 0.08, cab1 - 0.05), (xs, hb + 0.05, zf - 0.12 * length)], glass, None)
        r = p["wheel"]
        for zw in (zn + 0.18 * length, zf - 0.18 * length):
            ring = [(xs, r + r * math.sin(a), zw + r * math.cos(a)) for a in np.linspace(0, 2 * math.pi, 12, False)]
            cv.quad3d(ring, (20, 20, 22), CAR)
    # the near face (rear, or front of an oncoming car)
    cv.quad3d([(x0, 0.3, zn), (x1, 0.3, zn), (x1, hb, zn), (x0, hb, zn)], body, CAR)
    top = [(x0 + inset, h, zn + (0.25 * length if not p["boxy"] else 0)),
           (x1 - inset, h, zn + (0.25 * length if not p["boxy"] else 0))]
    cv.quad3d([(x0, hb, zn), (x1, hb, zn), top[1], top[0]], body, CAR)
    g = 0.12 * w
    cv.quad3d([(x0 + g, hb + 0.06, zn), (x1 - g, hb + 0.06, zn),
               (top[1][0] - g * 0.5, h - 0.1, top[1][2]), (top[0][0] + g * 0.5, h - 0.1, top[0][2])], glass, None)
    for xa, xb in ((x0, x0 + 0.28), (x1 - 0.28, x1)):
        cv.quad3d([(xa, 0.0, zn + 0.05), (xb, 0.0, zn + 0.05), (xb, 0.32, zn + 0.05), (xa, 0.32, zn + 0.05)],
                  (18, 18, 20), CAR)
    light = (255, 250, 225) if p["oncoming"] else (200, 25, 20)
    ly = hb - 0.22
    for xa, xb in ((x0 + 0.05, x0 + 0.3), (x1 - 0.3, x1 - 0.05)):
        cv.quad3d([(xa, ly, zn), (xb, ly, zn), (xb, ly + 0.12, zn), (xa, ly + 0.12, zn)], light, None)
    cv.quad3d([(o.x - 0.25, 0.42, zn), (o.x + 0.25, 0.42, zn), (o.x + 0.25, 0.54, zn), (o.x - 0.25, 0.54, zn)],
              p["plate"], None)
    # shadow under the car
    cv.shadow_quad([(x0 - 0.1, 0.0, zn - 0.2), (x1 + 0.1, 0.0, zn - 0.2), (x1 + 0.1, 0.0, zf), (x0 - 0.1, 0.0, zf)])


def _person_shape(cv: Canvas, u: float, v: float, s: float, p: dict[str, Any], label: int,
                  legs: bool = True) -> None:
    """A standing or walking person whose feet are at (u, v); s = pixels per metre."""
    h = p["h"] * s
    head_r = 0.115 * p["h"] / 1.75 * s
    sh = v - 0.82 * h              # shoulder row
    hip = v - 0.5 * h
    half_sh, half_hip = 0.2 * p["h"] / 1.75 * s * p["bulk"], 0.15 * p["h"] / 1.75 * s * p["bulk"]
    limb = max(1.0, 0.11 * s * p["bulk"])
    stride = p["stride"] * 0.5 * h
    if legs:
        cv.line((u - half_hip * 0.5, hip), (u - half_hip * 0.4 - stride * 0.35, v - limb * 0.5), limb * 1.1,
                p["legs"], label)
        cv.line((u + half_hip * 0.5, hip), (u + half_hip * 0.4 + stride * 0.35, v - limb * 0.5), limb * 1.1,
                p["legs"], label)
    swing = p["stride"] * 0.3 * h
    cv.line((u - half_sh * 0.9, sh + limb * 0.5), (u - half_sh * 1.05 + swing * 0.4, hip + 0.04 * h), limb * 0.9,
            p["top"], label)
    cv.line((u + half_sh * 0.9, sh + limb * 0.5), (u + half_sh * 1.05 - swing * 0.4, hip + 0.04 * h), limb * 0.9,
            p["top"], label)
    coat = p["coat"]
    bottom = hip + (0.22 * h if coat else 0.02 * h)
    cv.poly([(u - half_sh, sh), (u + half_sh, sh), (u + half_hip * (1.4 if coat else 1.0), bottom),
             (u - half_hip * (1.4 if coat else 1.0), bottom)], p["top"], label)
    cv.line((u, sh), (u, sh - 0.04 * h), max(1.0, head_r * 0.7), p["skin"], label)
    cv.ellipse((u, sh - 0.04 * h - head_r * 0.9), (head_r * 0.85, head_r), 0, p["skin"], label)
    cv.ellipse((u, sh - 0.04 * h - head_r * 1.25), (head_r * 0.85, head_r * 0.6), 0, p["hair"], label)
    if p["bag"]:
        cv.poly(_rect(u + half_sh * 0.9, hip - 0.05 * h, u + half_sh * 0.9 + 0.18 * s, hip + 0.12 * h),
                p["bag_color"], label)


def _draw_person(cv: Canvas, o: Obj, z: float) -> None:
    s = cv.cam.scale(z)
    if s * o.p["h"] < 3:
        return
    u, v = cv.cam.uv(o.x, 0.0, z)
    _person_shape(cv, u, v, s, o.p, PEDESTRIAN)
    if o.p.get("umbrella"):
        cv.ellipse((u, v - (o.p["h"] + 0.25) * s), (0.55 * s, 0.22 * s), 0, o.p["umbrella"], PEDESTRIAN)


def _draw_cyclist(cv: Canvas, o: Obj, z: float) -> None:
    cam, p = cv.cam, o.p
    s = cam.scale(z)
    if s < 2:
        return
    u, v = cam.uv(o.x, 0.0, z)
    r = 0.34 * s
    frame, thick = p["frame"], max(1.0, 0.05 * s)
    if p["side"]:
        d = p["dir"] * 0.55 * s
        wb, wf = (u - d, v - r), (u + d, v - r)
        cv.ring(wb, r, max(1.0, 0.07 * s), (25, 25, 25), BICYCLIST)
        cv.ring(wf, r, max(1.0, 0.07 * s), (25, 25, 25), BICYCLIST)
        seat = (u - d * 0.3, v - 0.95 * s)
        bars = (u + d * 0.75, v - 1.05 * s)
        crank = (u, v - r)
        for a, b in ((wb, crank), (crank, seat), (seat, wb), (crank, (u + d * 0.7, v - 0.9 * s)), (bars, wf),
                     ((u + d * 0.7, v - 0.9 * s), seat)):
            cv.line(a, b, thick, frame, BICYCLIST)
        rider = dict(p, h=p["h"] * 0.62, stride=0.0, bag=False, coat=False)
        hip_v = seat[1]
        _person_shape(cv, seat[0] + d * 0.1, hip_v + 0.5 * rider["h"] * s, s, rider, BICYCLIST, legs=False)
        cv.line((seat[0], hip_v), (u + d * 0.1, v - r * 1.3), max(1.0, 0.1 * s), p["legs"], BICYCLIST)
        cv.line((u + d * 0.1, v - r * 1.3), (u + d * 0.15, v - r * 0.6), max(1.0, 0.09 * s), p["legs"], BICYCLIST)
        sh_v = hip_v - 0.6 * rider["h"] * s * 0.55
        cv.line((seat[0] + d * 0.2, sh_v), bars, max(1.0, 0.08 * s), p["top"], BICYCLIST)
    else:  # seen from behind: a thin wheel, a wide rider
        cv.poly(_rect(u - 0.04 * s, v - 2 * r, u + 0.04 * s, v), (25, 25, 25), BICYCLIST)
        cv.line((u - 0.3 * s, v - 1.05 * s), (u + 0.3 * s, v - 1.05 * s), thick, frame, BICYCLIST)
        rider = dict(p, h=p["h"] * 0.9, stride=0.0, bag=False, coat=False)
        _person_shape(cv, u, v - 0.3 * s, s, rider, BICYCLIST)


def _draw_pole(cv: Canvas, o: Obj, z: float) -> None:
    cam, p = cv.cam, o.p
    s = cam.scale(z)
    if s * p["h"] < 4:
        return
    u, v = cam.uv(o.x, 0.0, z)
    hw = max(0.6, p["w"] * s / 2)
    top = v - p["h"] * s
    cv.poly(_rect(u - hw, top, u + hw, v), p["color"], POLE)
    if p["kind"] == "lamp":
        tip = cam.uv(o.x - p["side"] * p["arm"], p["h"], z)
        cv.line((u, top), tip, max(1.0, p["w"] * 0.6 * s), p["color"], POLE)
        cv.poly(_rect(tip[0] - 0.25 * s, tip[1], tip[0] + 0.25 * s, tip[1] + 0.15 * s), (60, 60, 60), POLE)
        cv.poly(_rect(tip[0] - 0.2 * s, tip[1] + 0.12 * s, tip[0] + 0.2 * s, tip[1] + 0.18 * s),
                (250, 245, 200) if p["lit"] else (190, 190, 180), POLE)
    for sign in p["signs"]:
        cy = v - sign["y"] * s
        r = sign["size"] / 2 * s
        if sign["back"]:
            cv.poly(_rect(u - r, cy - r, u + r, cy + r), (150, 150, 155), SIGN)
            continue
        shape, c1, c2 = sign["shape"], sign["c1"], sign["c2"]
        if shape == "circle":
            cv.ellipse((u, cy), (r, r), 0, c1, SIGN)
            cv.ellipse((u, cy), (r * 0.72, r * 0.72), 0, c2, SIGN)
        elif shape == "triangle":
            k = -1 if sign["down"] else 1
            tri = [(u, cy - k * r), (u + r, cy + k * r * 0.75), (u - r, cy + k * r * 0.75)]
            cv.poly(tri, c1, SIGN)
            cv.poly([(u + (x - u) * 0.6, cy + (y - cy) * 0.6) for x, y in tri], c2, None)
        elif shape == "octagon":
            octo = [(u + r * math.cos(a), cy + r * math.sin(a)) for a in np.linspace(math.pi / 8, 2 * math.pi, 8, False)]
            cv.poly(octo, c1, SIGN)
            cv.poly(_rect(u - r * 0.6, cy - r * 0.15, u + r * 0.6, cy + r * 0.15), (250, 250, 250), None)
        elif shape == "light":
            cv.poly(_rect(u - 0.7 * r, cy - 1.6 * r, u + 0.7 * r, cy + 1.6 * r), (30, 32, 30), SIGN)
            on = sign["on"]
            for i, c in enumerate(((220, 30, 20), (230, 170, 20), (30, 200, 80))):
                cc = c if i == on else _shade(c, 0.3)
                cv.ellipse((u, cy - 1.05 * r + i * 1.05 * r), (0.42 * r, 0.42 * r), 0, cc, SIGN)
        else:  # rectangle, possibly with "text"
            cv.poly(_rect(u - r * 1.3, cy - r, u + r * 1.3, cy + r), c1, SIGN)
            cv.poly(_rect(u - r * 1.1, cy - r * 0.8, u + r * 1.1, cy + r * 0.8), c2, None)
            for k in range(3):
                yy = cy - r * 0.45 + k * r * 0.45
                cv.line((u - r * 0.8, yy), (u + r * (0.2 + 0.2 * k), yy), max(1.0, r * 0.15), c1, None)


def _draw_tree(cv: Canvas, o: Obj, z: float) -> None:
    cam, p = cv.cam, o.p
    s = cam.scale(z)
    if s * (p["trunk_h"] + p["crown"]) < 4:
        return
    u, v = cam.uv(o.x, 0.0, z)
    tw = max(1.0, p["trunk_w"] * s)
    cv.poly([(u - tw / 2, v), (u + tw / 2, v), (u + tw * 0.35, v - p["trunk_h"] * s * 1.1),
             (u - tw * 0.35, v - p["trunk_h"] * s * 1.1)], p["bark"], TREE)
    cy = v - (p["trunk_h"] + p["crown"] * 0.5) * s
    for bx, by, rx, ry, c in p["blobs"]:
        cv.ellipse((u + bx * s, cy + by * s), (rx * s, ry * s), 0, c, TREE)


def _draw_clutter(cv: Canvas, o: Obj, z: float) -> None:
    cam, p = cv.cam, o.p
    s = cam.scale(z)
    if s * p["h"] < 2:
        return
    u, v = cam.uv(o.x, 0.0, z)
    hw = p["w"] * s / 2
    if p["round"]:
        cv.poly(_rect(u - hw, v - p["h"] * s, u + hw, v), p["color"], VOID)
        cv.ellipse((u, v - p["h"] * s), (hw, hw * 0.35), 0, _shade(p["color"], 1.2), VOID)
    else:
        cv.poly(_rect(u - hw, v - p["h"] * s, u + hw, v), p["color"], VOID)
        cv.poly(_rect(u - hw, v - p["h"] * s, u + hw, v - p["h"] * s * 0.85), _shade(p["color"], 0.7), VOID)


_DRAW: dict[str, Callable[[Canvas, Obj, float], None]] = {
    "car": _draw_car, "person": _draw_person, "cyclist": _draw_cyclist, "pole": _draw_pole,
    "tree": _draw_tree, "clutter": _draw_clutter,
}


# --------------------------------------------------------------------------- the street

@dataclass
class Street:
    """World layout of one scene (metres); images are renders of it from a camera."""

    cam: Camera
    road_w: float
    walk_w: tuple[float, float]          # left, right sidewalk widths
    sky: dict[str, Any]
    colors: dict[str, Color]
    buildings: list[dict[str, Any]]
    backdrop: dict[str, Any]
    fences: list[dict[str, Any]]
    hedges: list[dict[str, Any]]
    markings: dict[str, Any]
    patches: list[tuple[float, float, float, float, Color]]
    objects: list[Obj]
    light: dict[str, Any]


def make_street(rng: np.random.Generator, size: tuple[int, int], length: float = 0.0,
                difficulty: Difficulty = DIFFICULTIES["standard"]) -> Street:
    """Lay out a random street; `length` extra metres ahead leave room for a moving camera."""
    D = difficulty
    h, w = size
    road_w = float(rng.uniform(3.0, 7.5))
    lanes = max(1, int(round(2 * road_w / 3.4)))
    lane_w = 2 * road_w / lanes
    lane_centers = [-road_w + lane_w * (i + 0.5) for i in range(lanes)]
    cam_lane = [c for c in lane_centers if c > 0] or lane_centers
    cam = Camera(f=float(w * rng.uniform(0.65, 1.15)), cx=float(w * rng.uniform(0.32, 0.68)),
                 horizon=float(h * rng.uniform(0.34, 0.55)), height=float(rng.uniform(1.1, 2.3)),
                 x=float(rng.choice(cam_lane) + rng.uniform(-0.6, 0.6)))
    walk_w = (float(rng.uniform(1.5, 5.0)), float(rng.uniform(1.5, 5.0)))
    far = 160.0 + length
    # sky
    kind = rng.choice(["clear", "overcast", "dusk", "hazy"], p=[0.45, 0.3, 0.12, 0.13])
    if kind == "clear":
        sky = {"top": _hsv(rng, (0.55, 0.63), (0.35, 0.8), (0.55, 0.95)), "bottom": _hsv(rng, (0.52, 0.6), (0.05, 0.3), (0.8, 1.0))}
    elif kind == "overcast":
        sky = {"top": _hsv(rng, (0, 1), (0.0, 0.06), (0.5, 0.85)), "bottom": _hsv(rng, (0, 1), (0.0, 0.05), (0.7, 0.97))}
    elif kind == "dusk":
        sky = {"top": _hsv(rng, (0.58, 0.7), (0.3, 0.7), (0.25, 0.55)), "bottom": _hsv(rng, (0.02, 0.12), (0.35, 0.8), (0.75, 1.0))}
    else:
        sky = {"top": _hsv(rng, (0.1, 0.6), (0.0, 0.2), (0.7, 0.95)), "bottom": _hsv(rng, (0.1, 0.6), (0.0, 0.1), (0.85, 1.0))}
    sky["clouds"] = [(float(rng.uniform(0, 1)), float(rng.uniform(0, 1)), float(rng.uniform(0.05, 0.25)),
                      float(rng.uniform(0.02, 0.07))) for _ in range(int(rng.integers(0, 8)))]
    sky["cloud"] = _mix(sky["bottom"], (250, 250, 250), float(rng.uniform(0.3, 0.9)))
    sky["kind"] = str(kind)
    # ground colours overlap on purpose: grey road, grey pavement, grey buildings
    asphalt = _hsv(rng, (0, 1), (0.0, 0.1), (0.22, 0.55))
    colors = {
        "road": asphalt,
        "walk": _hsv(rng, (0.0, 0.13), (0.0, 0.35), (0.35, 0.8)),
        "yard": _hsv(rng, (0.0, 0.15), (0.0, 0.3), (0.3, 0.75)),
        "curb": _hsv(rng, (0, 1), (0.0, 0.08), (0.55, 0.9)),
        "marking": (235, 235, 230) if rng.random() < 0.75 else (230, 190, 40),
        "tile": _shade(asphalt, 0.8),
    }
    colors["tile"] = _shade(colors["walk"], float(rng.uniform(0.75, 0.9)))
    # buildings along both sides, far to near
    buildings: list[dict[str, Any]] = []
    for side in (-1, 1):
        z = float(rng.uniform(-15, -5))
        base = walk_w[0 if side < 0 else 1]
        while z < far:
            seg = float(rng.uniform(6, 28))
            if rng.random() < 0.2:
                z += float(rng.uniform(3, 15))          # a gap: the back row or the sky shows through
                continue
            color = _building_color(rng)
            floors = int(rng.integers(1, 8))
            b = {
                "side": side, "x": _side_x_raw(road_w, side, base + float(rng.uniform(0, 2.5)) if rng.random() < 0.5 else base),
                "z0": z, "z1": z + seg, "h": floors * float(rng.uniform(2.8, 3.6)) + float(rng.uniform(0, 2)),
                "color": color, "floor_h": float(rng.uniform(2.8, 3.6)), "win_w": float(rng.uniform(0.8, 1.8)),
                "win_gap": float(rng.uniform(1.0, 3.0)), "win_h": float(rng.uniform(1.0, 1.8)),
                "win_color": _hsv(rng, (0.5, 0.7), (0.0, 0.4), (0.05, 0.45)) if rng.random() < 0.7
                else _hsv(rng, (0.5, 0.65), (0.05, 0.3), (0.6, 0.95)),
                "lit": float(rng.uniform(0, 0.3)), "shop": rng.random() < 0.45,
                "shop_color": _any_color(rng), "sign": rng.random() < 0.5, "sign_color": _any_color(rng),
                "sign_text": _any_color(rng), "trim": _shade(color, float(rng.uniform(0.6, 1.3))),
            }
            buildings.append(b)
            z += seg
    backdrop = {
        "end": float(rng.uniform(50, 150)) + length if rng.random() < 0.35 else None,
        "end_h": float(rng.uniform(8, 35)), "end_color": _building_color(rng),
        "back_rows": [(_building_color(rng), float(rng.uniform(6, 30)) if rng.random() < 0.7 else 0.0)
                      for _ in range(12)],
        "treeline": rng.random() < 0.35, "tree_color": _foliage(rng, rng.random() < 0.15),
        "skyline": [(float(rng.uniform(-1, 1)), float(rng.uniform(0.02, 0.12)), float(rng.uniform(0.01, 0.08)),
                     _building_color(rng)) for _ in range(int(rng.integers(0, 10)))],
    }
    markings = {
        "center": rng.random() < 0.8, "dash": float(rng.uniform(1.5, 4)), "period": float(rng.uniform(6, 12)),
        "phase": float(rng.uniform(0, 10)), "edge": rng.random() < 0.6, "lanes": lane_centers,
        "lane_lines": rng.random() < 0.5,
        "crossing": float(rng.uniform(6, 35)) if rng.random() < 0.3 else None,
        "width": float(rng.uniform(0.1, 0.2)),
    }
    patches = []
    for _ in range(int(rng.integers(0, 6))):
        x0 = float(rng.uniform(-road_w, road_w - 1))
        z0 = float(rng.uniform(3, 60))
        patches.append((x0, z0, float(rng.uniform(0.5, 3)), float(rng.uniform(1, 8)),
                        _shade(asphalt, float(rng.uniform(0.7, 1.3)))))
    fences, hedges = [], []
    for side in (-1, 1):
        ww = walk_w[0 if side < 0 else 1]
        if rng.random() < D.fence_p:
            z0 = float(rng.uniform(-5, 40))
            fences.append({"side": side, "x": _side_x_raw(road_w, side, ww if rng.random() < 0.7 else 0.25),
                           "z0": z0, "z1": z0 + float(rng.uniform(8, 60)) + length,
                           "h": float(rng.uniform(0.8, 1.8)) * D.thin_scale ** 0.5,
                           "kind": str(rng.choice(["rail", "picket", "panel"])),
                           "color": _any_color(rng) if rng.random() < 0.5 else _hsv(rng, (0, 1), (0, 0.1), (0.1, 0.8)),
                           "post_gap": float(rng.uniform(1.5, 3.0))})
        if rng.random() < 0.25:
            z0 = float(rng.uniform(-5, 40))
            hedges.append({"side": side, "x": _side_x_raw(road_w, side, ww - 0.3), "z0": z0,
                           "z1": z0 + float(rng.uniform(5, 30)) + length, "h": float(rng.uniform(0.6, 1.6)),
                           "color": _foliage(rng, False), "bumps": rng.uniform(-0.2, 0.2, 64).tolist()})
    objects = _populate(rng, road_w, walk_w, lane_centers, cam, far, D)
    light = {
        "sun": int(rng.choice([-1, 1])), "sun_shade": float(rng.uniform(0.55, 0.9)),
        "shadow": rng.random() < 0.5 and kind != "overcast", "shadow_w": float(rng.uniform(2, 2 * road_w + 4)),
        "shadow_k": float(rng.uniform(0.3, 0.6)),
        "gain": float(rng.uniform(0.65, 1.25)), "gamma": float(rng.uniform(0.75, 1.35)),
        "cast": rng.uniform(0.88, 1.12, 3).tolist(), "noise": float(rng.uniform(1.0, D.max_noise)),
        "texture": float(rng.uniform(0.5, 1.6)) * D.texture,
        "blur": float(rng.uniform(0.4, 1.3)) if rng.random() < 0.35 and D.effects else 0.0,
        "haze": float(rng.uniform(0.2, 0.6)) if rng.random() < 0.25 and D.effects else 0.0,
        "vignette": float(rng.uniform(0.1, 0.4)) if rng.random() < 0.3 and D.effects else 0.0,
        "field": rng.uniform(0.78, 1.15, (3, 4)).astype(np.float32),
        "roll": float(rng.uniform(-4, 4)) if rng.random() < 0.3 and D.effects else 0.0,
        "hood": float(rng.uniform(0.06, 0.14)) if rng.random() < 0.08 and D.effects else 0.0,
    }
    return Street(cam, road_w, walk_w, sky, colors, buildings, backdrop, fences, hedges, markings, patches,
                  objects, light)


def _side_x_raw(road_w: float, side: int, offset: float) -> float:
    """X of a line `offset` metres outside the road edge on `side` (-1 left, +1 right)."""
    return side * (road_w + offset)


def _person_params(rng: np.random.Generator, child: bool = False) -> dict[str, Any]:
    skin = _hsv(rng, (0.03, 0.09), (0.25, 0.65), (0.3, 0.95))
    return {
        "h": float(rng.uniform(1.0, 1.35) if child else rng.uniform(1.55, 1.95)), "bulk": float(rng.uniform(0.85, 1.25)),
        "skin": skin, "hair": _hsv(rng, (0.02, 0.12), (0.1, 0.8), (0.05, 0.6)) if rng.random() < 0.85 else _any_color(rng),
        "top": _any_color(rng), "legs": _any_color(rng) if rng.random() < 0.4 else _hsv(rng, (0.55, 0.7), (0.0, 0.5), (0.1, 0.45)),
        "stride": float(rng.uniform(-0.35, 0.35)), "coat": rng.random() < 0.3, "bag": rng.random() < 0.25,
        "bag_color": _any_color(rng),
        "umbrella": _any_color(rng) if rng.random() < 0.06 else None,
    }


def _populate(rng: np.random.Generator, road_w: float, walk_w: tuple[float, float], lanes: list[float],
              cam: Camera, far: float, D: Difficulty) -> list[Obj]:
    objs: list[Obj] = []
    z_lo, z_hi = cam.z + 2.0, min(far, cam.z + 110.0) + (far - 160.0)
    for side in (-1, 1):
        ww = walk_w[0 if side < 0 else 1]
        # street lamps and sign posts near the curb
        if rng.random() < 0.85:
            z = float(rng.uniform(-5, 15))
            gap = float(rng.uniform(12, 32)) * D.pole_gap
            while z < min(z_hi, D.pole_far):
                signs = []
                kind = "lamp" if rng.random() < 0.6 else "post"
                n_signs = int(rng.integers(1, 3)) if kind == "post" else int(rng.random() < 0.25)
                for k in range(n_signs):
                    shape = str(rng.choice(["circle", "triangle", "rect", "octagon", "light"],
                                           p=[0.3, 0.2, 0.3, 0.05, 0.15]))
                    c1 = [(200, 30, 30), (30, 70, 170), (240, 240, 240), (30, 120, 60), (240, 190, 30)][int(rng.integers(5))]
                    c2 = [(245, 245, 245), (30, 70, 170), (250, 210, 40), (30, 30, 30)][int(rng.integers(4))]
                    signs.append({"shape": shape, "c1": c1, "c2": c2, "size": float(rng.uniform(0.45, 0.9)) * D.thin_scale,
                                  "y": float(rng.uniform(2.0, 3.2)) + k * 0.95, "down": rng.random() < 0.3,
                                  "on": int(rng.integers(3)), "back": rng.random() < 0.12})
                objs.append(Obj("pole", _side_x_raw(road_w, side, float(rng.uniform(0.3, 0.7))), z, 0.0, {
                    "kind": kind, "h": float(rng.uniform(5, 10) if kind == "lamp" else rng.uniform(2.6, 4.2)),
                    "w": float(rng.uniform(0.1, 0.28)) * D.thin_scale, "side": side, "arm": float(rng.uniform(0.8, 2.5)),
                    "lit": rng.random() < 0.3, "signs": signs,
                    "color": _hsv(rng, (0, 1), (0, 0.15), (0.1, 0.75)) if rng.random() < 0.8 else _any_color(rng)}))
                z += gap * float(rng.uniform(0.6, 1.4))
        # street trees
        if rng.random() < 0.6:
            z = float(rng.uniform(-3, 10))
            gap = float(rng.uniform(6, 16))
            autumn = rng.random() < 0.2
            while z < z_hi:
                crown = float(rng.uniform(2.0, 6.0))
                spread = crown * float(rng.uniform(0.35, 0.6))
                base = _foliage(rng, autumn)
                blobs = [(float(rng.uniform(-spread, spread) * 0.6), float(rng.uniform(-crown, crown) * 0.3),
                          float(spread * rng.uniform(0.45, 0.8)), float(crown * rng.uniform(0.25, 0.45)),
                          _shade(base, float(rng.uniform(0.7, 1.25)))) for _ in range(int(rng.integers(4, 9)))]
                objs.append(Obj("tree", _side_x_raw(road_w, side, ww * float(rng.uniform(0.4, 0.95))), z, 0.0, {
                    "trunk_h": float(rng.uniform(1.5, 3.5)), "trunk_w": float(rng.uniform(0.15, 0.45)),
                    "crown": crown, "blobs": blobs, "bark": _hsv(rng, (0.04, 0.1), (0.2, 0.6), (0.12, 0.45))}))
                z += gap * float(rng.uniform(0.7, 1.3))
        # parked cars along the curb
        if rng.random() < 0.5:
            z = float(rng.uniform(0, 12))
            while z < min(z_hi, cam.z + D.car_far):
                objs.append(_car(rng, side * (road_w - 1.15), z, 0.0, oncoming=False))
                z += objs[-1].p["len"] + float(rng.uniform(0.8, 12))
        # pedestrians on the sidewalk
        for _ in range(int(rng.poisson(2.2 * D.crowd))):
            child = rng.random() < 0.12
            objs.append(Obj("person", _side_x_raw(road_w, side, float(rng.uniform(0.4, max(0.5, ww - 0.3)))),
                            float(rng.uniform(z_lo, D.person_far)), float(rng.choice([-1.3, 1.3]) * rng.uniform(0.6, 1.1)),
                            _person_params(rng, child)))
        # bins, bollards, boxes: CamVid's void
        for _ in range(int(rng.poisson(0.8))):
            objs.append(Obj("clutter", _side_x_raw(road_w, side, float(rng.uniform(0.2, ww))),
                            float(rng.uniform(z_lo, 50)), 0.0,
                            {"w": float(rng.uniform(0.2, 0.9)), "h": float(rng.uniform(0.5, 1.3)),
                             "round": rng.random() < 0.5, "color": _any_color(rng)}))
    # traffic
    for _ in range(int(rng.poisson(2.5))):
        lane = float(rng.choice(lanes))
        oncoming = lane < 0 and len(lanes) > 1
        speed = float(rng.uniform(3, 14)) * (-1 if oncoming else 1)
        objs.append(_car(rng, lane + float(rng.uniform(-0.4, 0.4)), float(rng.uniform(cam.z + 5, D.car_far)), speed,
                         oncoming))
    for _ in range(int(rng.poisson(0.9 * D.cyclists))):
        side = int(rng.choice([-1, 1]))
        objs.append(Obj("cyclist", side * (road_w - float(rng.uniform(0.5, 1.3))), float(rng.uniform(z_lo + 1, D.cyclist_far)),
                        float(rng.uniform(2, 6)), dict(_person_params(rng), frame=_any_color(rng),
                                                       side=rng.random() < 0.45, dir=int(rng.choice([-1, 1])))))
    for _ in range(int(rng.poisson(0.5))):   # someone crossing the road
        objs.append(Obj("person", float(rng.uniform(-road_w, road_w)), float(rng.uniform(z_lo + 2, D.crossing_far)), 0.0,
                        _person_params(rng)))
    return objs


def _car(rng: np.random.Generator, x: float, z: float, vz: float, oncoming: bool) -> Obj:
    kind = rng.choice(["sedan", "van", "bus"], p=[0.72, 0.2, 0.08])
    if kind == "bus":
        w, length, h, hb, boxy = 2.5, float(rng.uniform(8, 12)), float(rng.uniform(2.9, 3.4)), 1.2, True
    elif kind == "van":
        w, length, h, hb, boxy = float(rng.uniform(1.8, 2.1)), float(rng.uniform(4.5, 5.5)), float(rng.uniform(1.8, 2.3)), 1.05, True
    else:
        w, length, h, hb, boxy = float(rng.uniform(1.65, 1.9)), float(rng.uniform(3.8, 4.8)), float(rng.uniform(1.35, 1.6)), float(rng.uniform(0.8, 0.95)), False
    return Obj("car", x, z, vz, {
        "w": w, "len": length, "h": h, "hb": hb, "boxy": boxy, "oncoming": oncoming, "color": _vehicle_color(rng),
        "glass": _hsv(rng, (0.5, 0.65), (0.05, 0.35), (0.08, 0.4)), "wheel": 0.32,
        "plate": (235, 235, 225) if rng.random() < 0.7 else (240, 200, 40)})


# --------------------------------------------------------------------------- rendering

def _draw_sky(cv: Canvas, st: Street) -> None:
    h, w = cv.h, cv.w
    hz = max(1.0, st.cam.horizon)
    rows = np.clip(np.arange(h, dtype=np.float32) / hz, 0, 1) ** 0.8
    top, bottom = np.array(st.sky["top"], np.float32), np.array(st.sky["bottom"], np.float32)
    grad = top[None, :] * (1 - rows[:, None]) + bottom[None, :] * rows[:, None]
    cv.img[:] = grad.astype(np.uint8)[:, None, :]
    sky_rows = int(min(h, max(1, math.ceil(hz) + 2)))
    if st.sky["clouds"]:
        # clouds are drawn and blurred at quarter resolution, then blended over the sky rows only
        q = 4
        layer = np.zeros((sky_rows // q + 1, w // q + 1), np.uint8)
        for cx, cy, rx, ry in st.sky["clouds"]:
            cv2.ellipse(layer, (int(cx * w / q), int(cy * hz * 0.9 / q)),
                        (int(rx * w / q) + 1, int(ry * h / q) + 1), 0, 0, 360, 255, -1)
        layer = cv2.GaussianBlur(layer, (0, 0), max(1.0, w / 60 / q))
        a = cv2.resize(layer, (w, sky_rows), interpolation=cv2.INTER_LINEAR).astype(np.float32)[..., None]
        a *= 0.85 / 255.0
        region = cv.img[:sky_rows]
        region[:] = (region * (1 - a) + np.array(st.sky["cloud"], np.float32) * a).astype(np.uint8)


def _draw_backdrop(cv: Canvas, st: Street) -> None:
    cam, b = cv.cam, st.backdrop
    far_z = cam.z + 400.0
    for rx, rw, rh, color in b["skyline"]:
        u = cam.cx + rx * cv.w
        cv.poly(_rect(u - rw * cv.w, cam.horizon - rh * cv.h - 2, u + rw * cv.w, cam.horizon + 2), color, BUILDING)
    if b["treeline"]:
        xs = np.linspace(-cv.w * 0.2, cv.w * 1.2, 40)
        tops = cam.horizon - cv.h * (0.02 + 0.03 * np.abs(np.sin(xs / 17.0)) + 0.015 * np.sin(xs / 5.0))
        pts = list(zip(xs, tops)) + [(cv.w * 1.2, cam.horizon + 3), (-cv.w * 0.2, cam.horizon + 3)]
        cv.poly(pts, b["tree_color"], TREE)
    # a back row of buildings, seen through the gaps of the front row
    for side in (-1, 1):
        x = _side_x_raw(st.road_w, side, st.walk_w[0 if side < 0 else 1] + 14.0)
        z = -10.0
        for color, height in b["back_rows"]:
            z1 = z + 35.0
            if height > 0:
                cv.quad3d([(x, 0, z), (x, height, z), (x, height, z1), (x, 0, z1)], _shade(color, 0.85), BUILDING)
            z = z1
            if z > far_z:
                break
    if b["end"] is not None and b["end"] > cam.z + 5:
        ze = b["end"]
        cv.quad3d([(-200, 0, ze), (200, 0, ze), (200, b["end_h"], ze), (-200, b["end_h"], ze)], b["end_color"], BUILDING)
        s = cam.scale(ze)
        if s * 1.2 > 2:
            wins = []
            for yy in np.arange(3.0, b["end_h"] - 1.5, 3.2):
                for xx in np.arange(-60, 60, 3.0):
                    wins.append(cv.project([(xx, yy, ze), (xx + 1.3, yy, ze), (xx + 1.3, yy + 1.4, ze), (xx, yy + 1.4, ze)]))
            cv.polys(wins, _shade(b["end_color"], 0.45), None)


def _draw_ground(cv: Canvas, st: Street) -> None:
    cam, c, m = cv.cam, st.colors, st.markings
    hz = cam.horizon
    cv.poly(_rect(-10, hz - 0.5, cv.w + 10, cv.h + 10), c["yard"], PAVEMENT)
    zc, zf = cam.z + Z_NEAR, cam.z + 5000.0
    rw = st.road_w
    for side in (-1, 1):
        ww = st.walk_w[0 if side < 0 else 1]
        xo = _side_x_raw(rw, side, ww)
        cv.quad3d([(side * rw, 0, zc), (xo, 0, zc), (xo, 0, zf), (side * rw, 0, zf)], c["walk"], PAVEMENT)
        # paving joints
        lines = []
        step = 1.0 if ww < 3 else 1.5
        z0 = math.ceil((cam.z + 1) / step) * step
        for zz in np.arange(z0, cam.z + 40, step):
            if cam.scale(zz) * step < 3:
                break
            a, b = cam.uv(side * rw, 0, zz), cam.uv(xo, 0, zz)
            lines.append((a, b))
        for a, b in lines:
            cv.line(a, b, 1, c["tile"], None)
        # curb face and top
        cv.quad3d([(side * rw, 0, zc), (side * rw, 0.14, zc), (side * rw, 0.14, zf), (side * rw, 0, zf)],
                  c["curb"], PAVEMENT)
    cv.quad3d([(-rw, 0, zc), (rw, 0, zc), (rw, 0, zf), (-rw, 0, zf)], c["road"], ROAD)
    for x0, z0, pw, pl, color in st.patches:
        cv.quad3d([(x0, 0, z0), (x0 + pw, 0, z0), (x0 + pw, 0, z0 + pl), (x0, 0, z0 + pl)], color, None)
    mw = m["width"]
    quads = []
    if m["center"]:
        first = math.floor((cam.z - m["phase"]) / m["period"]) * m["period"] + m["phase"]
        xs = [0.0] if not m["lane_lines"] else [0.0] + [(a + b) / 2 for a, b in zip(m["lanes"], m["lanes"][1:]) if abs((a + b) / 2) > 0.5]
        for x in xs:
            for zz in np.arange(first, cam.z + 150, m["period"]):
                if zz + m["dash"] <= cam.z + Z_NEAR:
                    continue
                if cam.scale(zz + m["dash"]) * mw < 0.15:
                    break
                quads.append(cv.project([(x - mw / 2, 0, zz), (x + mw / 2, 0, zz), (x + mw / 2, 0, zz + m["dash"]),
                                         (x - mw / 2, 0, zz + m["dash"])]))
    if m["edge"]:
        for side in (-1, 1):
            x = side * (rw - 0.35)
            quads.append(cv.project([(x - mw / 2, 0, zc), (x + mw / 2, 0, zc), (x + mw / 2, 0, zf), (x - mw / 2, 0, zf)]))
    if m["crossing"] is not None and m["crossing"] > cam.z + 1:
        zz = m["crossing"]
        for x in np.arange(-rw + 0.5, rw - 0.5, 1.0):
            quads.append(cv.project([(x, 0, zz), (x + 0.5, 0, zz), (x + 0.5, 0, zz + 3.0), (x, 0, zz + 3.0)]))
    cv.polys([q for q in quads if q], c["marking"], None)


def _draw_building(cv: Canvas, st: Street, b: dict[str, Any]) -> None:
    cam = cv.cam
    x, z0, z1, h, side = b["x"], b["z0"], b["z1"], b["h"], b["side"]
    if z1 < cam.z + Z_NEAR:
        return
    lit = side == st.light["sun"]
    k = 1.0 if lit else st.light["sun_shade"]
    face = _shade(b["color"], k)
    # the end wall facing the camera, then the facade along the street
    if z0 > cam.z + Z_NEAR:
        cv.quad3d([(x, 0, z0), (x + side * 12, 0, z0), (x + side * 12, h, z0), (x, h, z0)], _shade(face, 0.8), BUILDING)
    cv.quad3d([(x, 0, z0), (x, h, z0), (x, h, z1), (x, 0, z1)], face, BUILDING)
    zs = max(z0, cam.z + Z_NEAR)
    if cam.scale(zs) * b["win_w"] < 1.5:
        return
    period = b["win_w"] + b["win_gap"]
    zz = np.arange(z0 + b["win_gap"], z1 - b["win_w"], period)
    zz = zz[(zz - 0.1 > cam.z + Z_NEAR) & (cam.f / np.maximum(zz - cam.z, 1e-3) * b["win_w"] >= 1.2)]
    rows = np.arange(b["floor_h"] * (1.0 if b["shop"] else 0.3) + 0.8, h - b["win_h"] - 0.4, b["floor_h"])
    if not len(zz) or not len(rows):
        return
    za, ya = np.meshgrid(zz, rows)
    za, ya = za.ravel(), ya.ravel()
    ww, wh = b["win_w"], b["win_h"]

    def quads(z_a: np.ndarray, z_b: np.ndarray, y_a: np.ndarray, y_b: np.ndarray) -> np.ndarray:
        zs_ = np.stack([z_a, z_a, z_b, z_b], 1) - cam.z
        ys_ = np.stack([y_a, y_b, y_b, y_a], 1)
        return np.stack([cam.cx + cam.f * (x - cam.x) / zs_, cam.horizon + cam.f * (cam.height - ys_) / zs_], 2)

    cv.polys_array(quads(za - 0.1, za + ww + 0.1, ya - 0.12, ya), _shade(b["trim"], k))
    win = quads(za, za + ww, ya, ya + wh)
    rnd = np.random.default_rng(int(abs(z0) * 1000) + int(h * 10))
    lit_mask = rnd.random(len(win)) < b["lit"]
    cv.polys_array(win[~lit_mask], _shade(b["win_color"], k))
    cv.polys_array(win[lit_mask], (235, 215, 150))
    if b["shop"]:
        cv.quad3d([(x, 0.2, z0 + 0.8), (x, 2.6, z0 + 0.8), (x, 2.6, z1 - 0.8), (x, 0.2, z1 - 0.8)],
                  _shade(b["shop_color"], 0.35 * k), None)
    if b["sign"]:
        zm = z0 + (z1 - z0) * 0.2
        ln = min(6.0, (z1 - z0) * 0.6)
        xs = x - side * 0.05
        cv.quad3d([(xs, 2.8, zm), (xs, 3.6, zm), (xs, 3.6, zm + ln), (xs, 2.8, zm + ln)], b["sign_color"], SIGN)
        cv.quad3d([(xs, 3.0, zm + 0.4), (xs, 3.4, zm + 0.4), (xs, 3.4, zm + ln * 0.7), (xs, 3.0, zm + ln * 0.7)],
                  b["sign_text"], None)


def _draw_fence(cv: Canvas, st: Street, f: dict[str, Any]) -> None:
    cam = cv.cam
    x, z0, z1, h, color = f["x"], max(f["z0"], cam.z + Z_NEAR), f["z1"], f["h"], f["color"]
    if z1 <= z0:
        return
    if f["kind"] == "panel":
        cv.quad3d([(x, 0, z0), (x, h, z0), (x, h, z1), (x, 0, z1)], color, FENCE)
        lines = []
        for zz in np.arange(math.ceil(z0), z1, 0.25):
            if cam.scale(zz) * 0.25 < 3:
                break
            lines.append((cam.uv(x, 0, zz), cam.uv(x, h, zz)))
        for a, b in lines:
            cv.line(a, b, 1, _shade(color, 0.75), None)
        return
    post_w = 0.08
    for y in ((0.15, 0.25 * h), (h - 0.1, h)) if f["kind"] == "rail" else ((0.1 * h, 0.2 * h), (0.75 * h, 0.85 * h)):
        cv.quad3d([(x, y[0], z0), (x, y[1], z0), (x, y[1], z1), (x, y[0], z1)], color, FENCE)
    gap = f["post_gap"] if f["kind"] == "rail" else 0.18
    zz = math.ceil(z0 / gap) * gap
    solid_from = None
    posts = []
    while zz < z1:
        if cam.scale(zz) * gap < 2.5:
            solid_from = zz
            break
        posts.append(cv.project([(x, 0, zz), (x, h, zz), (x, h, zz + post_w), (x, 0, zz + post_w)]))
        zz += gap
    if f["kind"] == "rail":
        post_uvs = [p for p in posts if p]
        cv.polys(post_uvs, color, FENCE)
    else:
        cv.polys([p for p in posts if p], color, FENCE)
    if solid_from is not None:
        cv.quad3d([(x, 0, solid_from), (x, h, solid_from), (x, h, z1), (x, 0, z1)], _shade(color, 0.9), FENCE)


def _draw_hedge(cv: Canvas, st: Street, hd: dict[str, Any]) -> None:
    cam = cv.cam
    z0, z1 = max(hd["z0"], cam.z + Z_NEAR), hd["z1"]
    if z1 <= z0:
        return
    zs = np.linspace(z0, z1, 24)
    top = [(hd["x"], hd["h"] + hd["bumps"][int(abs(z) * 2) % 64], float(z)) for z in zs]
    bottom = [(hd["x"], 0.0, float(z)) for z in zs[::-1]]
    cv.poly([cam.uv(*p) for p in top + bottom], hd["color"], TREE)


def _post_process(cv: Canvas, st: Street, rng: np.random.Generator) -> np.ndarray:
    """Lighting, shadows, haze, texture, noise, blur: the same label, a different look."""
    L = st.light
    h, w = cv.h, cv.w
    img = cv.img.astype(np.float32)
    if cv.shadow.any():
        img *= (1.0 - L["shadow_k"] * (cv.shadow.astype(np.float32) / 255.0))[..., None]
    # texture: fine noise whose strength depends on the surface (asphalt and leaves are rough, sky is smooth)
    amp = np.array([1.5, 7, 3, 9, 10, 20, 3, 6, 4, 5, 5, 8] + [0] * 244, np.float32) * L["texture"]
    # cv2.randn is 4x faster than numpy's normals; a video keeps one texture seed so surfaces do not flicker
    noise_seed = int(rng.integers(2**31 - 1))
    cv2.setRNGSeed(L.get("texture_seed", noise_seed))
    fine = np.empty((h // 2 + 1, w // 2 + 1), np.float32)
    cv2.randn(fine, 0.0, 1.0)
    fine = cv2.resize(fine, (w, h), interpolation=cv2.INTER_LINEAR)
    blotch = cv2.resize(rng.standard_normal((h // 16 + 2, w // 16 + 2), dtype=np.float32), (w, h),
                        interpolation=cv2.INTER_CUBIC)
    img += ((fine + 0.8 * blotch) * amp[cv.lab])[..., None]
    # illumination field, exposure, white balance, gamma
    field = cv2.resize(L["field"], (w, h), interpolation=cv2.INTER_CUBIC)
    img *= field[..., None] * L["gain"] * np.array(L["cast"], np.float32)
    if L["haze"] > 0:
        rows = np.abs(np.arange(h, dtype=np.float32) - st.cam.horizon) / (0.25 * h)
        a = (L["haze"] * np.exp(-rows))[:, None, None]
        img = img * (1 - a) + np.array(st.sky["bottom"], np.float32) * a
    if L["vignette"] > 0:
        yy, xx = np.ogrid[-1:1:complex(0, h), -1:1:complex(0, w)]
        img *= (1 - L["vignette"] * (xx ** 2 + yy ** 2) / 2).astype(np.float32)[..., None]
    cv2.setRNGSeed(noise_seed)
    lum = np.empty((h, w), np.float32)
    cv2.randn(lum, 0.0, L["noise"])
    chroma = np.empty((h, w, 3), np.float32)
    cv2.randn(chroma, (0.0, 0.0, 0.0), (L["noise"] * 0.4,) * 3)
    img += lum[..., None]
    img += chroma
    np.clip(img, 0, 255, out=img)
    gamma_lut = (255.0 * (np.arange(256) / 255.0) ** L["gamma"]).round().astype(np.uint8)
    out = cv2.LUT(img.astype(np.uint8), gamma_lut)
    if L["blur"] > 0:
        out = cv2.GaussianBlur(out, (0, 0), L["blur"])
    return out


def render(st: Street, size: tuple[int, int], rng: np.random.Generator, cam_z: float = 0.0,
           t: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
    """Draw the street from camera depth `cam_z` at time `t` (s): RGB uint8 image, SegNet ids (11 = void)."""
    h, w = size
    cam = Camera(st.cam.f, st.cam.cx, st.cam.horizon, st.cam.height, st.cam.x, cam_z)
    cv = Canvas(h, w, cam)
    _draw_sky(cv, st)
    _draw_backdrop(cv, st)
    _draw_ground(cv, st)
    if st.light["shadow"]:
        sun = st.light["sun"]
        for b in st.buildings:
            if b["side"] == -sun:
                x = b["x"]
                cv.shadow_quad([(x, 0, b["z0"]), (x + sun * st.light["shadow_w"], 0, b["z0"]),
                                (x + sun * st.light["shadow_w"], 0, b["z1"]), (x, 0, b["z1"])])
    for b in sorted(st.buildings, key=lambda b: -b["z0"]):
        _draw_building(cv, st, b)
    for hd in st.hedges:
        _draw_hedge(cv, st, hd)
    for f in st.fences:
        _draw_fence(cv, st, f)
    visible = [(o.zt(t), o) for o in st.objects if o.zt(t) > cam_z + Z_NEAR + 0.5]
    for z, o in sorted(visible, key=lambda zo: -zo[0]):
        _DRAW[o.kind](cv, o, z)
    if st.light["hood"] > 0:
        hh = st.light["hood"] * h
        cv.poly([(-5, h + 5), (-5, h - hh * 0.6), (w * 0.25, h - hh), (w * 0.75, h - hh), (w + 5, h - hh * 0.6),
                 (w + 5, h + 5)], _shade(_any_color(rng), 0.5), VOID)
    img = _post_process(cv, st, rng)
    lab = cv.lab
    if st.light["roll"]:
        m = cv2.getRotationMatrix2D((w / 2, h / 2), st.light["roll"], 1.0)
        img = cv2.warpAffine(img, m, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT_101)
        lab = cv2.warpAffine(lab, m, (w, h), flags=cv2.INTER_NEAREST, borderMode=cv2.BORDER_REFLECT_101)
    return img, lab


def synth_sample(seed: int, split: str, index: int, size: tuple[int, int] = (360, 480),
                 difficulty: str = "standard") -> tuple[np.ndarray, np.ndarray]:
    """One image and its SegNet-id label (11 = void); depends only on (seed, split, index, size, difficulty)."""
    split_id = {"train": 1, "val": 2, "test": 3}.get(split, 4 + sum(map(ord, split)))
    rng = np.random.default_rng(np.random.SeedSequence([int(seed), split_id, int(index)]))
    st = make_street(rng, size, difficulty=get_difficulty(difficulty))
    return render(st, size, rng)


# --------------------------------------------------------------------------- writing datasets

def _write_chunk(args: tuple[str, int, str, list[int], tuple[int, int], str]) -> list[str]:
    out, seed, split, indices, size, difficulty = args
    cv2.setNumThreads(1)
    names = []
    for i in indices:
        img, lab = synth_sample(seed, split, i, size, difficulty)
        name = f"{split}_{i:05d}.png"
        if not cv2.imwrite(os.path.join(out, split, name), cv2.cvtColor(img, cv2.COLOR_RGB2BGR), _PNG):
            raise ResegError(f"could not write {os.path.join(out, split, name)}")
        cv2.imwrite(os.path.join(out, f"{split}annot", name), lab, _PNG)
        names.append(name)
    return names


def make_synthetic(out_dir: str | Path = "datasets/synthetic", train: int = 300, val: int = 60, test: int = 60,
                   seed: int = 0, size: tuple[int, int] = (360, 480), workers: int | None = None,
                   progress: bool = False, difficulty: str = "standard") -> Path:
    """Write a synthetic dataset in the CamVid SegNet layout and return its root.

    Layout: train/ trainannot/ val/ valannot/ test/ testannot/ + train.txt val.txt test.txt
    ("train/x.png trainannot/x.png" per line) + synthetic.json (seed, sizes, difficulty, generator version).
    The folder appears atomically (written beside it, then renamed); an existing synthetic dataset
    there is replaced, any other non-empty folder is refused.
    """
    out = Path(out_dir)
    counts = {"train": int(train), "val": int(val), "test": int(test)}
    if any(n < 0 for n in counts.values()):
        raise ResegError(f"image counts must be >= 0, got {counts}")
    h, w = int(size[0]), int(size[1])
    get_difficulty(difficulty)  # an unknown name fails before anything is written
    if h < 16 or w < 16:
        raise ResegError(f"synthetic image size must be at least 16x16, got {h}x{w}")
    if out.exists() and any(out.iterdir()) and not (out / META_FILE).is_file():
        raise ResegError(f"{out} exists and is not a synthetic dataset (no {META_FILE}); refusing to overwrite it; "
                         f"choose another --out")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.parent / f".{out.name}.{os.getpid()}.partial"  # mkdir, not mkdtemp: the user's umask, not 0700
    shutil.rmtree(tmp, ignore_errors=True)  # left by an earlier process with this pid that was killed
    tmp.mkdir()
    start = time.perf_counter()
    try:
        for split in SPLITS:
            (tmp / split).mkdir()
            (tmp / f"{split}annot").mkdir()
        total = sum(counts.values())
        if workers is None:
            workers = min(os.cpu_count() or 1, 8) if total >= 64 else 1
        jobs = []
        for split, n in counts.items():
            step = max(1, math.ceil(n / max(1, workers * 4)))
            jobs += [(str(tmp), int(seed), split, list(range(a, min(n, a + step))), (h, w), difficulty)
                     for a in range(0, n, step)]
        if workers > 1 and len(jobs) > 1:
            import multiprocessing as mp
            with ProcessPoolExecutor(workers, mp_context=mp.get_context("fork")) as pool:
                list(pool.map(_write_chunk, jobs))
        else:
            for job in jobs:
                _write_chunk(job)
        for split, n in counts.items():
            lines = [f"{split}/{split}_{i:05d}.png {split}annot/{split}_{i:05d}.png" for i in range(n)]
            (tmp / f"{split}.txt").write_text("".join(line + "\n" for line in lines), encoding="utf-8")
        meta = {"generator": "reseg.data.synthetic", "version": GENERATOR_VERSION, "seed": int(seed),
                "sizes": counts, "size": [h, w], "difficulty": difficulty, "classes": list(CAMVID.names),
                "void_label": VOID,
                "seconds": round(time.perf_counter() - start, 2)}
        (tmp / META_FILE).write_text(json.dumps(meta, indent=1), encoding="utf-8")
        if out.exists() and not (out / META_FILE).is_file():
            out.rmdir()  # an empty folder (anything else was refused above)
        replace_dir(tmp, out)  # old set aside, new one in, old deleted: `out` is always a whole dataset
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    log.info("synthetic dataset (%d images, %dx%d) written to %s in %.1f s", sum(counts.values()), h, w, out,
             time.perf_counter() - start)
    return out


def _recipe(sizes: Any, seed: Any, size: Any, difficulty: Any) -> dict[str, Any]:
    """The generation settings as synthetic.json records them, keyed by their data.* config key."""
    return {"synthetic_sizes": dict(zip(SPLITS, map(int, sizes))), "synthetic_size": [int(v) for v in size],
            "synthetic_seed": int(seed), "synthetic_difficulty": str(difficulty)}


def _recorded(meta: dict[str, Any]) -> dict[str, Any]:
    """The settings synthetic.json holds (older files lack size and difficulty: unknown size, standard)."""
    return {"synthetic_sizes": meta.get("sizes"), "synthetic_size": meta.get("size"),
            "synthetic_seed": meta.get("seed"), "synthetic_difficulty": meta.get("difficulty", "standard")}


def mismatch_warning(root: str | Path, meta: dict[str, Any], want: dict[str, Any],
                     asked: Collection[str] | None = None) -> str | None:
    """The warning for a synthetic set made otherwise than the config asks, or None when it fits.

    Only the keys in `asked` (the data.* keys the user's config gave; None: all) count. The suggested
    command makes what the config asks for and keeps the recorded value of every other setting.
    """
    made = _recorded(meta)
    keys = [k for k in SYNTHETIC_KEYS if asked is None or k in asked]
    differ = [k for k in keys if made[k] is not None and made[k] != want[k]]
    if not differ:
        return None
    target = {k: (want[k] if k in keys or made[k] is None else made[k]) for k in SYNTHETIC_KEYS}
    sizes, (h, w) = target["synthetic_sizes"], target["synthetic_size"]
    command = (f"reseg make-synthetic --out {shlex.quote(str(root))} --train {sizes['train']} --val {sizes['val']} "
               f"--test {sizes['test']} --seed {target['synthetic_seed']} --size {h} {w} "
               f"--difficulty {target['synthetic_difficulty']}")
    what = "; ".join(f"data.{k} asks for {_show(want[k])}, it has {_show(made[k])}" for k in differ)
    return (f"the synthetic dataset at {root} was made otherwise than the config asks ({what}); using it as it "
            f"is. To make it as the config asks: {command}")


def _show(value: Any) -> str:
    if isinstance(value, dict):
        return "[" + ", ".join(str(value.get(s)) for s in SPLITS) + "]"
    return str(value)


def ensure_synthetic(root: str | Path, sizes: list[int] | tuple[int, ...] = (300, 60, 60), seed: int = 0,
                     size: tuple[int, int] = (360, 480), difficulty: str = "standard",
                     asked: Collection[str] | None = None) -> Path:
    """Generate the synthetic dataset at `root` unless a dataset is already there.

    An existing one made otherwise than the config asks (only the keys in `asked` count; None: all
    four) is used as it is, with one warning per process (on rank 0 of a torchrun job).
    """
    root = Path(root)
    if (root / META_FILE).is_file():
        try:
            meta = json.loads((root / META_FILE).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return root
        message = mismatch_warning(root, meta, _recipe(sizes, seed, size, difficulty), asked)
        key = (str(root.resolve()), message or "")
        if message and key not in _WARNED and os.environ.get("RANK", "0") == "0":
            _WARNED.add(key)
            log.warning("%s", message)
        return root
    if (root / "train").is_dir() or (root / "train.txt").is_file():
        return root
    if len(sizes) != 3:
        raise ResegError(f"data.synthetic_sizes must be [train, val, test], got {list(sizes)}")
    print(f"generating the synthetic street dataset ({sum(sizes)} images) in {root} ...", flush=True)
    return make_synthetic(root, *sizes, seed=seed, size=size, difficulty=difficulty)


def make_synthetic_video(path: str | Path, frames: int = 90, size: tuple[int, int] = (360, 480), fps: float = 15.0,
                         seed: int = 0, speed: float = 8.0, frames_dir: str | Path | None = None,
                         labels_dir: str | Path | None = None, difficulty: str = "standard") -> Path:
    """Write a short street video: the camera drives forward at `speed` m/s, other cars move too.

    The codec follows the extension: .avi -> MJPG, anything else (.mp4) -> mp4v. With `frames_dir`
    the frames are also saved as PNGs (frame_00000.png ...), with `labels_dir` their SegNet-id labels.
    """
    path = Path(path)
    h, w = int(size[0]), int(size[1])
    if frames < 1:
        raise ResegError(f"a video needs at least one frame, got frames={frames}")
    path.parent.mkdir(parents=True, exist_ok=True)
    fourcc = cv2.VideoWriter_fourcc(*("MJPG" if path.suffix.lower() == ".avi" else "mp4v"))
    writer = cv2.VideoWriter(str(path), fourcc, float(fps), (w, h))
    if not writer.isOpened():
        raise ResegError(f"cannot open a video writer for {path} (codec {'MJPG' if path.suffix.lower() == '.avi' else 'mp4v'}); "
                         f"try a .avi or .mp4 file name")
    for d in (frames_dir, labels_dir):
        if d is not None:
            Path(d).mkdir(parents=True, exist_ok=True)
    duration = frames / float(fps)
    rng = np.random.default_rng(np.random.SeedSequence([int(seed), 99]))
    st = make_street(rng, (h, w), length=speed * duration + 20.0, difficulty=get_difficulty(difficulty))
    st.light.update(roll=0.0, hood=0.0, texture_seed=int(rng.integers(2**31 - 1)))
    try:
        for k in range(frames):
            t = k / float(fps)
            frame_rng = np.random.default_rng(np.random.SeedSequence([int(seed), 99, k]))
            img, lab = render(st, (h, w), frame_rng, cam_z=speed * t, t=t)
            bgr = cv2.cvtColor(img, cv2.COLOR_RGB2BGR)
            writer.write(bgr)
            if frames_dir is not None:
                cv2.imwrite(str(Path(frames_dir) / f"frame_{k:05d}.png"), bgr, _PNG)
            if labels_dir is not None:
                cv2.imwrite(str(Path(labels_dir) / f"frame_{k:05d}.png"), lab, _PNG)
    finally:
        writer.release()
    if not path.is_file() or path.stat().st_size == 0:
        raise ResegError(f"the video writer produced no file at {path}")
    return path
