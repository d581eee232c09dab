"""The label ids the generator draws: CamVid's 11 SegNet classes and its void id."""

from __future__ import annotations

from reseg.data.classes import CAMVID, CAMVID_VOID_LABEL

SKY, BUILDING, POLE, ROAD, PAVEMENT, TREE, SIGN, FENCE, CAR, PEDESTRIAN, BICYCLIST = range(11)
VOID = CAMVID_VOID_LABEL
assert CAMVID.names[CAR] == "Car" and CAMVID.names[PAVEMENT] == "Pavement"
