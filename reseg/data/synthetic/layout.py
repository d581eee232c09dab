"""Lay out one random street: camera, sky, ground colours, buildings, backdrop, markings, fences, light.

Every helper draws from the one generator in a fixed order; a scene depends only on the
generator's state, so reordering draws (or keyword arguments, which Python evaluates left to
right) changes every image. The golden test guards the order.
"""

from __future__ import annotations

import numpy as np

from reseg.data.synthetic.camera import Camera
from reseg.data.synthetic.difficulty import DIFFICULTIES, Difficulty
from reseg.data.synthetic.palette import Color, any_color, building_color, foliage, hsv, mix, shade
from reseg.data.synthetic.population import populate
from reseg.data.synthetic.scene import (
    Backdrop,
    Building,
    Fence,
    GroundColors,
    Hedge,
    Lighting,
    Markings,
    Patch,
    Sky,
    Street,
    side_x,
    walk_width,
)

FAR = 160.0  # metres of street ahead of a still camera


def make_street(
    rng: np.random.Generator,
    size: tuple[int, int],
    length: float = 0.0,
    difficulty: Difficulty = DIFFICULTIES["standard"],
) -> Street:
    """Lay out a random street; `length` extra metres ahead leave room for a moving camera."""
    h, w = size
    road_w = float(rng.uniform(3.0, 7.5))
    lane_centers = _lane_centers(road_w)
    cam = _camera(rng, h, w, lane_centers)
    walk_w = (float(rng.uniform(1.5, 5.0)), float(rng.uniform(1.5, 5.0)))
    far = FAR + length
    sky = _sky(rng)
    colors = _ground_colors(rng)
    buildings = [b for side in (-1, 1) for b in _buildings(rng, side, road_w, walk_width(walk_w, side), far)]
    backdrop = _backdrop(rng, length)
    markings = _markings(rng, lane_centers)
    patches = _patches(rng, road_w, colors.road)
    fences, hedges = _fences_and_hedges(rng, road_w, walk_w, length, difficulty)
    objects = populate(rng, road_w, walk_w, lane_centers, cam, far, difficulty)
    light = _lighting(rng, road_w, sky.kind, difficulty)
    return Street(
        cam, road_w, walk_w, sky, colors, buildings, backdrop, fences, hedges, markings, patches, objects, light
    )


def _lane_centers(road_w: float) -> list[float]:
    """Lanes of about 3.4 m across the whole road, left to right."""
    lanes = max(1, int(round(2 * road_w / 3.4)))
    lane_w = 2 * road_w / lanes
    return [-road_w + lane_w * (i + 0.5) for i in range(lanes)]


def _camera(rng: np.random.Generator, h: int, w: int, lane_centers: list[float]) -> Camera:
    """A camera of random focal length, centre, horizon and height, in a lane right of the centre line."""
    cam_lane = [c for c in lane_centers if c > 0] or lane_centers
    return Camera(
        f=float(w * rng.uniform(0.65, 1.15)),
        cx=float(w * rng.uniform(0.32, 0.68)),
        horizon=float(h * rng.uniform(0.34, 0.55)),
        height=float(rng.uniform(1.1, 2.3)),
        x=float(rng.choice(cam_lane) + rng.uniform(-0.6, 0.6)),
    )


_SKY_COLORS = {  # kind: (hue, saturation, value) ranges of the top and of the bottom of the sky
    "clear": (((0.55, 0.63), (0.35, 0.8), (0.55, 0.95)), ((0.52, 0.6), (0.05, 0.3), (0.8, 1.0))),
    "overcast": (((0, 1), (0.0, 0.06), (0.5, 0.85)), ((0, 1), (0.0, 0.05), (0.7, 0.97))),
    "dusk": (((0.58, 0.7), (0.3, 0.7), (0.25, 0.55)), ((0.02, 0.12), (0.35, 0.8), (0.75, 1.0))),
    "hazy": (((0.1, 0.6), (0.0, 0.2), (0.7, 0.95)), ((0.1, 0.6), (0.0, 0.1), (0.85, 1.0))),
}


def _sky(rng: np.random.Generator) -> Sky:
    kind = str(rng.choice(["clear", "overcast", "dusk", "hazy"], p=[0.45, 0.3, 0.12, 0.13]))
    top_hsv, bottom_hsv = _SKY_COLORS[kind]
    top = hsv(rng, *top_hsv)
    bottom = hsv(rng, *bottom_hsv)
    clouds = [
        (
            float(rng.uniform(0, 1)),
            float(rng.uniform(0, 1)),
            float(rng.uniform(0.05, 0.25)),
            float(rng.uniform(0.02, 0.07)),
        )
        for _ in range(int(rng.integers(0, 8)))
    ]
    cloud = mix(bottom, (250, 250, 250), float(rng.uniform(0.3, 0.9)))
    return Sky(kind=kind, top=top, bottom=bottom, clouds=clouds, cloud=cloud)


def _ground_colors(rng: np.random.Generator) -> GroundColors:
    """Ground colours overlap on purpose: grey road, grey pavement, grey buildings."""
    road = hsv(rng, (0, 1), (0.0, 0.1), (0.22, 0.55))
    walk = hsv(rng, (0.0, 0.13), (0.0, 0.35), (0.35, 0.8))
    yard = hsv(rng, (0.0, 0.15), (0.0, 0.3), (0.3, 0.75))
    curb = hsv(rng, (0, 1), (0.0, 0.08), (0.55, 0.9))
    marking: Color = (235, 235, 230) if rng.random() < 0.75 else (230, 190, 40)
    tile = shade(walk, float(rng.uniform(0.75, 0.9)))
    return GroundColors(road=road, walk=walk, yard=yard, curb=curb, marking=marking, tile=tile)


def _buildings(rng: np.random.Generator, side: int, road_w: float, walk: float, far: float) -> list[Building]:
    """Facades along one side, near to far, with gaps where the back row or the sky shows through."""
    buildings = []
    z = float(rng.uniform(-15, -5))
    while z < far:
        seg = float(rng.uniform(6, 28))
        if rng.random() < 0.2:
            z += float(rng.uniform(3, 15))
            continue
        buildings.append(_building(rng, side, road_w, walk, z, seg))
        z += seg
    return buildings


def _building(rng: np.random.Generator, side: int, road_w: float, walk: float, z: float, seg: float) -> Building:
    color = building_color(rng)
    floors = int(rng.integers(1, 8))
    return Building(
        side=side,
        x=side_x(road_w, side, walk + float(rng.uniform(0, 2.5)) if rng.random() < 0.5 else walk),
        z0=z,
        z1=z + seg,
        h=floors * float(rng.uniform(2.8, 3.6)) + float(rng.uniform(0, 2)),
        color=color,
        floor_h=float(rng.uniform(2.8, 3.6)),
        win_w=float(rng.uniform(0.8, 1.8)),
        win_gap=float(rng.uniform(1.0, 3.0)),
        win_h=float(rng.uniform(1.0, 1.8)),
        win_color=hsv(rng, (0.5, 0.7), (0.0, 0.4), (0.05, 0.45))
        if rng.random() < 0.7
        else hsv(rng, (0.5, 0.65), (0.05, 0.3), (0.6, 0.95)),
        lit_share=float(rng.uniform(0, 0.3)),
        shop=bool(rng.random() < 0.45),
        shop_color=any_color(rng),
        sign=bool(rng.random() < 0.5),
        sign_color=any_color(rng),
        sign_text=any_color(rng),
        trim=shade(color, float(rng.uniform(0.6, 1.3))),
    )


def _backdrop(rng: np.random.Generator, length: float) -> Backdrop:
    return Backdrop(
        end=float(rng.uniform(50, 150)) + length if rng.random() < 0.35 else None,
        end_h=float(rng.uniform(8, 35)),
        end_color=building_color(rng),
        back_rows=[(building_color(rng), float(rng.uniform(6, 30)) if rng.random() < 0.7 else 0.0) for _ in range(12)],
        treeline=bool(rng.random() < 0.35),
        tree_color=foliage(rng, bool(rng.random() < 0.15)),
        skyline=[
            (
                float(rng.uniform(-1, 1)),
                float(rng.uniform(0.02, 0.12)),
                float(rng.uniform(0.01, 0.08)),
                building_color(rng),
            )
            for _ in range(int(rng.integers(0, 10)))
        ],
    )


def _markings(rng: np.random.Generator, lane_centers: list[float]) -> Markings:
    return Markings(
        center=bool(rng.random() < 0.8),
        dash=float(rng.uniform(1.5, 4)),
        period=float(rng.uniform(6, 12)),
        phase=float(rng.uniform(0, 10)),
        edge=bool(rng.random() < 0.6),
        lanes=lane_centers,
        lane_lines=bool(rng.random() < 0.5),
        crossing=float(rng.uniform(6, 35)) if rng.random() < 0.3 else None,
        width=float(rng.uniform(0.1, 0.2)),
    )


def _patches(rng: np.random.Generator, road_w: float, asphalt: Color) -> list[Patch]:
    patches = []
    for _ in range(int(rng.integers(0, 6))):
        x0 = float(rng.uniform(-road_w, road_w - 1))
        z0 = float(rng.uniform(3, 60))
        patches.append(
            Patch(
                x0=x0,
                z0=z0,
                w=float(rng.uniform(0.5, 3)),
                length=float(rng.uniform(1, 8)),
                color=shade(asphalt, float(rng.uniform(0.7, 1.3))),
            )
        )
    return patches


def _fences_and_hedges(
    rng: np.random.Generator, road_w: float, walk_w: tuple[float, float], length: float, difficulty: Difficulty
) -> tuple[list[Fence], list[Hedge]]:
    fences, hedges = [], []
    for side in (-1, 1):
        walk = walk_width(walk_w, side)
        if rng.random() < difficulty.fence_p:
            fences.append(_fence(rng, side, road_w, walk, length, difficulty.thin_scale))
        if rng.random() < 0.25:
            hedges.append(_hedge(rng, side, road_w, walk, length))
    return fences, hedges


def _fence(rng: np.random.Generator, side: int, road_w: float, walk: float, length: float, thin_scale: float) -> Fence:
    z0 = float(rng.uniform(-5, 40))
    return Fence(
        side=side,
        x=side_x(road_w, side, walk if rng.random() < 0.7 else 0.25),
        z0=z0,
        z1=z0 + float(rng.uniform(8, 60)) + length,
        h=float(rng.uniform(0.8, 1.8)) * thin_scale**0.5,
        kind=str(rng.choice(["rail", "picket", "panel"])),
        color=any_color(rng) if rng.random() < 0.5 else hsv(rng, (0, 1), (0, 0.1), (0.1, 0.8)),
        post_gap=float(rng.uniform(1.5, 3.0)),
    )


def _hedge(rng: np.random.Generator, side: int, road_w: float, walk: float, length: float) -> Hedge:
    z0 = float(rng.uniform(-5, 40))
    return Hedge(
        side=side,
        x=side_x(road_w, side, walk - 0.3),
        z0=z0,
        z1=z0 + float(rng.uniform(5, 30)) + length,
        h=float(rng.uniform(0.6, 1.6)),
        color=foliage(rng, False),
        bumps=rng.uniform(-0.2, 0.2, 64).tolist(),
    )


def _lighting(rng: np.random.Generator, road_w: float, sky_kind: str, difficulty: Difficulty) -> Lighting:
    effects = difficulty.effects
    return Lighting(
        sun=int(rng.choice([-1, 1])),
        sun_shade=float(rng.uniform(0.55, 0.9)),
        shadow=bool(rng.random() < 0.5) and sky_kind != "overcast",
        shadow_w=float(rng.uniform(2, 2 * road_w + 4)),
        shadow_k=float(rng.uniform(0.3, 0.6)),
        gain=float(rng.uniform(0.65, 1.25)),
        gamma=float(rng.uniform(0.75, 1.35)),
        cast=rng.uniform(0.88, 1.12, 3).tolist(),
        noise=float(rng.uniform(1.0, difficulty.max_noise)),
        texture=float(rng.uniform(0.5, 1.6)) * difficulty.texture,
        blur=float(rng.uniform(0.4, 1.3)) if rng.random() < 0.35 and effects else 0.0,
        haze=float(rng.uniform(0.2, 0.6)) if rng.random() < 0.25 and effects else 0.0,
        vignette=float(rng.uniform(0.1, 0.4)) if rng.random() < 0.3 and effects else 0.0,
        illumination=rng.uniform(0.78, 1.15, (3, 4)).astype(np.float32),
        roll=float(rng.uniform(-4, 4)) if rng.random() < 0.3 and effects else 0.0,
        hood=float(rng.uniform(0.06, 0.14)) if rng.random() < 0.08 and effects else 0.0,
    )
