"""Procedural street scenes with CamVid's 11 classes: the dataset that works with no download.

A small 3-D street (road, markings, sidewalks, buildings with windows, trees, poles, signs,
fences, cars, pedestrians, cyclists) is laid out in world coordinates and projected through a
pinhole camera with random height, focal length, horizon and yaw, then drawn back to front so
near things occlude far ones. Colours overlap between classes (grey cars on grey roads, grey
buildings, clothes of any colour) and lighting, shadows, haze, texture noise and blur vary, so a
model has to learn shape and context rather than a colour lookup.

Every image depends only on (seed, split, index, difficulty), so a dataset is reproducible and can
be drawn in parallel. It is written in the CamVid SegNet layout and read back by the CamVid loader.
tests/test_data_synthetic_golden.py pins a few scenes and video frames to their hashes.

Two difficulties share the renderer: "standard" (people and cyclists up to 60 m away, 10-28 cm
poles, haze, blur, sensor noise) and "easy", which the CPU demo trains on: the same streets with
the small classes nearer, thicker and more frequent, and a clean camera, so that every class is
learnable at 120x160 in a few CPU minutes.

Modules, in the order a sample is made: difficulty (the levels), layout and population (a random
Street of scene dataclasses), camera and canvas (projection, drawing image and label together),
draw_street and draw_objects (what each thing looks like), render (the camera's look, one
sample), dataset and video (writing), reuse (an existing set, and how it differs from the config).
"""

from __future__ import annotations

from reseg.data.synthetic.camera import Camera
from reseg.data.synthetic.dataset import GENERATOR_VERSION, META_FILE, SPLITS, make_synthetic
from reseg.data.synthetic.difficulty import DIFFICULTIES, Difficulty, get_difficulty
from reseg.data.synthetic.layout import make_street
from reseg.data.synthetic.render import render, synth_sample
from reseg.data.synthetic.reuse import SYNTHETIC_KEYS, ensure_synthetic, mismatch_warning
from reseg.data.synthetic.scene import Street
from reseg.data.synthetic.video import drive_frames, make_synthetic_video

__all__ = [
    "DIFFICULTIES",
    "GENERATOR_VERSION",
    "META_FILE",
    "SPLITS",
    "SYNTHETIC_KEYS",
    "Camera",
    "Difficulty",
    "Street",
    "drive_frames",
    "ensure_synthetic",
    "get_difficulty",
    "make_street",
    "make_synthetic",
    "make_synthetic_video",
    "mismatch_warning",
    "render",
    "synth_sample",
]
