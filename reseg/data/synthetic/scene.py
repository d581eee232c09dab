"""What a synthetic street is made of, in world metres: the layout draws these, the renderer reads them."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from reseg.data.synthetic.camera import Camera
from reseg.data.synthetic.palette import Color

# --------------------------------------------------------------------------- things on the ground


@dataclass(kw_only=True)
class Placed:
    """Something standing on the ground at (x, z), drawn at its depth; `vz` moves it along the road."""

    x: float
    z: float
    vz: float = 0.0

    def zt(self, t: float) -> float:
        """Its depth at time `t` (s)."""
        return self.z + self.vz * t


@dataclass(kw_only=True)
class Car(Placed):
    """A sedan (sloped cabin) or a van or bus (`boxy`: one straight box)."""

    w: float
    length: float
    h: float
    hb: float  # height of the bonnet / window line
    boxy: bool
    oncoming: bool  # we see its front (headlights), not its rear
    color: Color
    glass: Color
    wheel: float  # wheel radius
    plate: Color


@dataclass(frozen=True)
class Look:
    """How a person looks: height, build, colours, gait and what they carry."""

    h: float
    bulk: float
    skin: Color
    hair: Color
    top: Color
    legs: Color
    stride: float  # signed fraction of the height between the feet (0: standing)
    coat: bool
    bag: bool
    bag_color: Color
    umbrella: Color | None


@dataclass(kw_only=True)
class Person(Placed):
    look: Look


@dataclass(kw_only=True)
class Cyclist(Placed):
    look: Look
    frame: Color
    side_on: bool  # seen from the side (two wheels) rather than from behind
    dir: int  # -1 / +1: which way a side-on bicycle points


@dataclass(frozen=True)
class Sign:
    """A sign on a pole, `y` metres up; `back` shows its grey back plate only."""

    shape: str  # circle, triangle, rect, octagon or light (a traffic light)
    c1: Color
    c2: Color
    size: float
    y: float
    down: bool  # a triangle standing on its tip
    on: int  # the lit lamp of a traffic light: 0 red, 1 amber, 2 green
    back: bool


@dataclass(kw_only=True)
class Pole(Placed):
    kind: str  # "lamp" (with an arm and a head) or "post"
    h: float
    w: float
    side: int  # the street side it stands on; a lamp's arm reaches over the road
    arm: float
    lit: bool
    signs: list[Sign]
    color: Color


@dataclass(frozen=True)
class Blob:
    """One ellipse of a tree crown, relative to the crown's centre (metres)."""

    dx: float
    dy: float
    rx: float
    ry: float
    color: Color


@dataclass(kw_only=True)
class Tree(Placed):
    trunk_h: float
    trunk_w: float
    crown: float
    blobs: list[Blob]
    bark: Color


@dataclass(kw_only=True)
class Clutter(Placed):
    """A bin, bollard or box: CamVid's void."""

    w: float
    h: float
    round: bool
    color: Color


# --------------------------------------------------------------------------- the street around them


@dataclass
class Sky:
    kind: str  # clear, overcast, dusk or hazy
    top: Color
    bottom: Color
    clouds: list[tuple[float, float, float, float]]  # centre (fractions of width, of horizon), radii
    cloud: Color


@dataclass
class GroundColors:
    road: Color
    walk: Color
    yard: Color
    curb: Color
    marking: Color
    tile: Color  # paving joints


@dataclass
class Building:
    """One facade along the street at x, from depth z0 to z1, with rows of windows, maybe a shop and a sign."""

    side: int
    x: float
    z0: float
    z1: float
    h: float
    color: Color
    floor_h: float
    win_w: float
    win_gap: float
    win_h: float
    win_color: Color
    lit_share: float  # the fraction of windows lit
    shop: bool
    shop_color: Color
    sign: bool
    sign_color: Color
    sign_text: Color
    trim: Color


@dataclass
class Backdrop:
    """What lies behind the street: an end wall, a back row of buildings, a tree line, a skyline."""

    end: float | None  # depth of a wall closing the street, if any
    end_h: float
    end_color: Color
    back_rows: list[tuple[Color, float]]  # colour, height (0: a gap)
    treeline: bool
    tree_color: Color
    skyline: list[tuple[float, float, float, Color]]  # centre, half width, height (fractions of the image)


@dataclass
class Fence:
    side: int
    x: float
    z0: float
    z1: float
    h: float
    kind: str  # rail, picket or panel
    color: Color
    post_gap: float


@dataclass
class Hedge:
    side: int
    x: float
    z0: float
    z1: float
    h: float
    color: Color
    bumps: list[float]  # height offsets along its top, repeating every 32 m


@dataclass
class Markings:
    center: bool
    dash: float
    period: float
    phase: float
    edge: bool
    lanes: list[float]  # lane centres
    lane_lines: bool
    crossing: float | None  # depth of a zebra crossing, if any
    width: float


@dataclass
class Patch:
    """A repaired patch of asphalt (image only)."""

    x0: float
    z0: float
    w: float
    length: float
    color: Color


@dataclass
class Lighting:
    """The light and the camera's faults: everything the renderer changes without changing the label."""

    sun: int  # the side the sun is on; facades on the other side are shaded
    sun_shade: float
    shadow: bool  # buildings on the shaded side cast a shadow over the road
    shadow_w: float
    shadow_k: float
    gain: float
    gamma: float
    cast: list[float]  # white balance, per channel
    noise: float
    texture: float
    blur: float
    haze: float
    vignette: float
    illumination: np.ndarray  # 3 x 4 brightness field, upsampled over the image
    roll: float  # camera roll, degrees
    hood: float  # height of our own car's bonnet, as a fraction of the image
    texture_seed: int | None = None  # a video keeps one so surfaces do not flicker


@dataclass
class Street:
    """World layout of one scene (metres); images are renders of it from a camera."""

    cam: Camera
    road_w: float  # half width: the road spans x in [-road_w, road_w]
    walk_w: tuple[float, float]  # left, right sidewalk widths
    sky: Sky
    colors: GroundColors
    buildings: list[Building]
    backdrop: Backdrop
    fences: list[Fence]
    hedges: list[Hedge]
    markings: Markings
    patches: list[Patch]
    objects: list[Placed]
    light: Lighting


def side_x(road_w: float, side: int, offset: float) -> float:
    """X of a line `offset` metres outside the road edge on `side` (-1 left, +1 right)."""
    return side * (road_w + offset)


def walk_width(walk_w: tuple[float, float], side: int) -> float:
    """The sidewalk width on `side` (-1 left, +1 right)."""
    return walk_w[0 if side < 0 else 1]
