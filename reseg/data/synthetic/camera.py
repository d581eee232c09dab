"""The pinhole camera the street is seen through, and near-plane clipping of world polygons."""

from __future__ import annotations

from dataclasses import dataclass

Z_NEAR = 0.5  # metres in front of the camera where geometry is clipped

Point3 = tuple[float, float, float]


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


def clip_near(pts: list[Point3], zc: float) -> list[Point3]:
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
