"""Put the street's objects in place: poles and signs, trees, parked cars, pedestrians, clutter, traffic,
cyclists and people crossing.

Like the layout, every helper draws from the one generator in a fixed order (the golden test
guards it): side by side, each kind of roadside object, then the road users.
"""

from __future__ import annotations

import numpy as np

from reseg.data.synthetic.camera import Camera
from reseg.data.synthetic.difficulty import Difficulty
from reseg.data.synthetic.palette import any_color, foliage, hsv, shade, vehicle_color
from reseg.data.synthetic.scene import (
    Blob,
    Car,
    Clutter,
    Cyclist,
    Look,
    Person,
    Placed,
    Pole,
    Sign,
    Tree,
    side_x,
    walk_width,
)

_SIGN_SHAPES = ["circle", "triangle", "rect", "octagon", "light"]
_SIGN_SHAPE_P = [0.3, 0.2, 0.3, 0.05, 0.15]
_SIGN_FACES = [(200, 30, 30), (30, 70, 170), (240, 240, 240), (30, 120, 60), (240, 190, 30)]
_SIGN_INKS = [(245, 245, 245), (30, 70, 170), (250, 210, 40), (30, 30, 30)]


def populate(
    rng: np.random.Generator,
    road_w: float,
    walk_w: tuple[float, float],
    lanes: list[float],
    cam: Camera,
    far: float,
    difficulty: Difficulty,
) -> list[Placed]:
    """Every object of the street; `far` (160 m plus a video's length) bounds the roadside rows."""
    objs: list[Placed] = []
    z_lo, z_hi = cam.z + 2.0, min(far, cam.z + 110.0) + (far - 160.0)
    for side in (-1, 1):
        walk = walk_width(walk_w, side)
        if rng.random() < 0.85:
            objs += _poles(rng, side, road_w, min(z_hi, difficulty.pole_far), difficulty)
        if rng.random() < 0.6:
            objs += _trees(rng, side, road_w, walk, z_hi)
        if rng.random() < 0.5:
            objs += _parked_cars(rng, side, road_w, min(z_hi, cam.z + difficulty.car_far))
        objs += _pedestrians(rng, side, road_w, walk, z_lo, difficulty)
        objs += _clutter(rng, side, road_w, walk, z_lo)
    objs += _traffic(rng, lanes, cam, difficulty)
    objs += _cyclists(rng, road_w, z_lo, difficulty)
    objs += _crossing(rng, road_w, z_lo, difficulty)
    return objs


def _poles(rng: np.random.Generator, side: int, road_w: float, z_end: float, difficulty: Difficulty) -> list[Placed]:
    """Street lamps and sign posts near the curb, at random spacing up to `z_end`."""
    poles: list[Placed] = []
    z = float(rng.uniform(-5, 15))
    gap = float(rng.uniform(12, 32)) * difficulty.pole_gap
    while z < z_end:
        poles.append(_pole(rng, side, road_w, z, difficulty.thin_scale))
        z += gap * float(rng.uniform(0.6, 1.4))
    return poles


def _pole(rng: np.random.Generator, side: int, road_w: float, z: float, thin_scale: float) -> Pole:
    kind = "lamp" if rng.random() < 0.6 else "post"
    n_signs = int(rng.integers(1, 3)) if kind == "post" else int(rng.random() < 0.25)
    signs = [_sign(rng, k, thin_scale) for k in range(n_signs)]
    return Pole(
        x=side_x(road_w, side, float(rng.uniform(0.3, 0.7))),
        z=z,
        kind=kind,
        h=float(rng.uniform(5, 10) if kind == "lamp" else rng.uniform(2.6, 4.2)),
        w=float(rng.uniform(0.1, 0.28)) * thin_scale,
        side=side,
        arm=float(rng.uniform(0.8, 2.5)),
        lit=bool(rng.random() < 0.3),
        signs=signs,
        color=hsv(rng, (0, 1), (0, 0.15), (0.1, 0.75)) if rng.random() < 0.8 else any_color(rng),
    )


def _sign(rng: np.random.Generator, k: int, thin_scale: float) -> Sign:
    """The k-th sign up a pole."""
    shape = str(rng.choice(_SIGN_SHAPES, p=_SIGN_SHAPE_P))
    c1 = _SIGN_FACES[int(rng.integers(5))]
    c2 = _SIGN_INKS[int(rng.integers(4))]
    return Sign(
        shape=shape,
        c1=c1,
        c2=c2,
        size=float(rng.uniform(0.45, 0.9)) * thin_scale,
        y=float(rng.uniform(2.0, 3.2)) + k * 0.95,
        down=bool(rng.random() < 0.3),
        on=int(rng.integers(3)),
        back=bool(rng.random() < 0.12),
    )


def _trees(rng: np.random.Generator, side: int, road_w: float, walk: float, z_end: float) -> list[Placed]:
    """A row of street trees of one season."""
    trees: list[Placed] = []
    z = float(rng.uniform(-3, 10))
    gap = float(rng.uniform(6, 16))
    autumn = bool(rng.random() < 0.2)
    while z < z_end:
        trees.append(_tree(rng, side, road_w, walk, z, autumn))
        z += gap * float(rng.uniform(0.7, 1.3))
    return trees


def _tree(rng: np.random.Generator, side: int, road_w: float, walk: float, z: float, autumn: bool) -> Tree:
    crown = float(rng.uniform(2.0, 6.0))
    spread = crown * float(rng.uniform(0.35, 0.6))
    base = foliage(rng, autumn)
    blobs = [
        Blob(
            dx=float(rng.uniform(-spread, spread) * 0.6),
            dy=float(rng.uniform(-crown, crown) * 0.3),
            rx=float(spread * rng.uniform(0.45, 0.8)),
            ry=float(crown * rng.uniform(0.25, 0.45)),
            color=shade(base, float(rng.uniform(0.7, 1.25))),
        )
        for _ in range(int(rng.integers(4, 9)))
    ]
    return Tree(
        x=side_x(road_w, side, walk * float(rng.uniform(0.4, 0.95))),
        z=z,
        trunk_h=float(rng.uniform(1.5, 3.5)),
        trunk_w=float(rng.uniform(0.15, 0.45)),
        crown=crown,
        blobs=blobs,
        bark=hsv(rng, (0.04, 0.1), (0.2, 0.6), (0.12, 0.45)),
    )


def _parked_cars(rng: np.random.Generator, side: int, road_w: float, z_end: float) -> list[Placed]:
    """Cars bumper to bumper (with random gaps) along the curb."""
    cars: list[Placed] = []
    z = float(rng.uniform(0, 12))
    while z < z_end:
        car = make_car(rng, side * (road_w - 1.15), z, 0.0, oncoming=False)
        cars.append(car)
        z += car.length + float(rng.uniform(0.8, 12))
    return cars


def _pedestrians(
    rng: np.random.Generator, side: int, road_w: float, walk: float, z_lo: float, difficulty: Difficulty
) -> list[Placed]:
    """People walking along the sidewalk, either way."""
    people: list[Placed] = []
    for _ in range(int(rng.poisson(2.2 * difficulty.crowd))):
        child = bool(rng.random() < 0.12)
        people.append(
            Person(
                x=side_x(road_w, side, float(rng.uniform(0.4, max(0.5, walk - 0.3)))),
                z=float(rng.uniform(z_lo, difficulty.person_far)),
                vz=float(rng.choice([-1.3, 1.3]) * rng.uniform(0.6, 1.1)),
                look=person_look(rng, child),
            )
        )
    return people


def _clutter(rng: np.random.Generator, side: int, road_w: float, walk: float, z_lo: float) -> list[Placed]:
    """Bins, bollards, boxes on the sidewalk: CamVid's void."""
    return [
        Clutter(
            x=side_x(road_w, side, float(rng.uniform(0.2, walk))),
            z=float(rng.uniform(z_lo, 50)),
            w=float(rng.uniform(0.2, 0.9)),
            h=float(rng.uniform(0.5, 1.3)),
            round=bool(rng.random() < 0.5),
            color=any_color(rng),
        )
        for _ in range(int(rng.poisson(0.8)))
    ]


def _traffic(rng: np.random.Generator, lanes: list[float], cam: Camera, difficulty: Difficulty) -> list[Placed]:
    """Moving cars; those in a left lane of a multi-lane road come towards the camera."""
    cars: list[Placed] = []
    for _ in range(int(rng.poisson(2.5))):
        lane = float(rng.choice(lanes))
        oncoming = lane < 0 and len(lanes) > 1
        speed = float(rng.uniform(3, 14)) * (-1 if oncoming else 1)
        x = lane + float(rng.uniform(-0.4, 0.4))
        cars.append(make_car(rng, x, float(rng.uniform(cam.z + 5, difficulty.car_far)), speed, oncoming))
    return cars


def _cyclists(rng: np.random.Generator, road_w: float, z_lo: float, difficulty: Difficulty) -> list[Placed]:
    """Cyclists near either curb, riding away from the camera."""
    cyclists: list[Placed] = []
    for _ in range(int(rng.poisson(0.9 * difficulty.cyclists))):
        side = int(rng.choice([-1, 1]))
        cyclists.append(
            Cyclist(
                x=side * (road_w - float(rng.uniform(0.5, 1.3))),
                z=float(rng.uniform(z_lo + 1, difficulty.cyclist_far)),
                vz=float(rng.uniform(2, 6)),
                look=person_look(rng),
                frame=any_color(rng),
                side_on=bool(rng.random() < 0.45),
                dir=int(rng.choice([-1, 1])),
            )
        )
    return cyclists


def _crossing(rng: np.random.Generator, road_w: float, z_lo: float, difficulty: Difficulty) -> list[Placed]:
    """Someone standing in the road, crossing it."""
    return [
        Person(
            x=float(rng.uniform(-road_w, road_w)),
            z=float(rng.uniform(z_lo + 2, difficulty.crossing_far)),
            look=person_look(rng),
        )
        for _ in range(int(rng.poisson(0.5)))
    ]


def person_look(rng: np.random.Generator, child: bool = False) -> Look:
    skin = hsv(rng, (0.03, 0.09), (0.25, 0.65), (0.3, 0.95))
    return Look(
        h=float(rng.uniform(1.0, 1.35) if child else rng.uniform(1.55, 1.95)),
        bulk=float(rng.uniform(0.85, 1.25)),
        skin=skin,
        hair=hsv(rng, (0.02, 0.12), (0.1, 0.8), (0.05, 0.6)) if rng.random() < 0.85 else any_color(rng),
        top=any_color(rng),
        legs=any_color(rng) if rng.random() < 0.4 else hsv(rng, (0.55, 0.7), (0.0, 0.5), (0.1, 0.45)),
        stride=float(rng.uniform(-0.35, 0.35)),
        coat=bool(rng.random() < 0.3),
        bag=bool(rng.random() < 0.25),
        bag_color=any_color(rng),
        umbrella=any_color(rng) if rng.random() < 0.06 else None,
    )


def make_car(rng: np.random.Generator, x: float, z: float, vz: float, oncoming: bool) -> Car:
    """A sedan (72 %), van or bus of random size and colour."""
    kind = rng.choice(["sedan", "van", "bus"], p=[0.72, 0.2, 0.08])
    if kind == "bus":
        w, length, h, hb, boxy = 2.5, float(rng.uniform(8, 12)), float(rng.uniform(2.9, 3.4)), 1.2, True
    elif kind == "van":
        w, length, h, hb, boxy = (
            float(rng.uniform(1.8, 2.1)),
            float(rng.uniform(4.5, 5.5)),
            float(rng.uniform(1.8, 2.3)),
            1.05,
            True,
        )
    else:
        w, length, h, hb, boxy = (
            float(rng.uniform(1.65, 1.9)),
            float(rng.uniform(3.8, 4.8)),
            float(rng.uniform(1.35, 1.6)),
            float(rng.uniform(0.8, 0.95)),
            False,
        )
    return Car(
        x=x,
        z=z,
        vz=vz,
        w=w,
        length=length,
        h=h,
        hb=hb,
        boxy=boxy,
        oncoming=oncoming,
        color=vehicle_color(rng),
        glass=hsv(rng, (0.5, 0.65), (0.05, 0.35), (0.08, 0.4)),
        wheel=0.32,
        plate=(235, 235, 225) if rng.random() < 0.7 else (240, 200, 40),
    )
