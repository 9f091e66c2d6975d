"""graftcv map: tiling coverage and blending, the windowed reader, georeference, resume, scores, bad input."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
import rasterio
from conftest import COLOURS, TINY, write_class_folders
from PIL import Image
from rasterio.crs import CRS
from rasterio.transform import from_origin

import graftcv
import graftcv.cli
from graftcv.errors import GraftcvError
from graftcv.scenes.engine import MapSettings, TileModel, map_scene
from graftcv.scenes.grid import Grid, blend_window, tile_origins
from graftcv.scenes.reader import open_scene
from graftcv.scenes.scores import add_confusion, map_scores, value_lookup

CLASSES = ["red", "green", "blue"]


def colour_model(calls: list[int] | None = None, fail_after: int | None = None) -> TileModel:
    """A stand-in classifier: a tile's class is its mean colour's strongest channel."""

    def probabilities(tiles: list[np.ndarray]) -> np.ndarray:
        if calls is not None:
            calls.append(len(tiles))
            if fail_after is not None and sum(calls) > fail_after:
                raise KeyboardInterrupt
        means = np.stack([t.reshape(-1, 3).mean(0) for t in tiles])
        scores = np.exp((means - means.max(1, keepdims=True)) / 10.0)
        return (scores / scores.sum(1, keepdims=True)).astype(np.float32)

    return TileModel(CLASSES, probabilities)


def halves_scene(height: int = 200, width: int = 300) -> np.ndarray:
    """Red on the left, blue on the right of column 130."""
    pixels = np.zeros((height, width, 3), np.uint8)
    pixels[:, :130] = (220, 30, 30)
    pixels[:, 130:] = (40, 60, 220)
    return pixels


def write_tiff(path: Path, pixels: np.ndarray, georef: bool = False, block: int = 64, tiled: bool = True) -> Path:
    profile = dict(driver="GTiff", height=pixels.shape[0], width=pixels.shape[1], count=pixels.shape[2],
                   dtype="uint8", tiled=tiled, blockxsize=block, blockysize=block, compress="deflate")  # fmt: skip
    if not tiled:
        profile.pop("blockxsize")
        profile["blockysize"] = 8
    if georef:
        profile |= {"crs": CRS.from_epsg(32640), "transform": from_origin(300000.0, 2800000.0, 0.5, 0.5)}
    with rasterio.open(path, "w", **profile) as raster:
        raster.write(pixels.transpose(2, 0, 1))
    return path


def read_index(folder: Path) -> np.ndarray:
    with rasterio.open(folder / "class_index.tif") as raster:
        return raster.read(1)


# --- tiling ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("length", "tile", "stride"), [(100, 32, 32), (100, 32, 16), (97, 32, 20), (32, 32, 8)])
def test_tiles_cover_every_pixel_and_stay_inside(length: int, tile: int, stride: int) -> None:
    origins = tile_origins(length, tile, stride)
    covered = np.zeros(length, bool)
    for start in origins:
        covered[start : start + tile] = True
    assert covered.all() and origins[0] == 0 and origins[-1] == length - tile
    assert all(0 < b - a <= stride for a, b in zip(origins, origins[1:], strict=False))


def test_half_stride_windows_sum_to_a_constant() -> None:
    """Hann windows half a tile apart are a partition of unity: the blend has no seams inside the scene."""
    window = blend_window(32, True)
    total = np.zeros((128, 128))
    for y in range(0, 97, 16):
        for x in range(0, 97, 16):
            total[y : y + 32, x : x + 32] += window
    inner = total[32:96, 32:96]
    assert inner.std() / inner.mean() < 1e-3


def test_constant_scene_maps_to_its_class_everywhere(tmp_path: Path) -> None:
    pixels = np.zeros((150, 170, 3), np.uint8)
    pixels[...] = (30, 200, 40)
    scene = write_tiff(tmp_path / "green.tif", pixels)
    result = map_scene(scene, tmp_path / "map", colour_model(), MapSettings(tile=48, stride=24), "m")
    index = read_index(tmp_path / "map")
    assert index.shape == (150, 170) and (index == 1).all()
    assert result["areas"]["classes"]["green"]["share"] == 1.0
    with rasterio.open(tmp_path / "map" / "probabilities.tif") as raster:
        sums = raster.read().astype(int).sum(0)
    assert np.abs(sums - 255).max() <= 2  # every pixel got votes: the probabilities sum to one


def test_boundary_between_classes_is_where_the_scene_changes(tmp_path: Path) -> None:
    scene = write_tiff(tmp_path / "halves.tif", halves_scene())
    map_scene(scene, tmp_path / "map", colour_model(), MapSettings(tile=32, stride=16), "m")
    index = read_index(tmp_path / "map")
    assert (index[:, :110] == 0).all() and (index[:, 150:] == 2).all()
    assert set(np.unique(index[:, 110:150])) <= {0, 2}


# --- reader and georeference ------------------------------------------------------------------------------


@pytest.mark.parametrize("tiled", [True, False])
def test_windowed_reader_returns_the_window(tmp_path: Path, tiled: bool) -> None:
    rng = np.random.default_rng(0)
    pixels = rng.integers(0, 256, (300, 260, 3), dtype=np.uint8)
    path = write_tiff(tmp_path / "scene.tif", pixels, tiled=tiled)
    with open_scene(path) as scene:
        assert (scene.height, scene.width) == (300, 260)
        np.testing.assert_array_equal(scene.read(70, 130, 64, 100), pixels[70:134, 130:230])
    with open_scene(path, scale=0.5) as half:
        assert (half.height, half.width) == (150, 130) and half.read(0, 0, 32, 32).shape == (32, 32, 3)


def test_rasters_other_than_8_bit_are_refused(tmp_path: Path) -> None:
    path = tmp_path / "deep.tif"
    with rasterio.open(path, "w", driver="GTiff", height=40, width=40, count=3, dtype="uint16") as raster:
        raster.write(np.zeros((3, 40, 40), np.uint16))
    with pytest.raises(GraftcvError, match="uint16 pixels"):
        open_scene(path)


def test_geotiff_georeference_is_copied_to_the_maps(tmp_path: Path) -> None:
    scene = write_tiff(tmp_path / "geo.tif", halves_scene(), georef=True)
    result = map_scene(scene, tmp_path / "map", colour_model(), MapSettings(tile=40, stride=40), "m")
    with rasterio.open(scene) as source:
        for name in ("class_index.tif", "probabilities.tif"):
            with rasterio.open(tmp_path / "map" / name) as output:
                assert output.crs == source.crs and output.transform == source.transform
    assert result["georeferenced"] and "area_metre2" in result["areas"]["classes"]["red"]
    with rasterio.open(tmp_path / "map" / "class_index.tif") as raster:
        _ = raster.read(1)
    half = map_scene(scene, tmp_path / "half", colour_model(), MapSettings(tile=40, stride=40, scale=0.5), "m")
    with rasterio.open(tmp_path / "half" / "class_index.tif") as output:
        assert output.transform.a == 1.0 and output.crs == CRS.from_epsg(32640)
    assert (half["height"], half["width"]) == (100, 150)


def test_pictures_are_written(tmp_path: Path) -> None:
    scene = tmp_path / "halves.png"
    Image.fromarray(halves_scene()).save(scene)
    result = map_scene(scene, tmp_path / "map", colour_model(), MapSettings(tile=50, stride=25), "m")
    for name in ("class_map.png", "class_index.png", "overlay.png", "probability_red.png", "areas.json"):
        assert (tmp_path / "map" / name).is_file(), name
    assert np.array_equal(np.asarray(Image.open(tmp_path / "map" / "class_index.png")), read_index(tmp_path / "map"))
    assert Image.open(tmp_path / "map" / "class_map.png").height > 200  # the legend is below the map
    assert not result["georeferenced"]


# --- resume ------------------------------------------------------------------------------------------------


def test_resume_continues_an_interrupted_map_and_gives_the_same_result(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    pixels = np.repeat(np.repeat(rng.integers(0, 256, (20, 6, 3), dtype=np.uint8), 40, 0), 40, 1)  # 800 × 240
    scene = write_tiff(tmp_path / "tall.tif", pixels)
    settings = MapSettings(tile=40, stride=20, batch_size=4)
    map_scene(scene, tmp_path / "whole", colour_model(), settings, "m")
    calls: list[int] = []
    with pytest.raises(KeyboardInterrupt):
        map_scene(scene, tmp_path / "part", colour_model(calls, fail_after=300), settings, "m")
    assert (tmp_path / "part" / ".map-progress.json").is_file()
    again: list[int] = []
    map_scene(scene, tmp_path / "part", colour_model(again), settings, "m", resume=True)
    assert sum(again) < len(Grid(800, 240, 40, 20))  # rows written before the interruption are not redone
    np.testing.assert_array_equal(read_index(tmp_path / "part"), read_index(tmp_path / "whole"))
    with pytest.raises(GraftcvError, match="other settings"):
        (tmp_path / "part" / "map.json").unlink()
        (tmp_path / "part" / ".map-progress.json").write_text(json.dumps({"identity": {}, "written": 256}))
        map_scene(scene, tmp_path / "part", colour_model(), settings, "m", resume=True)


# --- scores ------------------------------------------------------------------------------------------------


def test_scores_against_a_mask_leave_out_unknown_values(tmp_path: Path) -> None:
    scene = write_tiff(tmp_path / "halves.tif", halves_scene())
    truth = np.zeros((200, 300), np.uint8)
    truth[:, 130:] = 1  # "blue" in the mask's own numbering
    truth[:, 120:140] = 7  # the boundary, which 20 px tiles blur, is left out too
    truth[:10] = 7  # "cloud": not a class of the model
    truth[-10:] = 255  # unmapped
    masks = tmp_path / "masks"
    masks.mkdir()
    Image.fromarray(truth, mode="L").save(masks / "halves.png")
    names = ["red", "blue", "", "", "", "", "", "cloud"]
    (masks / "classes.json").write_text(json.dumps({"classes": names}))
    settings = MapSettings(tile=20, stride=10)
    result = map_scene(scene, tmp_path / "map", colour_model(), settings, "m", masks / "halves.png")
    scores = result["scores"]
    assert scores["pixels_scored"] == 180 * 280 and scores["pixel_accuracy"] == 1.0 and scores["miou"] == 1.0
    assert scores["iou"]["green"] is None
    assert json.loads((tmp_path / "map" / "scores.json").read_text())["pixel_accuracy"] == 1.0


def test_map_scores_match_a_hand_computed_confusion() -> None:
    lookup = value_lookup(["a", "b", "zzz"], ["a", "b"])
    confusion = np.zeros((2, 2), np.int64)
    add_confusion(confusion, np.array([0, 0, 1, 1, 2]), np.array([0, 1, 1, 1, 0]), lookup)
    scores = map_scores(confusion, ["a", "b"])
    assert confusion.tolist() == [[1, 1], [0, 2]]
    assert scores["pixel_accuracy"] == 0.75 and scores["iou"] == {"a": 0.5, "b": 2 / 3}


# --- a trained model, the CLI and bad input ---------------------------------------------------------------


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    base = tmp_path_factory.mktemp("map-model")
    data = write_class_folders(base / "data", classes=3, per_class=6, size=32)
    graftcv.fit(data, out=base / "run", **(TINY | {"strategy": "linear-probe"}))
    return base / "run" / "model"


def test_model_map_with_cam_refinement(model_dir: Path, tmp_path: Path) -> None:
    pixels = np.zeros((96, 128, 3), np.uint8)
    pixels[:, :64] = COLOURS[0]
    pixels[:, 64:] = COLOURS[2]
    scene = tmp_path / "scene.png"
    Image.fromarray(pixels).save(scene)
    model = graftcv.load(model_dir)
    plain = model.map(scene, tmp_path / "plain", tile=32, stride=16)
    refined = model.map(scene, tmp_path / "cam", tile=32, stride=16, refine="cam")
    assert plain["tiles"] == refined["tiles"] == len(Grid(96, 128, 32, 16))
    for folder in ("plain", "cam"):
        with rasterio.open(tmp_path / folder / "scene" / "probabilities.tif") as raster:
            assert np.abs(raster.read().astype(int).sum(0) - 255).max() <= 3
    tile = np.asarray(Image.fromarray(pixels[:32, :32]))
    expected = model.predict_proba(Image.fromarray(tile))[0][0]
    with rasterio.open(tmp_path / "plain" / "scene" / "probabilities.tif") as raster:
        corner = raster.read(window=((0, 1), (0, 1)))[:, 0, 0] / 255.0
    np.testing.assert_allclose(corner, expected, atol=0.01)  # a pixel one tile covers: that tile's prediction
    assert (tmp_path / "plain" / "index.html").is_file()


def _main(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture, args: list[str]) -> tuple[int, str]:
    """main() in this process: the exit code and what it printed."""
    monkeypatch.setattr(sys, "argv", ["graftcv", *args])
    with pytest.raises(SystemExit) as done:
        graftcv.cli.main()
    captured = capsys.readouterr()
    return done.value.code, captured.out + captured.err


@pytest.mark.parametrize(
    ("setup", "options", "message"),
    [
        ("small", ["--tile", "64"], "smaller than one 64 px tile"),
        ("garbage", ["--tile", "32"], "Cannot read"),
        ("mask", ["--tile", "32", "--mask", "{mask}"], "must match its scene"),
        ("ok", ["--tile", "8"], "too small"),
        ("ok", ["--tile", "32", "--stride", "40"], "leaves gaps"),
        ("ok", ["--tile", "32", "--max-pixels", "1000"], "above the limit of 1,000"),
    ],
)
def test_bad_input_is_one_sentence_and_exit_2(
    model_dir: Path,
    tmp_path: Path,
    setup: str,
    options: list[str],
    message: str,
    monkeypatch,
    capsys,
    restore_logging,
) -> None:
    scene = tmp_path / "scene.png"
    Image.fromarray(halves_scene(40 if setup == "small" else 100, 120)).save(scene)
    if setup == "garbage":
        scene = tmp_path / "broken.tif"
        scene.write_bytes(b"II*\x00 not really a tiff")
    mask = tmp_path / "mask.png"
    Image.fromarray(np.zeros((50, 50), np.uint8), mode="L").save(mask)
    (tmp_path / "classes.json").write_text(json.dumps(["class_0", "class_1", "class_2"]))
    options = [o.format(mask=mask) for o in options]
    code, output = _main(
        monkeypatch, capsys, ["map", str(model_dir), str(scene), "--out", str(tmp_path / "out"), *options]
    )
    assert code == 2, output
    assert message in " ".join(output.split()) and "Traceback" not in output
    assert not (tmp_path / "out").exists()  # refused before anything was written


# --- real data ---------------------------------------------------------------------------------------------


@pytest.mark.realdata
def test_dubai_scene_is_mapped_and_scored_against_its_mask(tmp_path: Path) -> None:
    """Tiles cut from one dubai_aerial scene train a tiny model; another scene is mapped and scored against its
    mask, whose names come from the dataset's classes.json beside the masks folder."""
    from conftest import SHARED

    root = SHARED / "dubai_aerial"
    names = json.loads((root / "classes.json").read_text())["classes"]
    image = np.asarray(Image.open(root / "images" / "tile1_image_part_001.jpg").convert("RGB"))
    mask = np.asarray(Image.open(root / "masks" / "tile1_image_part_001.png"))
    for y in range(0, 512, 64):
        for x in range(0, 512, 64):
            label = names[int(np.bincount(mask[y : y + 64, x : x + 64].ravel()).argmax())]
            (tmp_path / "tiles" / label).mkdir(parents=True, exist_ok=True)
            Image.fromarray(image[y : y + 64, x : x + 64]).save(tmp_path / "tiles" / label / f"{y}_{x}.png")
    kept = [d for d in (tmp_path / "tiles").iterdir() if len(list(d.iterdir())) < 2]
    for folder in kept:  # a class needs two tiles to be split
        for file in folder.iterdir():
            file.unlink()
        folder.rmdir()
    run = graftcv.fit(tmp_path / "tiles", out=tmp_path / "run", **(TINY | {"strategy": "linear-probe"}))
    scene, truth = root / "images" / "tile1_image_part_002.jpg", root / "masks" / "tile1_image_part_002.png"
    summary = run.model.map(scene, tmp_path / "maps", tile=64, masks=root / "masks")
    known = np.isin(np.asarray(Image.open(truth)), [names.index(c) for c in run.model.classes])
    scores = summary["scores"]
    assert scores["pixels_scored"] == int(known.sum()) > 0
    assert 0.0 <= scores["pixel_accuracy"] <= 1.0 and scores["scenes"] == 1
    assert read_index(tmp_path / "maps" / scene.stem).shape == known.shape
