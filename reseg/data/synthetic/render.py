"""Render a street from a camera position and time, then give it a camera's look; one sample end to end."""

from __future__ import annotations

import cv2
import numpy as np

from reseg.data.synthetic.camera import Z_NEAR, Camera
from reseg.data.synthetic.canvas import Canvas
from reseg.data.synthetic.difficulty import get_difficulty
from reseg.data.synthetic.draw_objects import draw_object
from reseg.data.synthetic.draw_street import draw_scenery
from reseg.data.synthetic.labels import VOID
from reseg.data.synthetic.layout import make_street
from reseg.data.synthetic.palette import any_color, shade
from reseg.data.synthetic.scene import Lighting, Street

# texture strength per label id (sky, building, pole, road, pavement, tree, sign, fence, car, pedestrian,
# bicyclist, void): asphalt and leaves are rough, the sky is smooth
_TEXTURE = np.array([1.5, 7, 3, 9, 10, 20, 3, 6, 4, 5, 5, 8] + [0] * 244, np.float32)


def render(
    st: Street, size: tuple[int, int], rng: np.random.Generator, cam_z: float = 0.0, t: float = 0.0
) -> tuple[np.ndarray, np.ndarray]:
    """Draw the street from camera depth `cam_z` at time `t` (s): RGB uint8 image, SegNet ids (11 = void)."""
    h, w = size
    cam = Camera(st.cam.f, st.cam.cx, st.cam.horizon, st.cam.height, st.cam.x, cam_z)
    cv = Canvas(h, w, cam)
    draw_scenery(cv, st)
    _draw_objects(cv, st, cam_z, t)
    if st.light.hood > 0:
        _draw_bonnet(cv, st.light.hood, rng)
    img = _post_process(cv, st, rng)
    lab = cv.lab
    if st.light.roll:
        img, lab = _roll(img, lab, st.light.roll)
    return img, lab


def synth_sample(
    seed: int, split: str, index: int, size: tuple[int, int] = (360, 480), difficulty: str = "standard"
) -> tuple[np.ndarray, np.ndarray]:
    """One image and its SegNet-id label (11 = void); depends only on (seed, split, index, size, difficulty)."""
    split_id = {"train": 1, "val": 2, "test": 3}.get(split, 4 + sum(map(ord, split)))
    rng = np.random.default_rng(np.random.SeedSequence([int(seed), split_id, int(index)]))
    st = make_street(rng, size, difficulty=get_difficulty(difficulty))
    return render(st, size, rng)


def _draw_objects(cv: Canvas, st: Street, cam_z: float, t: float) -> None:
    """The objects in front of the camera at time `t`, far to near so near ones occlude."""
    visible = [(o.zt(t), o) for o in st.objects if o.zt(t) > cam_z + Z_NEAR + 0.5]
    for z, o in sorted(visible, key=lambda zo: -zo[0]):
        draw_object(cv, o, z)


def _draw_bonnet(cv: Canvas, hood: float, rng: np.random.Generator) -> None:
    """Our own car's bonnet across the bottom of the image: void, as in CamVid."""
    h, w = cv.h, cv.w
    hh = hood * h
    cv.poly(
        [
            (-5, h + 5),
            (-5, h - hh * 0.6),
            (w * 0.25, h - hh),
            (w * 0.75, h - hh),
            (w + 5, h - hh * 0.6),
            (w + 5, h + 5),
        ],
        shade(any_color(rng), 0.5),
        VOID,
    )


def _roll(img: np.ndarray, lab: np.ndarray, degrees: float) -> tuple[np.ndarray, np.ndarray]:
    """A tilted camera: image and label rotated together (the label by nearest neighbour)."""
    h, w = lab.shape
    m = cv2.getRotationMatrix2D((w / 2, h / 2), degrees, 1.0)
    img = cv2.warpAffine(img, m, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT_101)
    lab = cv2.warpAffine(lab, m, (w, h), flags=cv2.INTER_NEAREST, borderMode=cv2.BORDER_REFLECT_101)
    return img, lab


# --------------------------------------------------------------------------- the camera's look


def _post_process(cv: Canvas, st: Street, rng: np.random.Generator) -> np.ndarray:
    """Lighting, shadows, haze, texture, noise, blur: the same label, a different look."""
    L = st.light
    img = cv.img.astype(np.float32)
    if cv.shadow.any():
        img *= (1.0 - L.shadow_k * (cv.shadow.astype(np.float32) / 255.0))[..., None]
    noise_seed = _add_texture(img, cv.lab, L, rng)
    _light(img, L)
    if L.haze > 0:
        img = _haze(img, L.haze, st.cam.horizon, st.sky.bottom)
    if L.vignette > 0:
        _vignette(img, L.vignette)
    _sensor_noise(img, L.noise, noise_seed)
    np.clip(img, 0, 255, out=img)
    gamma_lut = (255.0 * (np.arange(256) / 255.0) ** L.gamma).round().astype(np.uint8)
    out = cv2.LUT(img.astype(np.uint8), gamma_lut)
    if L.blur > 0:
        out = cv2.GaussianBlur(out, (0, 0), L.blur)
    return out


def _add_texture(img: np.ndarray, lab: np.ndarray, L: Lighting, rng: np.random.Generator) -> int:
    """Fine noise and coarse blotches whose strength depends on the surface; returns the noise seed.

    cv2.randn is 4x faster than NumPy's normals; a video keeps one texture seed so surfaces do not
    flicker, while the sensor noise (drawn later from the returned seed) changes every frame.
    """
    h, w = lab.shape
    amp = _TEXTURE * L.texture
    noise_seed = int(rng.integers(2**31 - 1))
    cv2.setRNGSeed(L.texture_seed if L.texture_seed is not None else noise_seed)
    fine = np.empty((h // 2 + 1, w // 2 + 1), np.float32)
    cv2.randn(fine, 0.0, 1.0)
    fine = cv2.resize(fine, (w, h), interpolation=cv2.INTER_LINEAR)
    blotch = cv2.resize(
        rng.standard_normal((h // 16 + 2, w // 16 + 2), dtype=np.float32), (w, h), interpolation=cv2.INTER_CUBIC
    )
    img += ((fine + 0.8 * blotch) * amp[lab])[..., None]
    return noise_seed


def _light(img: np.ndarray, L: Lighting) -> None:
    """Illumination field, exposure and white balance."""
    h, w = img.shape[:2]
    field = cv2.resize(L.illumination, (w, h), interpolation=cv2.INTER_CUBIC)
    img *= field[..., None] * L.gain * np.array(L.cast, np.float32)


def _haze(img: np.ndarray, haze: float, horizon: float, sky_bottom: tuple[int, int, int]) -> np.ndarray:
    """Blend towards the horizon's sky colour, most at the horizon row."""
    h = img.shape[0]
    rows = np.abs(np.arange(h, dtype=np.float32) - horizon) / (0.25 * h)
    a = (haze * np.exp(-rows))[:, None, None]
    return img * (1 - a) + np.array(sky_bottom, np.float32) * a


def _vignette(img: np.ndarray, strength: float) -> None:
    h, w = img.shape[:2]
    yy, xx = np.ogrid[-1 : 1 : complex(0, h), -1 : 1 : complex(0, w)]
    img *= (1 - strength * (xx**2 + yy**2) / 2).astype(np.float32)[..., None]


def _sensor_noise(img: np.ndarray, std: float, seed: int) -> None:
    """Luminance noise plus weaker per-channel (chroma) noise."""
    h, w = img.shape[:2]
    cv2.setRNGSeed(seed)
    lum = np.empty((h, w), np.float32)
    cv2.randn(lum, 0.0, std)
    chroma = np.empty((h, w, 3), np.float32)
    cv2.randn(chroma, (0.0, 0.0, 0.0), (std * 0.4,) * 3)
    img += lum[..., None]
    img += chroma
