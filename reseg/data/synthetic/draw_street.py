"""Draw the street itself: sky, backdrop, ground and markings, buildings and their shadows, fences, hedges."""

from __future__ import annotations

import math

import cv2
import numpy as np

from reseg.data.synthetic.camera import Z_NEAR
from reseg.data.synthetic.canvas import Canvas, Point2, rect
from reseg.data.synthetic.labels import BUILDING, FENCE, PAVEMENT, ROAD, SIGN, TREE
from reseg.data.synthetic.palette import shade
from reseg.data.synthetic.scene import Building, Fence, Hedge, Street, side_x, walk_width


def draw_scenery(cv: Canvas, st: Street) -> None:
    """Everything but the objects, back to front."""
    _draw_sky(cv, st)
    _draw_backdrop(cv, st)
    _draw_ground(cv, st)
    if st.light.shadow:
        _draw_building_shadows(cv, st)
    for b in sorted(st.buildings, key=lambda b: -b.z0):
        _draw_building(cv, st, b)
    for hd in st.hedges:
        _draw_hedge(cv, hd)
    for f in st.fences:
        _draw_fence(cv, f)


# --------------------------------------------------------------------------- sky and backdrop


def _draw_sky(cv: Canvas, st: Street) -> None:
    h = cv.h
    hz = max(1.0, st.cam.horizon)
    rows = np.clip(np.arange(h, dtype=np.float32) / hz, 0, 1) ** 0.8
    top, bottom = np.array(st.sky.top, np.float32), np.array(st.sky.bottom, np.float32)
    grad = top[None, :] * (1 - rows[:, None]) + bottom[None, :] * rows[:, None]
    cv.img[:] = grad.astype(np.uint8)[:, None, :]
    if st.sky.clouds:
        _draw_clouds(cv, st, hz)


def _draw_clouds(cv: Canvas, st: Street, hz: float) -> None:
    """Clouds are drawn and blurred at quarter resolution, then blended over the sky rows only."""
    h, w = cv.h, cv.w
    sky_rows = int(min(h, max(1, math.ceil(hz) + 2)))
    q = 4
    layer = np.zeros((sky_rows // q + 1, w // q + 1), np.uint8)
    for cx, cy, rx, ry in st.sky.clouds:
        cv2.ellipse(
            layer,
            (int(cx * w / q), int(cy * hz * 0.9 / q)),
            (int(rx * w / q) + 1, int(ry * h / q) + 1),
            0,
            0,
            360,
            255,
            -1,
        )
    layer = cv2.GaussianBlur(layer, (0, 0), max(1.0, w / 60 / q))
    a = cv2.resize(layer, (w, sky_rows), interpolation=cv2.INTER_LINEAR).astype(np.float32)[..., None]
    a *= 0.85 / 255.0
    region = cv.img[:sky_rows]
    region[:] = (region * (1 - a) + np.array(st.sky.cloud, np.float32) * a).astype(np.uint8)


def _draw_backdrop(cv: Canvas, st: Street) -> None:
    cam, b = cv.cam, st.backdrop
    for rx, rw, rh, color in b.skyline:
        u = cam.cx + rx * cv.w
        cv.poly(rect(u - rw * cv.w, cam.horizon - rh * cv.h - 2, u + rw * cv.w, cam.horizon + 2), color, BUILDING)
    if b.treeline:
        xs = np.linspace(-cv.w * 0.2, cv.w * 1.2, 40)
        tops = cam.horizon - cv.h * (0.02 + 0.03 * np.abs(np.sin(xs / 17.0)) + 0.015 * np.sin(xs / 5.0))
        pts = list(zip(xs, tops)) + [(cv.w * 1.2, cam.horizon + 3), (-cv.w * 0.2, cam.horizon + 3)]
        cv.poly(pts, b.tree_color, TREE)
    for side in (-1, 1):
        _draw_back_row(cv, st, side)
    if b.end is not None and b.end > cam.z + 5:
        _draw_end_wall(cv, st, b.end)


def _draw_back_row(cv: Canvas, st: Street, side: int) -> None:
    """A back row of buildings, seen through the gaps of the front row."""
    x = side_x(st.road_w, side, walk_width(st.walk_w, side) + 14.0)
    far_z = cv.cam.z + 400.0
    z = -10.0
    for color, height in st.backdrop.back_rows:
        z1 = z + 35.0
        if height > 0:
            cv.quad3d([(x, 0, z), (x, height, z), (x, height, z1), (x, 0, z1)], shade(color, 0.85), BUILDING)
        z = z1
        if z > far_z:
            break


def _draw_end_wall(cv: Canvas, st: Street, ze: float) -> None:
    """A wall of windows across the far end of the street."""
    b = st.backdrop
    cv.quad3d([(-200, 0, ze), (200, 0, ze), (200, b.end_h, ze), (-200, b.end_h, ze)], b.end_color, BUILDING)
    if cv.cam.scale(ze) * 1.2 > 2:
        wins = []
        for yy in np.arange(3.0, b.end_h - 1.5, 3.2):
            for xx in np.arange(-60, 60, 3.0):
                wins.append(
                    cv.project([(xx, yy, ze), (xx + 1.3, yy, ze), (xx + 1.3, yy + 1.4, ze), (xx, yy + 1.4, ze)])
                )
        cv.polys(wins, shade(b.end_color, 0.45), None)


# --------------------------------------------------------------------------- ground


def _draw_ground(cv: Canvas, st: Street) -> None:
    cam, c = cv.cam, st.colors
    cv.poly(rect(-10, cam.horizon - 0.5, cv.w + 10, cv.h + 10), c.yard, PAVEMENT)
    zc, zf = cam.z + Z_NEAR, cam.z + 5000.0
    rw = st.road_w
    for side in (-1, 1):
        _draw_sidewalk(cv, st, side)
    cv.quad3d([(-rw, 0, zc), (rw, 0, zc), (rw, 0, zf), (-rw, 0, zf)], c.road, ROAD)
    for p in st.patches:
        cv.quad3d(
            [(p.x0, 0, p.z0), (p.x0 + p.w, 0, p.z0), (p.x0 + p.w, 0, p.z0 + p.length), (p.x0, 0, p.z0 + p.length)],
            p.color,
            None,
        )
    quads = _center_line_quads(cv, st) + _edge_line_quads(cv, st) + _crossing_quads(cv, st)
    cv.polys([q for q in quads if q], c.marking, None)


def _draw_sidewalk(cv: Canvas, st: Street, side: int) -> None:
    """The sidewalk with its paving joints, and the curb."""
    cam, c = cv.cam, st.colors
    zc, zf = cam.z + Z_NEAR, cam.z + 5000.0
    rw = st.road_w
    ww = walk_width(st.walk_w, side)
    xo = side_x(rw, side, ww)
    cv.quad3d([(side * rw, 0, zc), (xo, 0, zc), (xo, 0, zf), (side * rw, 0, zf)], c.walk, PAVEMENT)
    lines = []
    step = 1.0 if ww < 3 else 1.5
    z0 = math.ceil((cam.z + 1) / step) * step
    for zz in np.arange(z0, cam.z + 40, step):
        if cam.scale(zz) * step < 3:
            break
        lines.append((cam.uv(side * rw, 0, zz), cam.uv(xo, 0, zz)))
    for a, b in lines:
        cv.line(a, b, 1, c.tile, None)
    cv.quad3d([(side * rw, 0, zc), (side * rw, 0.14, zc), (side * rw, 0.14, zf), (side * rw, 0, zf)], c.curb, PAVEMENT)


def _center_line_quads(cv: Canvas, st: Street) -> list[list[Point2]]:
    """Dashes of the centre line (and of the lane lines), near to far until they are thinner than a pixel."""
    cam, m = cv.cam, st.markings
    if not m.center:
        return []
    mw = m.width
    first = math.floor((cam.z - m.phase) / m.period) * m.period + m.phase
    xs = [0.0]
    if m.lane_lines:
        xs += [(a + b) / 2 for a, b in zip(m.lanes, m.lanes[1:]) if abs((a + b) / 2) > 0.5]
    quads = []
    for x in xs:
        for zz in np.arange(first, cam.z + 150, m.period):
            if zz + m.dash <= cam.z + Z_NEAR:
                continue
            if cam.scale(zz + m.dash) * mw < 0.15:
                break
            quads.append(
                cv.project(
                    [
                        (x - mw / 2, 0, zz),
                        (x + mw / 2, 0, zz),
                        (x + mw / 2, 0, zz + m.dash),
                        (x - mw / 2, 0, zz + m.dash),
                    ]
                )
            )
    return quads


def _edge_line_quads(cv: Canvas, st: Street) -> list[list[Point2]]:
    if not st.markings.edge:
        return []
    mw, zc, zf = st.markings.width, cv.cam.z + Z_NEAR, cv.cam.z + 5000.0
    quads = []
    for side in (-1, 1):
        x = side * (st.road_w - 0.35)
        quads.append(cv.project([(x - mw / 2, 0, zc), (x + mw / 2, 0, zc), (x + mw / 2, 0, zf), (x - mw / 2, 0, zf)]))
    return quads


def _crossing_quads(cv: Canvas, st: Street) -> list[list[Point2]]:
    """The stripes of a zebra crossing still ahead of the camera."""
    zz = st.markings.crossing
    if zz is None or zz <= cv.cam.z + 1:
        return []
    rw = st.road_w
    return [
        cv.project([(x, 0, zz), (x + 0.5, 0, zz), (x + 0.5, 0, zz + 3.0), (x, 0, zz + 3.0)])
        for x in np.arange(-rw + 0.5, rw - 0.5, 1.0)
    ]


# --------------------------------------------------------------------------- buildings


def _draw_building_shadows(cv: Canvas, st: Street) -> None:
    """Buildings on the side away from the sun shade a strip of the ground in front of them."""
    sun, width = st.light.sun, st.light.shadow_w
    for b in st.buildings:
        if b.side == -sun:
            x = b.x
            cv.shadow_quad([(x, 0, b.z0), (x + sun * width, 0, b.z0), (x + sun * width, 0, b.z1), (x, 0, b.z1)])


def _draw_building(cv: Canvas, st: Street, b: Building) -> None:
    cam = cv.cam
    if b.z1 < cam.z + Z_NEAR:
        return
    k = 1.0 if b.side == st.light.sun else st.light.sun_shade
    face = shade(b.color, k)
    x, z0, z1, h, side = b.x, b.z0, b.z1, b.h, b.side
    # the end wall facing the camera, then the facade along the street
    if z0 > cam.z + Z_NEAR:
        cv.quad3d([(x, 0, z0), (x + side * 12, 0, z0), (x + side * 12, h, z0), (x, h, z0)], shade(face, 0.8), BUILDING)
    cv.quad3d([(x, 0, z0), (x, h, z0), (x, h, z1), (x, 0, z1)], face, BUILDING)
    zs = max(z0, cam.z + Z_NEAR)
    if cam.scale(zs) * b.win_w < 1.5:
        return
    if _draw_windows(cv, b, k):
        _draw_shop_and_sign(cv, b, k)


def _window_quads(
    cv: Canvas, x: float, z_a: np.ndarray, z_b: np.ndarray, y_a: np.ndarray, y_b: np.ndarray
) -> np.ndarray:
    """N x 4 x 2 pixel corners of facade rectangles (all windows at once, in NumPy)."""
    cam = cv.cam
    zs = np.stack([z_a, z_a, z_b, z_b], 1) - cam.z
    ys = np.stack([y_a, y_b, y_b, y_a], 1)
    return np.stack([cam.cx + cam.f * (x - cam.x) / zs, cam.horizon + cam.f * (cam.height - ys) / zs], 2)


def _draw_windows(cv: Canvas, b: Building, k: float) -> bool:
    """Rows of windows with a sill, some lit; False when none is in view (then nothing more is drawn)."""
    cam = cv.cam
    period = b.win_w + b.win_gap
    zz = np.arange(b.z0 + b.win_gap, b.z1 - b.win_w, period)
    zz = zz[(zz - 0.1 > cam.z + Z_NEAR) & (cam.f / np.maximum(zz - cam.z, 1e-3) * b.win_w >= 1.2)]
    rows = np.arange(b.floor_h * (1.0 if b.shop else 0.3) + 0.8, b.h - b.win_h - 0.4, b.floor_h)
    if not len(zz) or not len(rows):
        return False
    za, ya = np.meshgrid(zz, rows)
    za, ya = za.ravel(), ya.ravel()
    ww, wh = b.win_w, b.win_h
    cv.polys_array(_window_quads(cv, b.x, za - 0.1, za + ww + 0.1, ya - 0.12, ya), shade(b.trim, k))
    win = _window_quads(cv, b.x, za, za + ww, ya, ya + wh)
    # which windows are lit depends on the building alone, so a video's frames agree
    rnd = np.random.default_rng(int(abs(b.z0) * 1000) + int(b.h * 10))
    lit_mask = rnd.random(len(win)) < b.lit_share
    cv.polys_array(win[~lit_mask], shade(b.win_color, k))
    cv.polys_array(win[lit_mask], (235, 215, 150))
    return True


def _draw_shop_and_sign(cv: Canvas, b: Building, k: float) -> None:
    """A dark shop window on the ground floor and a shop sign above it."""
    x, z0, z1, side = b.x, b.z0, b.z1, b.side
    if b.shop:
        cv.quad3d(
            [(x, 0.2, z0 + 0.8), (x, 2.6, z0 + 0.8), (x, 2.6, z1 - 0.8), (x, 0.2, z1 - 0.8)],
            shade(b.shop_color, 0.35 * k),
            None,
        )
    if b.sign:
        zm = z0 + (z1 - z0) * 0.2
        ln = min(6.0, (z1 - z0) * 0.6)
        xs = x - side * 0.05
        cv.quad3d([(xs, 2.8, zm), (xs, 3.6, zm), (xs, 3.6, zm + ln), (xs, 2.8, zm + ln)], b.sign_color, SIGN)
        cv.quad3d(
            [(xs, 3.0, zm + 0.4), (xs, 3.4, zm + 0.4), (xs, 3.4, zm + ln * 0.7), (xs, 3.0, zm + ln * 0.7)],
            b.sign_text,
            None,
        )


# --------------------------------------------------------------------------- fences and hedges


def _draw_fence(cv: Canvas, f: Fence) -> None:
    z0 = max(f.z0, cv.cam.z + Z_NEAR)
    if f.z1 <= z0:
        return
    if f.kind == "panel":
        _draw_panel_fence(cv, f, z0)
    else:
        _draw_post_fence(cv, f, z0)


def _draw_panel_fence(cv: Canvas, f: Fence, z0: float) -> None:
    """A solid fence with a joint every 25 cm while the joints are 3 px apart."""
    cam, x, z1, h = cv.cam, f.x, f.z1, f.h
    cv.quad3d([(x, 0, z0), (x, h, z0), (x, h, z1), (x, 0, z1)], f.color, FENCE)
    lines = []
    for zz in np.arange(math.ceil(z0), z1, 0.25):
        if cam.scale(zz) * 0.25 < 3:
            break
        lines.append((cam.uv(x, 0, zz), cam.uv(x, h, zz)))
    for a, b in lines:
        cv.line(a, b, 1, shade(f.color, 0.75), None)


def _draw_post_fence(cv: Canvas, f: Fence, z0: float) -> None:
    """Two rails and posts (rail) or pickets; where the posts would be under 2.5 px apart, a solid band."""
    cam, x, z1, h, color = cv.cam, f.x, f.z1, f.h, f.color
    post_w = 0.08
    rails = ((0.15, 0.25 * h), (h - 0.1, h)) if f.kind == "rail" else ((0.1 * h, 0.2 * h), (0.75 * h, 0.85 * h))
    for y0, y1 in rails:
        cv.quad3d([(x, y0, z0), (x, y1, z0), (x, y1, z1), (x, y0, z1)], color, FENCE)
    gap = f.post_gap if f.kind == "rail" else 0.18
    zz = math.ceil(z0 / gap) * gap
    solid_from = None
    posts = []
    while zz < z1:
        if cam.scale(zz) * gap < 2.5:
            solid_from = zz
            break
        posts.append(cv.project([(x, 0, zz), (x, h, zz), (x, h, zz + post_w), (x, 0, zz + post_w)]))
        zz += gap
    cv.polys([p for p in posts if p], color, FENCE)
    if solid_from is not None:
        cv.quad3d([(x, 0, solid_from), (x, h, solid_from), (x, h, z1), (x, 0, z1)], shade(color, 0.9), FENCE)


def _draw_hedge(cv: Canvas, hd: Hedge) -> None:
    cam = cv.cam
    z0, z1 = max(hd.z0, cam.z + Z_NEAR), hd.z1
    if z1 <= z0:
        return
    zs = np.linspace(z0, z1, 24)
    top = [(hd.x, hd.h + hd.bumps[int(abs(z) * 2) % 64], float(z)) for z in zs]
    bottom = [(hd.x, 0.0, float(z)) for z in zs[::-1]]
    cv.poly([cam.uv(*p) for p in top + bottom], hd.color, TREE)
