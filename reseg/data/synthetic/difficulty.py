"""How hard a synthetic scene is: the distances, sizes and camera faults the layout draws from."""

from __future__ import annotations

from dataclasses import dataclass

from reseg.errors import ResegError


@dataclass(frozen=True)
class Difficulty:
    """What makes a scene hard: how far and how thin the small classes are, and how poor the camera is.

    "standard" reproduces the generator's original distributions exactly (same random draws, same
    images); other levels change only these numbers.
    """

    person_far: float = 60.0  # metres: farthest pedestrian / cyclist / crossing person
    cyclist_far: float = 55.0
    crossing_far: float = 40.0
    car_far: float = 90.0
    pole_far: float = 1e9  # poles and signs are placed up to this distance
    pole_gap: float = 1.0  # multiplier of the spacing between poles
    thin_scale: float = 1.0  # multiplier of pole width, sign size and fence height
    crowd: float = 1.0  # multiplier of the number of pedestrians
    cyclists: float = 1.0  # multiplier of the number of cyclists
    fence_p: float = 0.35  # chance of a fence along each side
    max_noise: float = 7.0  # sensor noise (std of 8-bit values) is drawn from [1, max_noise]
    texture: float = 1.0  # multiplier of surface texture
    effects: bool = True  # haze, blur, vignette, camera roll, car bonnet


DIFFICULTIES: dict[str, Difficulty] = {
    "standard": Difficulty(),
    "easy": Difficulty(
        person_far=22.0,
        cyclist_far=24.0,
        crossing_far=20.0,
        car_far=45.0,
        pole_far=45.0,
        pole_gap=0.6,
        thin_scale=2.2,
        crowd=2.0,
        cyclists=2.5,
        fence_p=0.7,
        max_noise=3.0,
        texture=0.6,
        effects=False,
    ),
}


def get_difficulty(name: str) -> Difficulty:
    """The level called `name`; a named error lists the valid ones (a tool may add levels to DIFFICULTIES)."""
    try:
        return DIFFICULTIES[name]
    except KeyError:
        raise ResegError(f"unknown synthetic difficulty {name!r}; valid choices: {', '.join(DIFFICULTIES)}") from None
