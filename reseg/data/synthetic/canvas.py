"""An image and its label map drawn together, with sub-pixel OpenCV primitives.

The image is anti-aliased, the label is not (LINE_8): every label pixel is one class.
"""

from __future__ import annotations

from typing import Any

import cv2
import numpy as np

from reseg.data.synthetic.camera import Z_NEAR, Camera, Point3, clip_near
from reseg.data.synthetic.labels import SKY
from reseg.data.synthetic.palette import Color

Point2 = tuple[float, float]


def rect(u0: float, v0: float, u1: float, v1: float) -> list[Point2]:
    """The four corners of an axis-aligned pixel rectangle."""
    return [(u0, v0), (u1, v0), (u1, v1), (u0, v1)]


def _fixed(c: Point2) -> tuple[int, int]:
    """A pixel point in OpenCV's 4-fractional-bit fixed point (shift=4)."""
    return (int(round(c[0] * 16)), int(round(c[1] * 16)))


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

    def quad3d(self, pts: list[Point3], color: Color, label: int | None) -> None:
        """Fill a world polygon, clipped at the near plane."""
        pts = clip_near(pts, self.cam.z + Z_NEAR)
        if len(pts) >= 3:
            self.poly([self.cam.uv(*p) for p in pts], color, label)

    def project(self, pts: list[Point3]) -> list[Point2]:
        """A world polygon's pixel corners after near clipping; [] when nothing is in front of the camera."""
        pts = clip_near(pts, self.cam.z + Z_NEAR)
        return [self.cam.uv(*p) for p in pts] if len(pts) >= 3 else []

    def shadow_quad(self, pts: list[Point3]) -> None:
        uv = self.project(pts)
        if uv:
            cv2.fillPoly(self.shadow, [self._pts(uv)], 255, cv2.LINE_AA, 4)

    def ellipse(self, c: Point2, axes: Point2, angle: float, color: Color, label: int | None) -> None:
        cc = _fixed(c)
        ax = (max(1, int(round(axes[0] * 16))), max(1, int(round(axes[1] * 16))))
        cv2.ellipse(self.img, cc, ax, angle, 0, 360, color, -1, cv2.LINE_AA, 4)
        if label is not None:
            cv2.ellipse(self.lab, cc, ax, angle, 0, 360, int(label), -1, cv2.LINE_8, 4)

    def line(self, a: Point2, b: Point2, thick: float, color: Color, label: int | None) -> None:
        pa, pb = _fixed(a), _fixed(b)
        t = max(1, int(round(thick)))
        cv2.line(self.img, pa, pb, color, t, cv2.LINE_AA, 4)
        if label is not None:
            cv2.line(self.lab, pa, pb, int(label), t, cv2.LINE_8, 4)

    def ring(self, c: Point2, r: float, thick: float, color: Color, label: int | None) -> None:
        cc = _fixed(c)
        t = max(1, int(round(thick)))
        cv2.circle(self.img, cc, max(1, int(round(r * 16))), color, t, cv2.LINE_AA, 4)
        if label is not None:
            cv2.circle(self.lab, cc, max(1, int(round(r * 16))), int(label), t, cv2.LINE_8, 4)
