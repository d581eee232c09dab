"""Golden hashes: the generator draws the same scenes for the same seed and options, bit for bit.

A refactor of reseg.data.synthetic must keep every random draw in the same order; any change to a
scene, its label or the video shows up here. The values were recorded from the generator as it
was before it became a subpackage. They depend on OpenCV's drawing and resizing and on NumPy's
random streams, so they are checked only under the OpenCV release they were recorded with.
Seed 544 was chosen because its two standard scenes use every camera effect (haze, blur,
vignette, roll, bonnet) and, with the easy ones, nearly every kind of object.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import cv2
import numpy as np
import pytest

from reseg.data.synthetic import make_synthetic_video, synth_sample

SEED, SIZE = 544, (120, 160)
RECORDED_WITH = "5.1"  # OpenCV major.minor the hashes come from

# (image sha256, label sha256) of synth_sample(SEED, "train", index, SIZE, difficulty)
SCENES = {
    ("standard", 0): (
        "d52d39a9929a0863001989b41cf038a1789abe643a0d094558cdcc3a8ae633db",
        "aa51e166b4640fea733e47a9b4931439eb28a5bca10b8364cb87a1c9770b4fce",
    ),
    ("standard", 1): (
        "ee096ad4dba295206d287dfacf122452f62ae295c00bc5287cd4c856aa6fcce4",
        "26d01c9e803b68e323a075d146563d6363b4299f2bde8404f219b867c41b2ca2",
    ),
    ("easy", 0): (
        "bca60beb115fbaec783316b983016f20396fc23a523257f054a1ec20e94a0843",
        "dd5540b7005a2a30bbbf7bbac4eb4452b27776e48946051878154253f23fde07",
    ),
    ("easy", 1): (
        "07bf001445c552e9c606b137169b033b5c20abe16e7991beb783afc388de5d04",
        "aa57b36f83339f25cafdd375283e9df9e7739407b4b4a7240c0f97c65530bf06",
    ),
}
# frames 0..2 of make_synthetic_video(seed=SEED, fps=10, size=SIZE), as written to frames_dir (BGR) and labels_dir
VIDEO = {
    "standard": [
        (
            "262d1cf8f640c741531f33b600aa11726856cca6bc76122b4c14ebf2d739ac1a",
            "5651d709a036e849f23dc6bcff10c72c64a89d58190210d71cf3aa90e6655ff4",
        ),
        (
            "624f22e5659e08bf379f3a4e68d4bf5e3c18ea53329ef40aec0cf4ea2725ebf2",
            "85cad5a4f29ef76a4a10d456289d48c6e4401f3cb2517ddabf1880da780ac7e5",
        ),
        (
            "1cc4d02b129f01604bb765b4431238149d8d108118f74944eea2de004a2bba81",
            "44c6574a1844648aaf1e9553bc50006b3e07dad8971bf680d6a2b3c05aa3fad3",
        ),
    ],
    "easy": [
        (
            "b67ca0a379f2e287de318fef14dcd35d3a4a6fe540203652159a563ba3da44c7",
            "f47edbf0bd1f0084163ffb1644c043d8cd5d7e826be481b813534bbe6b8710e1",
        ),
        (
            "42f8707ce619c84bd386e3d5bde076b841c9acf829f5c28ad4cd329284a7db3f",
            "1872a29133323b3f20a9909410d304a025fb22bd617b7400c02c2c91f9a75165",
        ),
        (
            "d2be669dd3474eaafb75d52fc8fcb2ea65614f7983b6da37ea4ae0651aa13378",
            "95770b8f6589c2076d2a785566a04041aae8fcacaad1a0da821a24671906db5d",
        ),
    ],
}

pytestmark = pytest.mark.skipif(
    not cv2.__version__.startswith(RECORDED_WITH + "."),
    reason=f"golden hashes recorded with OpenCV {RECORDED_WITH}, this is {cv2.__version__}",
)


def _sha(a: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(a).tobytes()).hexdigest()


@pytest.mark.parametrize(("difficulty", "index"), list(SCENES))
def test_scene_matches_its_golden_hash(difficulty: str, index: int) -> None:
    img, lab = synth_sample(SEED, "train", index, SIZE, difficulty=difficulty)
    assert img.shape == (*SIZE, 3) and img.dtype == np.uint8 and lab.shape == SIZE and lab.dtype == np.uint8
    assert (_sha(img), _sha(lab)) == SCENES[difficulty, index]


@pytest.mark.parametrize("difficulty", list(VIDEO))
def test_video_frames_match_their_golden_hashes(tmp_path: Path, difficulty: str) -> None:
    make_synthetic_video(
        tmp_path / "drive.avi",
        frames=3,
        size=SIZE,
        fps=10,
        seed=SEED,
        difficulty=difficulty,
        frames_dir=tmp_path / "frames",
        labels_dir=tmp_path / "labels",
    )
    got = []
    for k in range(3):
        img = cv2.imread(str(tmp_path / "frames" / f"frame_{k:05d}.png"), cv2.IMREAD_UNCHANGED)
        lab = cv2.imread(str(tmp_path / "labels" / f"frame_{k:05d}.png"), cv2.IMREAD_UNCHANGED)
        assert img.shape == (*SIZE, 3) and lab.shape == SIZE
        got.append((_sha(img), _sha(lab)))
    assert got == VIDEO[difficulty]
