"""Draw the street's objects (cars, people, cyclists, poles and signs, trees, clutter) at a given depth."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import replace
from typing import Any

import numpy as np

from reseg.data.synthetic.camera import Z_NEAR, Point3
from reseg.data.synthetic.canvas import Canvas, Point2, rect
from reseg.data.synthetic.labels import BICYCLIST, CAR, PEDESTRIAN, POLE, SIGN, TREE, VOID
from reseg.data.synthetic.palette import Color, shade
from reseg.data.synthetic.scene import Car, Clutter, Cyclist, Look, Person, Placed, Pole, Sign, Tree

_TYRE: Color = (18, 18, 20)
_WHEEL: Color = (25, 25, 25)


def draw_object(cv: Canvas, obj: Placed, z: float) -> None:
    """Draw `obj` as if it stood at depth `z` (where it has moved to by now)."""
    _DRAW[type(obj)](cv, obj, z)


# --------------------------------------------------------------------------- cars


def _draw_car(cv: Canvas, car: Car, z: float) -> None:
    if z - cv.cam.z < Z_NEAR + 0.3:
        return
    if abs(car.x - cv.cam.x) > car.w / 2:
        _draw_car_side(cv, car, z)
    _draw_car_face(cv, car, z)
    x0, x1 = car.x - car.w / 2, car.x + car.w / 2
    cv.shadow_quad(
        [
            (x0 - 0.1, 0.0, z - 0.2),
            (x1 + 0.1, 0.0, z - 0.2),
            (x1 + 0.1, 0.0, z + car.length),
            (x0 - 0.1, 0.0, z + car.length),
        ]
    )


def _cabin(car: Car, zn: float) -> tuple[float, float, float]:
    """How far the roof is set in from the sides, and where along the car it starts and ends."""
    zf, length = zn + car.length, car.length
    inset = 0.0 if car.boxy else 0.18 * car.w
    cab0, cab1 = (zn + 0.25 * length, zf - 0.2 * length) if not car.boxy else (zn, zf)
    return inset, cab0, cab1


def _draw_car_side(cv: Canvas, car: Car, zn: float) -> None:
    """The side facing the camera: body, cabin, windows, wheels."""
    w, length, h, hb = car.w, car.length, car.h, car.hb
    x0, x1 = car.x - w / 2, car.x + w / 2
    zf = zn + length
    dark, glass = shade(car.color, 0.7), car.glass
    inset, cab0, cab1 = _cabin(car, zn)
    xs = x0 if car.x > cv.cam.x else x1
    xi = xs + (inset if xs == x0 else -inset)
    cv.quad3d([(xs, 0.3, zn), (xs, hb, zn), (xs, hb, zf), (xs, 0.3, zf)], dark, CAR)
    if car.boxy:
        cv.quad3d([(xs, hb, zn), (xs, h, zn), (xs, h, zf), (xs, hb, zf)], dark, CAR)
        cv.quad3d(
            [
                (xs, hb + 0.1, zn + 0.3),
                (xs, h - 0.2, zn + 0.3),
                (xs, h - 0.2, zn + 0.3 + 0.35 * length),
                (xs, hb + 0.1, zn + 0.3 + 0.35 * length),
            ],
            glass,
            None,
        )
    else:
        cv.quad3d([(xs, hb, zn + 0.1 * length), (xi, h, cab0), (xi, h, cab1), (xs, hb, zf - 0.05 * length)], dark, CAR)
        cv.quad3d(
            [
                (xs, hb + 0.05, zn + 0.17 * length),
                (xi, h - 0.08, cab0 + 0.05),
                (xi, h - 0.08, cab1 - 0.05),
                (xs, hb + 0.05, zf - 0.12 * length),
            ],
            glass,
            None,
        )
    r = car.wheel
    for zw in (zn + 0.18 * length, zf - 0.18 * length):
        ring = [(xs, r + r * math.sin(a), zw + r * math.cos(a)) for a in np.linspace(0, 2 * math.pi, 12, False)]
        cv.quad3d(ring, (20, 20, 22), CAR)


def _draw_car_face(cv: Canvas, car: Car, zn: float) -> None:
    """The near face: the rear, or the front of an oncoming car (body, windscreen, tyres, lights, plate)."""
    w, h, hb, length = car.w, car.h, car.hb, car.length
    x0, x1 = car.x - w / 2, car.x + w / 2
    inset, _, _ = _cabin(car, zn)
    cv.quad3d([(x0, 0.3, zn), (x1, 0.3, zn), (x1, hb, zn), (x0, hb, zn)], car.color, CAR)
    roof_z = zn + (0.25 * length if not car.boxy else 0)
    top: list[Point3] = [(x0 + inset, h, roof_z), (x1 - inset, h, roof_z)]
    cv.quad3d([(x0, hb, zn), (x1, hb, zn), top[1], top[0]], car.color, CAR)
    g = 0.12 * w
    cv.quad3d(
        [
            (x0 + g, hb + 0.06, zn),
            (x1 - g, hb + 0.06, zn),
            (top[1][0] - g * 0.5, h - 0.1, top[1][2]),
            (top[0][0] + g * 0.5, h - 0.1, top[0][2]),
        ],
        car.glass,
        None,
    )
    for xa, xb in ((x0, x0 + 0.28), (x1 - 0.28, x1)):
        cv.quad3d(
            [(xa, 0.0, zn + 0.05), (xb, 0.0, zn + 0.05), (xb, 0.32, zn + 0.05), (xa, 0.32, zn + 0.05)], _TYRE, CAR
        )
    light = (255, 250, 225) if car.oncoming else (200, 25, 20)
    ly = hb - 0.22
    for xa, xb in ((x0 + 0.05, x0 + 0.3), (x1 - 0.3, x1 - 0.05)):
        cv.quad3d([(xa, ly, zn), (xb, ly, zn), (xb, ly + 0.12, zn), (xa, ly + 0.12, zn)], light, None)
    cv.quad3d(
        [(car.x - 0.25, 0.42, zn), (car.x + 0.25, 0.42, zn), (car.x + 0.25, 0.54, zn), (car.x - 0.25, 0.54, zn)],
        car.plate,
        None,
    )


# --------------------------------------------------------------------------- people and cyclists


def _person_shape(cv: Canvas, u: float, v: float, s: float, look: Look, label: int, legs: bool = True) -> None:
    """A standing or walking person whose feet are at (u, v); s = pixels per metre."""
    h = look.h * s
    head_r = 0.115 * look.h / 1.75 * s
    sh = v - 0.82 * h  # shoulder row
    hip = v - 0.5 * h
    half_sh, half_hip = 0.2 * look.h / 1.75 * s * look.bulk, 0.15 * look.h / 1.75 * s * look.bulk
    limb = max(1.0, 0.11 * s * look.bulk)
    if legs:
        stride = look.stride * 0.5 * h
        cv.line(
            (u - half_hip * 0.5, hip),
            (u - half_hip * 0.4 - stride * 0.35, v - limb * 0.5),
            limb * 1.1,
            look.legs,
            label,
        )
        cv.line(
            (u + half_hip * 0.5, hip),
            (u + half_hip * 0.4 + stride * 0.35, v - limb * 0.5),
            limb * 1.1,
            look.legs,
            label,
        )
    swing = look.stride * 0.3 * h
    cv.line(
        (u - half_sh * 0.9, sh + limb * 0.5),
        (u - half_sh * 1.05 + swing * 0.4, hip + 0.04 * h),
        limb * 0.9,
        look.top,
        label,
    )
    cv.line(
        (u + half_sh * 0.9, sh + limb * 0.5),
        (u + half_sh * 1.05 - swing * 0.4, hip + 0.04 * h),
        limb * 0.9,
        look.top,
        label,
    )
    coat = look.coat
    bottom = hip + (0.22 * h if coat else 0.02 * h)
    cv.poly(
        [
            (u - half_sh, sh),
            (u + half_sh, sh),
            (u + half_hip * (1.4 if coat else 1.0), bottom),
            (u - half_hip * (1.4 if coat else 1.0), bottom),
        ],
        look.top,
        label,
    )
    cv.line((u, sh), (u, sh - 0.04 * h), max(1.0, head_r * 0.7), look.skin, label)
    cv.ellipse((u, sh - 0.04 * h - head_r * 0.9), (head_r * 0.85, head_r), 0, look.skin, label)
    cv.ellipse((u, sh - 0.04 * h - head_r * 1.25), (head_r * 0.85, head_r * 0.6), 0, look.hair, label)
    if look.bag:
        cv.poly(
            rect(u + half_sh * 0.9, hip - 0.05 * h, u + half_sh * 0.9 + 0.18 * s, hip + 0.12 * h), look.bag_color, label
        )


def _draw_person(cv: Canvas, person: Person, z: float) -> None:
    look = person.look
    s = cv.cam.scale(z)
    if s * look.h < 3:
        return
    u, v = cv.cam.uv(person.x, 0.0, z)
    _person_shape(cv, u, v, s, look, PEDESTRIAN)
    if look.umbrella is not None:
        cv.ellipse((u, v - (look.h + 0.25) * s), (0.55 * s, 0.22 * s), 0, look.umbrella, PEDESTRIAN)


def _riding(look: Look, height: float) -> Look:
    """A cyclist's look on the bicycle: `height` of the standing height, feet together, no bag or coat."""
    return replace(look, h=look.h * height, stride=0.0, bag=False, coat=False)


def _draw_cyclist(cv: Canvas, cyclist: Cyclist, z: float) -> None:
    s = cv.cam.scale(z)
    if s < 2:
        return
    u, v = cv.cam.uv(cyclist.x, 0.0, z)
    if cyclist.side_on:
        _draw_cyclist_side_on(cv, cyclist, u, v, s)
    else:  # seen from behind: a thin wheel, a wide rider
        r = 0.34 * s
        cv.poly(rect(u - 0.04 * s, v - 2 * r, u + 0.04 * s, v), _WHEEL, BICYCLIST)
        cv.line((u - 0.3 * s, v - 1.05 * s), (u + 0.3 * s, v - 1.05 * s), max(1.0, 0.05 * s), cyclist.frame, BICYCLIST)
        _person_shape(cv, u, v - 0.3 * s, s, _riding(cyclist.look, 0.9), BICYCLIST)


def _draw_cyclist_side_on(cv: Canvas, cyclist: Cyclist, u: float, v: float, s: float) -> None:
    """Two wheels, a diamond frame and a seated rider whose feet reach the crank."""
    look = cyclist.look
    r = 0.34 * s
    d = cyclist.dir * 0.55 * s
    wb, wf = (u - d, v - r), (u + d, v - r)
    cv.ring(wb, r, max(1.0, 0.07 * s), _WHEEL, BICYCLIST)
    cv.ring(wf, r, max(1.0, 0.07 * s), _WHEEL, BICYCLIST)
    seat = (u - d * 0.3, v - 0.95 * s)
    bars = (u + d * 0.75, v - 1.05 * s)
    crank = (u, v - r)
    head_tube = (u + d * 0.7, v - 0.9 * s)
    tubes: list[tuple[Point2, Point2]] = [
        (wb, crank),
        (crank, seat),
        (seat, wb),
        (crank, head_tube),
        (bars, wf),
        (head_tube, seat),
    ]
    for a, b in tubes:
        cv.line(a, b, max(1.0, 0.05 * s), cyclist.frame, BICYCLIST)
    rider = _riding(look, 0.62)
    hip_v = seat[1]
    _person_shape(cv, seat[0] + d * 0.1, hip_v + 0.5 * rider.h * s, s, rider, BICYCLIST, legs=False)
    cv.line((seat[0], hip_v), (u + d * 0.1, v - r * 1.3), max(1.0, 0.1 * s), look.legs, BICYCLIST)
    cv.line((u + d * 0.1, v - r * 1.3), (u + d * 0.15, v - r * 0.6), max(1.0, 0.09 * s), look.legs, BICYCLIST)
    sh_v = hip_v - 0.6 * rider.h * s * 0.55
    cv.line((seat[0] + d * 0.2, sh_v), bars, max(1.0, 0.08 * s), look.top, BICYCLIST)


# --------------------------------------------------------------------------- poles and signs


def _draw_pole(cv: Canvas, pole: Pole, z: float) -> None:
    s = cv.cam.scale(z)
    if s * pole.h < 4:
        return
    u, v = cv.cam.uv(pole.x, 0.0, z)
    hw = max(0.6, pole.w * s / 2)
    top = v - pole.h * s
    cv.poly(rect(u - hw, top, u + hw, v), pole.color, POLE)
    if pole.kind == "lamp":
        _draw_lamp_head(cv, pole, z, u, top, s)
    for sign in pole.signs:
        cy = v - sign.y * s
        r = sign.size / 2 * s
        if sign.back:
            cv.poly(rect(u - r, cy - r, u + r, cy + r), (150, 150, 155), SIGN)
        else:
            _SIGN_DRAWERS.get(sign.shape, _draw_rect_sign)(cv, sign, u, cy, r)


def _draw_lamp_head(cv: Canvas, pole: Pole, z: float, u: float, top: float, s: float) -> None:
    """The arm over the road and the lamp at its tip."""
    tip = cv.cam.uv(pole.x - pole.side * pole.arm, pole.h, z)
    cv.line((u, top), tip, max(1.0, pole.w * 0.6 * s), pole.color, POLE)
    cv.poly(rect(tip[0] - 0.25 * s, tip[1], tip[0] + 0.25 * s, tip[1] + 0.15 * s), (60, 60, 60), POLE)
    cv.poly(
        rect(tip[0] - 0.2 * s, tip[1] + 0.12 * s, tip[0] + 0.2 * s, tip[1] + 0.18 * s),
        (250, 245, 200) if pole.lit else (190, 190, 180),
        POLE,
    )


def _draw_circle_sign(cv: Canvas, sign: Sign, u: float, cy: float, r: float) -> None:
    cv.ellipse((u, cy), (r, r), 0, sign.c1, SIGN)
    cv.ellipse((u, cy), (r * 0.72, r * 0.72), 0, sign.c2, SIGN)


def _draw_triangle_sign(cv: Canvas, sign: Sign, u: float, cy: float, r: float) -> None:
    k = -1 if sign.down else 1
    tri = [(u, cy - k * r), (u + r, cy + k * r * 0.75), (u - r, cy + k * r * 0.75)]
    cv.poly(tri, sign.c1, SIGN)
    cv.poly([(u + (x - u) * 0.6, cy + (y - cy) * 0.6) for x, y in tri], sign.c2, None)


def _draw_octagon_sign(cv: Canvas, sign: Sign, u: float, cy: float, r: float) -> None:
    octo = [(u + r * math.cos(a), cy + r * math.sin(a)) for a in np.linspace(math.pi / 8, 2 * math.pi, 8, False)]
    cv.poly(octo, sign.c1, SIGN)
    cv.poly(rect(u - r * 0.6, cy - r * 0.15, u + r * 0.6, cy + r * 0.15), (250, 250, 250), None)


def _draw_traffic_light(cv: Canvas, sign: Sign, u: float, cy: float, r: float) -> None:
    cv.poly(rect(u - 0.7 * r, cy - 1.6 * r, u + 0.7 * r, cy + 1.6 * r), (30, 32, 30), SIGN)
    for i, c in enumerate(((220, 30, 20), (230, 170, 20), (30, 200, 80))):
        cc = c if i == sign.on else shade(c, 0.3)
        cv.ellipse((u, cy - 1.05 * r + i * 1.05 * r), (0.42 * r, 0.42 * r), 0, cc, SIGN)


def _draw_rect_sign(cv: Canvas, sign: Sign, u: float, cy: float, r: float) -> None:
    """A rectangular plate with three lines of "text"."""
    cv.poly(rect(u - r * 1.3, cy - r, u + r * 1.3, cy + r), sign.c1, SIGN)
    cv.poly(rect(u - r * 1.1, cy - r * 0.8, u + r * 1.1, cy + r * 0.8), sign.c2, None)
    for k in range(3):
        yy = cy - r * 0.45 + k * r * 0.45
        cv.line((u - r * 0.8, yy), (u + r * (0.2 + 0.2 * k), yy), max(1.0, r * 0.15), sign.c1, None)


_SIGN_DRAWERS: dict[str, Callable[[Canvas, Sign, float, float, float], None]] = {
    "circle": _draw_circle_sign,
    "triangle": _draw_triangle_sign,
    "octagon": _draw_octagon_sign,
    "light": _draw_traffic_light,
    "rect": _draw_rect_sign,
}


# --------------------------------------------------------------------------- trees and clutter


def _draw_tree(cv: Canvas, tree: Tree, z: float) -> None:
    s = cv.cam.scale(z)
    if s * (tree.trunk_h + tree.crown) < 4:
        return
    u, v = cv.cam.uv(tree.x, 0.0, z)
    tw = max(1.0, tree.trunk_w * s)
    cv.poly(
        [
            (u - tw / 2, v),
            (u + tw / 2, v),
            (u + tw * 0.35, v - tree.trunk_h * s * 1.1),
            (u - tw * 0.35, v - tree.trunk_h * s * 1.1),
        ],
        tree.bark,
        TREE,
    )
    cy = v - (tree.trunk_h + tree.crown * 0.5) * s
    for b in tree.blobs:
        cv.ellipse((u + b.dx * s, cy + b.dy * s), (b.rx * s, b.ry * s), 0, b.color, TREE)


def _draw_clutter(cv: Canvas, thing: Clutter, z: float) -> None:
    s = cv.cam.scale(z)
    if s * thing.h < 2:
        return
    u, v = cv.cam.uv(thing.x, 0.0, z)
    hw = thing.w * s / 2
    cv.poly(rect(u - hw, v - thing.h * s, u + hw, v), thing.color, VOID)
    if thing.round:
        cv.ellipse((u, v - thing.h * s), (hw, hw * 0.35), 0, shade(thing.color, 1.2), VOID)
    else:
        cv.poly(rect(u - hw, v - thing.h * s, u + hw, v - thing.h * s * 0.85), shade(thing.color, 0.7), VOID)


_DRAW: dict[type, Callable[[Canvas, Any, float], None]] = {
    Car: _draw_car,
    Person: _draw_person,
    Cyclist: _draw_cyclist,
    Pole: _draw_pole,
    Tree: _draw_tree,
    Clutter: _draw_clutter,
}
