"""Scenes at the smallest size `officescore sample` accepts (64 px) render for every index."""

from __future__ import annotations

from officescore.sample import render_scene, scene_rng


def test_every_scene_renders_at_64_px() -> None:
    # (5, 14) and (0, 15) used to crash: a framed picture too small for its inner rectangle
    for seed, index in [(5, 14), (0, 15), *((seed, index) for seed in (1, 2) for index in range(12))]:
        scene = render_scene(scene_rng(seed, index), 64)
        assert scene.image.size == (64, 64) and scene.instances
