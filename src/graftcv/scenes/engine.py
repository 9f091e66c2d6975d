"""One scene mapped: tile rows read as strips, tiles classified in batches, their votes blended with a smooth
window in a buffer one tile high, finished rows written out; a progress file after each written block row is
what `--resume` continues from."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from graftcv.atomic import write_json
from graftcv.errors import GraftcvError
from graftcv.rundir import read_json
from graftcv.scenes.grid import Grid, blend_window, check_tiling
from graftcv.scenes.rasters import MapRasters
from graftcv.scenes.reader import DEFAULT_MAX_PIXELS, Scene, open_scene
from graftcv.scenes.scores import add_confusion, map_scores, mask_classes_for, value_lookup

PROGRESS = ".map-progress.json"
DONE = "map.json"
Tiles = list[np.ndarray]  # (T, T, 3) uint8 each


@dataclass(frozen=True)
class TileModel:
    """What mapping needs of a classifier: its classes, tile probabilities, and optionally per-pixel
    probabilities inside each tile (`refine`: tiles, their (n, C) probabilities → (n, C, T, T))."""

    classes: list[str]
    probabilities: Callable[[Tiles], np.ndarray]
    refine: Callable[[Tiles, np.ndarray], np.ndarray] | None = None


@dataclass(frozen=True)
class MapSettings:
    tile: int
    stride: int
    scale: float = 1.0
    refine: str | None = None
    batch_size: int = 32
    max_pixels: int = DEFAULT_MAX_PIXELS


def _open_mask(mask: Path | None, scene: Scene, settings: MapSettings, scene_path: Path) -> Scene | None:
    if mask is None:
        return None
    found = open_scene(mask, settings.scale, settings.max_pixels, mask=True)
    if (found.height, found.width) != (scene.height, scene.width):
        found.close()
        raise GraftcvError(
            f"The mask {mask} is {found.width}×{found.height} px but the scene {scene_path} is "
            f"{scene.width}×{scene.height} px: a mask must match its scene pixel for pixel."
        )
    return found


def check_scene(scene: Scene, settings: MapSettings) -> None:
    if scene.height < settings.tile or scene.width < settings.tile:
        scaled = f" at --scale {settings.scale}" if settings.scale != 1.0 else ""
        raise GraftcvError(
            f"{scene.path} is {scene.width}×{scene.height} px{scaled}, smaller than one {settings.tile} px tile: "
            "use a smaller --tile."
        )


class _Tally:
    """Class areas and (with a mask) the confusion matrix of the rows written so far."""

    def __init__(self, classes: list[str], lookup: np.ndarray | None, state: dict | None = None) -> None:
        n = len(classes)
        self.classes, self.lookup = classes, lookup
        self.pixels = np.array(state["pixels"] if state else np.zeros(n), np.int64)
        self.confusion = np.array(state["confusion"] if state else np.zeros((n, n)), np.int64)

    def add(self, index: np.ndarray, truth: np.ndarray | None) -> None:
        self.pixels += np.bincount(index.ravel(), minlength=len(self.classes))[: len(self.classes)]
        if truth is not None:
            add_confusion(self.confusion, truth, index, self.lookup)

    def state(self) -> dict:
        return {"pixels": self.pixels.tolist(), "confusion": self.confusion.tolist()}


def _identity(scene_path: Path, scene: Scene, settings: MapSettings, model_id: str, mask: Path | None) -> dict:
    """What a map depends on (not the batch size or the pixel limit): a resumed map must have the same."""
    chosen = {k: v for k, v in asdict(settings).items() if k not in ("batch_size", "max_pixels")}
    return {"scene": str(scene_path.resolve()), "size": [scene.height, scene.width], "model": model_id,
            "mask": str(mask.resolve()) if mask else None, **chosen}  # fmt: skip


def _resume_state(folder: Path, identity: dict, resume: bool) -> dict | None:
    state = read_json(folder / PROGRESS) if resume else None
    if state is not None and state.get("identity") != identity:
        raise GraftcvError(
            f"{folder} holds a map started with other settings (model, tile, stride, scale, refine or mask): run "
            "without --resume to start it over, or give another --out."
        )
    return state


def map_scene(
    scene_path: Path,
    folder: Path,
    model: TileModel,
    settings: MapSettings,
    model_id: str,
    mask: Path | None = None,
    mask_classes: Path | None = None,
    resume: bool = False,
    on_tiles: Callable[[int], None] | None = None,
) -> dict:
    """Map one scene into `folder`; returns (and writes as map.json) what was done, with areas and scores."""
    check_tiling(settings.tile, settings.stride)
    classes = model.classes
    lookup = value_lookup(mask_classes_for(mask, mask_classes), classes) if mask is not None else None
    with open_scene(scene_path, settings.scale, settings.max_pixels) as scene:
        check_scene(scene, settings)
        truth = _open_mask(mask, scene, settings, scene_path)
        identity = _identity(scene_path, scene, settings, model_id, mask)
        done = read_done(folder)
        if resume and done is not None and done.get("identity") == identity:
            if truth is not None:
                truth.close()
            return done
        folder.mkdir(parents=True, exist_ok=True)
        state = _resume_state(folder, identity, resume)
        start = time.perf_counter()
        try:
            rasters = MapRasters(folder, scene.height, scene.width, classes, scene.georef,
                                 state["written"] if state else 0)  # fmt: skip
            tally = _Tally(classes, lookup, state)
            tiles = _sweep(scene, truth, model, settings, rasters, tally, folder, identity, on_tiles)
            rasters.close()
            thumbnail = scene.thumbnail(2048)
        finally:
            if truth is not None:
                truth.close()
    from graftcv.scenes.pictures import render_pictures

    seconds = time.perf_counter() - start
    pictures = render_pictures(folder, thumbnail, classes)
    summary = {
        "identity": identity,
        "scene": str(scene_path),
        "height": scene.height,
        "width": scene.width,
        "georeferenced": scene.georef is not None,
        "tiles": tiles,
        "seconds": round(seconds, 3),
        "tiles_per_second": round(tiles / seconds, 2) if seconds else None,
        "areas": areas(tally.pixels, classes, scene),
        "files": pictures,
    }
    write_json(folder / "areas.json", summary["areas"])
    if lookup is not None:
        summary["scores"] = map_scores(tally.confusion, classes) | {"mask": str(mask)}
        write_json(folder / "scores.json", summary["scores"])
    write_json(folder / DONE, summary)
    (folder / PROGRESS).unlink(missing_ok=True)
    return summary


def read_done(folder: Path) -> dict | None:
    return read_json(folder / DONE)


def areas(pixels: np.ndarray, classes: list[str], scene: Scene) -> dict:
    """Pixels and share of the scene per class (and the area in the CRS's units² when georeferenced)."""
    total = int(pixels.sum())
    rows = {c: {"pixels": int(n), "share": round(float(n / total), 6) if total else 0.0}
            for c, n in zip(classes, pixels, strict=True)}  # fmt: skip
    if scene.georef is not None:
        pixel_area = abs(scene.georef.transform.a * scene.georef.transform.e)
        unit = scene.georef.crs.linear_units if scene.georef.crs is not None else "unit"
        for row in rows.values():
            row[f"area_{unit}2"] = round(row["pixels"] * pixel_area, 3)
    return {"total_pixels": total, "classes": rows}


def _sweep(scene, truth, model, settings, rasters, tally, folder, identity, on_tiles) -> int:
    """Every tile row from the first that reaches an unwritten row; returns the tiles classified."""
    grid = Grid(scene.height, scene.width, settings.tile, settings.stride)
    tile, n_classes, width = settings.tile, len(model.classes), scene.width
    window = blend_window(tile, settings.stride < tile)
    votes = np.zeros((n_classes, tile, width), np.float32)
    weight = np.zeros((tile, width), np.float32)
    base, count = rasters.written, 0  # rows above `base` are final (written or about to be)

    def finish(rows: int) -> None:
        nonlocal base
        finished = votes[:, :rows] / weight[None, :rows]
        for top, index, _ in rasters.add(finished):
            tally.add(index, truth.read(top, 0, index.shape[0], width) if truth is not None else None)
            rasters.flush()
            write_json(folder / PROGRESS, {"identity": identity, "written": rasters.written, **tally.state()})
        votes[:, : tile - rows], weight[: tile - rows] = votes[:, rows:], weight[rows:]
        votes[:, tile - rows :], weight[tile - rows :] = 0.0, 0.0
        base += rows

    for y in grid.rows:
        if y + tile <= base:
            continue
        if y > base:
            finish(y - base)
        strip = scene.read(y, 0, tile, width)
        skip = base - y  # rows of this tile row already written (only when resuming)
        for start in range(0, len(grid.cols), settings.batch_size):
            xs = grid.cols[start : start + settings.batch_size]
            tiles = [strip[:, x : x + tile] for x in xs]
            probabilities = model.probabilities(tiles)
            if model.refine is not None:
                pixel_probs = model.refine(tiles, probabilities)
            else:
                pixel_probs = np.broadcast_to(probabilities[:, :, None, None], (len(xs), n_classes, tile, tile))
            for x, pixels in zip(xs, pixel_probs, strict=True):
                votes[:, : tile - skip, x : x + tile] += pixels[:, skip:] * window[skip:]
                weight[: tile - skip, x : x + tile] += window[skip:]
            count += len(xs)
            if on_tiles is not None:
                on_tiles(len(xs))
    finish(scene.height - base)
    for top, index, _ in rasters.finish():
        tally.add(index, truth.read(top, 0, index.shape[0], width) if truth is not None else None)
    return count
