"""Synthetic scenes: every label is exactly the pixels its object shows in the picture.

Each object is recoloured in a colour of its own (parts and details alike), on a black room with
no lighting or noise; then the picture itself says who owns each pixel, and every instance's mask
must be those pixels: no pixel of the picture unlabelled, none labelled that shows something else.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from PIL import Image

from officescore import sample
from officescore.sample import render_scene, scene_rng

PARTS = {"plant": "leaves", "desk": "top"}  # labels that leave out the pot, the legs and drawers
LEFT_OUT = {"pot", "base"}
# (seed, index, size); at 64 px scene (0, 116) has a plant whose leaves are all hidden behind the desk
SCENES = [*((3, index, 96) for index in range(40)), (0, 116, 64)]


@pytest.fixture
def flat_colours(monkeypatch: pytest.MonkeyPatch) -> list[list[Any]]:
    """Objects painted one flat colour each: red n for the nth object laid out, green 1 on the parts
    a mask convention may leave out. Those parts get no details (a drawer's handles), so that every
    pixel's colour says which part of which object shows there."""
    layouts: list[list[Any]] = []
    layout = sample._layout

    def recoloured(rng: np.random.Generator, s: int) -> tuple[float, list[Any]]:
        horizon, objects = layout(rng, s)
        for n, obj in enumerate(objects, start=1):
            for part in obj.parts:
                part.color, part.shade = (float(n), float(part.role in LEFT_OUT), 0.0), 0.0
            if any(part.role in LEFT_OUT for part in obj.parts):
                obj.details.clear()
            for detail in obj.details:
                detail.color = (float(n), 0.0, 0.0)
        layouts.append(objects)
        return horizon, objects

    def black(rng: np.random.Generator, s: int, horizon: float) -> Image.Image:
        return Image.new("RGB", (s, s))

    monkeypatch.setattr(sample, "_layout", recoloured)
    monkeypatch.setattr(sample, "_background", black)
    monkeypatch.setattr(sample, "_finish", lambda canvas, rng, s: Image.fromarray(canvas.astype(np.uint8)))
    return layouts


@pytest.mark.parametrize("masks", [None, PARTS])
def test_every_mask_is_exactly_what_its_object_shows(
    flat_colours: list[list[Any]], masks: dict[str, str] | None
) -> None:
    dropped = 0
    for seed, index, size in SCENES:
        scene = render_scene(scene_rng(seed, index), size, masks)
        objects = flat_colours.pop()
        picture = np.asarray(scene.image).astype(int)
        owner = picture[:, :, 0]  # 0: the room, n: the nth object
        if masks:  # what the labels leave out shows, but belongs to no label
            owner = np.where(picture[:, :, 1] == 1, 0, owner)
        colours = sorted({int(v) for v in np.unique(owner)} - {0})
        dropped += len(objects) - len(scene.instances)
        # Instances come in paint order, each from its own object: match them to colours in order.
        assert len(colours) == len(scene.instances), f"scene {seed}/{index}: objects shown but not labelled"
        for colour, instance in zip(colours, scene.instances, strict=True):
            where = f"scene {seed}/{index}, {instance.category}"
            assert objects[colour - 1].label == instance.category, where
            assert np.array_equal(instance.mask.astype(bool), owner == colour), where
    assert dropped > 0, "no object was ever too hidden to label: the scenes test less than they should"
