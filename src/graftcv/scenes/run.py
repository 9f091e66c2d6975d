"""Several scenes mapped into one folder: inputs checked before anything is written, one progress bar in tiles/s,
map.json (every scene, and the scores summed over scenes) and index.html."""

from __future__ import annotations

import time
from dataclasses import asdict
from pathlib import Path

import numpy as np

from graftcv.atomic import write_json
from graftcv.errors import GraftcvError
from graftcv.pages import render_page
from graftcv.progress import image_progress
from graftcv.scenes.engine import MapSettings, TileModel, _open_mask, check_scene, map_scene
from graftcv.scenes.grid import Grid, check_tiling
from graftcv.scenes.reader import open_scene
from graftcv.scenes.scores import map_scores, mask_classes_for, value_lookup


def match_masks(scenes: list[Path], masks: list[Path] | None) -> list[Path | None]:
    """One mask per scene: given in the scenes' order, or a folder of masks named like the scenes (any
    extension); a scene without a mask in that folder is mapped without scores."""
    if not masks:
        return [None] * len(scenes)
    if len(masks) == 1 and masks[0].is_dir():
        found = {p.stem: p for p in sorted(masks[0].iterdir()) if p.is_file() and p.suffix.lower() != ".json"}
        return [found.get(scene.stem) for scene in scenes]
    if len(masks) != len(scenes):
        raise GraftcvError(
            f"Got {len(masks)} masks for {len(scenes)} scenes: give one --mask per scene, in order, or one folder."
        )
    return list(masks)


def scene_folders(scenes: list[Path]) -> list[str]:
    """A distinct output folder name per scene: its stem, or PARENT-STEM when another scene has that stem."""
    names, used = [], set()
    for scene in scenes:
        name = scene.stem if scene.stem not in used else f"{scene.parent.name}-{scene.stem}"
        n = 2
        while name in used:
            name, n = f"{scene.stem}-{n}", n + 1
        used.add(name)
        names.append(name)
    return names


def _checked(scenes, masks, settings, mask_classes, classes) -> int:
    """Every scene and mask opened and sized before the first is mapped; returns the tiles of all scenes."""
    check_tiling(settings.tile, settings.stride)
    total = 0
    for scene_path, mask in zip(scenes, masks, strict=True):
        with open_scene(scene_path, settings.scale, settings.max_pixels) as scene:
            check_scene(scene, settings)
            if mask is not None:
                value_lookup(mask_classes_for(mask, mask_classes), classes)
                _open_mask(mask, scene, settings, scene_path).close()
            total += len(Grid(scene.height, scene.width, settings.tile, settings.stride))
    return total


def map_scenes(
    model: TileModel,
    scenes: list[Path],
    out: Path,
    settings: MapSettings,
    model_id: str,
    runtime: str,
    masks: list[Path] | None = None,
    mask_classes: Path | None = None,
    resume: bool = False,
    progress: bool = False,
) -> dict:
    if not scenes:
        raise GraftcvError("Give at least one scene to map.")
    scenes = [Path(s) for s in scenes]
    matched = match_masks(scenes, [Path(m) for m in masks] if masks else None)
    total = _checked(scenes, matched, settings, mask_classes, model.classes)
    start = time.perf_counter()
    results = []
    with image_progress(progress, unit="tiles") as bar:
        task = bar.add_task("map", total=total)
        for scene, mask, name in zip(scenes, matched, scene_folders(scenes), strict=True):
            bar.update(task, description=f"map {scene.name}")
            result = map_scene(scene, out / name, model, settings, model_id, mask, mask_classes, resume,
                               on_tiles=lambda n: bar.advance(task, n))  # fmt: skip
            results.append(result | {"folder": name})
    seconds = time.perf_counter() - start
    tiles = sum(r["tiles"] for r in results)
    summary = {
        "model": model_id,
        "runtime": runtime,
        "classes": model.classes,
        "settings": asdict(settings),
        "scenes": results,
        "tiles": tiles,
        "seconds": round(seconds, 3),
        "tiles_per_second": round(tiles / seconds, 2) if seconds else None,
    }
    scored = [r["scores"] for r in results if "scores" in r]
    if scored:
        confusion = np.sum([np.asarray(s["confusion"]) for s in scored], axis=0)
        summary["scores"] = map_scores(confusion, model.classes) | {"scenes": len(scored)}
    write_json(out / "map.json", summary)
    render_page("map.html.j2", out / "index.html", summary=summary)
    return summary
