"""Data discovery, splits, unusable files and image decoding (graftcv.data)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from conftest import COLOURS, write_image
from PIL import Image
from timm.data.auto_augment import RandAugment

from graftcv import GraftcvError
from graftcv.data import build_transform, decode_size, discover, load_rgb
from graftcv.data.discovery import list_images, read_labelled


def _names(paths) -> set[str]:
    return {f"{Path(p).parent.name}/{Path(p).name}" for p in paths}


# --- ROOT/CLASS layout and the stratified split -------------------------------------------------


def test_class_folders_stratified_split(make_folder):
    root = make_folder(classes=3, per_class=8)
    splits = discover(root, val_fraction=0.25, seed=0)

    assert splits.layout == "class-folders"
    assert splits.classes == ["class_0", "class_1", "class_2"]
    assert len(splits.train) + len(splits.val) == 24
    assert len(splits.val) == 6  # ceil(0.25 * 24)
    assert splits.val.counts() == {"class_0": 2, "class_1": 2, "class_2": 2}
    assert splits.train.counts() == {"class_0": 6, "class_1": 6, "class_2": 6}
    assert not set(splits.train.paths) & set(splits.val.paths)
    # labels follow the folder each file is in
    for path, label in zip(splits.train.paths + splits.val.paths, splits.train.labels + splits.val.labels, strict=True):
        assert Path(path).parent.name == label
    assert splits.skipped == []


def test_small_fraction_still_puts_every_class_in_val(make_folder):
    root = make_folder(classes=3, per_class=6)
    splits = discover(root, val_fraction=0.05, seed=0)  # ceil(0.05 * 18) = 1 < 3 classes
    assert set(splits.val.labels) == {"class_0", "class_1", "class_2"}
    assert len(splits.val) == 3


def test_rare_class_is_in_val_too(tmp_path):
    for i in range(20):
        write_image(tmp_path / "d" / "common" / f"{i}.jpg", COLOURS[0], i)
    for i in range(2):
        write_image(tmp_path / "d" / "rare" / f"{i}.jpg", COLOURS[1], 100 + i)
    splits = discover(tmp_path / "d", val_fraction=0.2, seed=0)
    assert set(splits.val.labels) == {"common", "rare"}


def test_same_seed_same_split_other_seed_other_split(make_folder):
    root = make_folder(classes=3, per_class=8)
    first = discover(root, val_fraction=0.25, seed=1)
    again = discover(root, val_fraction=0.25, seed=1)
    assert first.val.paths == again.val.paths
    assert first.train.paths == again.train.paths
    others = [discover(root, val_fraction=0.25, seed=s).val.paths for s in (2, 3, 4)]
    assert any(set(o) != set(first.val.paths) for o in others)


def test_bad_val_fraction(make_folder):
    root = make_folder(classes=2, per_class=5)
    with pytest.raises(GraftcvError, match="val-fraction"):
        discover(root, val_fraction=1.5)


# --- ROOT/train+val layouts ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("train", "val", "test"),
    [
        ("train", "val", None),
        ("training", "validation", "testing"),
        ("train", "valid", "test"),
        ("Train", "Val", None),
    ],
)
def test_split_folder_aliases(make_split_folder, train, val, test):
    root = make_split_folder(train=train, val=val, test=test, classes=2, n_train=5, n_val=3)
    splits = discover(root)
    assert splits.layout == "split-folders"
    assert splits.classes == ["class_0", "class_1"]
    assert len(splits.train) == 10
    assert len(splits.val) == 6
    assert all(Path(p).parts[-3] == train for p in splits.train.paths)
    assert all(Path(p).parts[-3] == val for p in splits.val.paths)
    assert Path(splits.val_source).name == val
    if test:
        assert splits.test is not None and len(splits.test) == 6
        assert all(Path(p).parts[-3] == test for p in splits.test.paths)
    else:
        assert splits.test is None


def test_split_folders_without_val_are_split(make_split_folder):
    root = make_split_folder(val=None, classes=2, n_train=6)
    splits = discover(root, val_fraction=0.25, seed=0)
    assert len(splits.train) + len(splits.val) == 12
    assert set(splits.val.labels) == {"class_0", "class_1"}
    assert "stratified" in splits.val_source


def test_explicit_val_folder(make_folder):
    root = make_folder("train_here", classes=2, per_class=5)
    val = make_folder("elsewhere", classes=2, per_class=2, seed=9)
    splits = discover(root, val=val)
    assert len(splits.train) == 10  # nothing drawn off for validation
    assert len(splits.val) == 4
    assert all(str(p).startswith(str(val)) for p in splits.val.paths)
    assert splits.val_source == str(val)


def test_explicit_val_that_does_not_exist(make_folder, tmp_path):
    root = make_folder(classes=2, per_class=5)
    with pytest.raises(GraftcvError, match="--val path .* does not exist"):
        discover(root, val=tmp_path / "nowhere")


# --- CSV --------------------------------------------------------------------------------------


@pytest.mark.parametrize("header", [True, False])
def test_csv_with_relative_paths(make_folder, tmp_path, header):
    make_folder("imgs", classes=2, per_class=6)
    rows = [f"imgs/class_{c}/img_{i:02d}.jpg,label{c}" for c in range(2) for i in range(6)]
    csv_path = tmp_path / "labels.csv"
    csv_path.write_text(("path,label\n" if header else "") + "\n".join(rows) + "\n")

    splits = discover(csv_path, val_fraction=0.25, seed=0)
    assert splits.layout == "csv"
    assert splits.classes == ["label0", "label1"]
    assert len(splits.train) + len(splits.val) == 12
    everything = list(zip(splits.train.paths + splits.val.paths, splits.train.labels + splits.val.labels, strict=True))
    for path, label in everything:
        assert Path(path).is_file()
        assert Path(path).parent.name == label.replace("label", "class_")

    images, skipped = read_labelled(csv_path)
    assert len(images) == 12 and skipped == []


def test_csv_bad_row(tmp_path, make_folder):
    make_folder("imgs", classes=2, per_class=2)
    csv_path = tmp_path / "labels.csv"
    csv_path.write_text("imgs/class_0/img_00.jpg,a\nimgs/class_0/img_01.jpg\n")
    with pytest.raises(GraftcvError, match="row 2"):
        discover(csv_path)


# --- unusable files ------------------------------------------------------------------------------


def test_unusable_files_are_skipped_and_listed(make_folder):
    root = make_folder(classes=2, per_class=6)
    bad_dir = root / "class_0"
    Image.new("RGB", (20, 20), (1, 2, 3)).save(bad_dir / "anim.gif")
    whole = write_image(bad_dir / "whole.jpg", (10, 200, 10), seed=5, size=64).read_bytes()
    (bad_dir / "truncated.jpg").write_bytes(whole[: len(whole) // 2])
    (bad_dir / "empty.jpg").write_bytes(b"")
    (bad_dir / "notes.txt").write_text("not an image")
    (bad_dir / "whole.jpg").unlink()

    splits = discover(root, val_fraction=0.25, seed=0)
    skipped = {Path(p).name: reason for p, reason in splits.skipped}
    assert set(skipped) == {"anim.gif", "truncated.jpg", "empty.jpg", "notes.txt"}
    assert "empty" in skipped["empty.jpg"]
    kept = _names(splits.train.paths + splits.val.paths)
    assert kept == {f"class_{c}/img_{i:02d}.jpg" for c in range(2) for i in range(6)}
    assert splits.describe()["skipped_files"] == 4

    images, skipped_eval = read_labelled(root)
    assert len(images) == 12
    assert {Path(p).name for p, _ in skipped_eval} == set(skipped)


def test_list_images_folder_and_files(make_folder, tmp_path):
    root = make_folder(classes=2, per_class=3)
    (root / "class_1" / "readme.txt").write_text("x")
    (root / "class_1" / "zero.png").write_bytes(b"")
    paths, skipped = list_images(root)
    assert len(paths) == 6
    assert {Path(p).name for p, _ in skipped} == {"readme.txt", "zero.png"}
    one = root / "class_0" / "img_00.jpg"
    paths, skipped = list_images([one, str(root / "class_1" / "img_02.jpg")])
    assert [p.name for p in paths] == ["img_00.jpg", "img_02.jpg"] and skipped == []
    with pytest.raises(GraftcvError, match="does not exist"):
        list_images(tmp_path / "missing.jpg")
    with pytest.raises(GraftcvError, match="No readable images"):
        list_images(root / "class_1" / "readme.txt")


# --- decoding ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("mode", "fmt", "make", "expected"),
    [
        ("L", "PNG", lambda: Image.new("L", (30, 20), 100), (100, 100, 100)),
        ("L", "JPEG", lambda: Image.new("L", (30, 20), 100), (100, 100, 100)),
        ("P", "PNG", lambda: Image.new("RGB", (30, 20), (255, 0, 0)).convert("P"), (255, 0, 0)),
        ("RGBA", "PNG", lambda: Image.new("RGBA", (30, 20), (0, 0, 255, 255)), (0, 0, 255)),
        ("RGBA", "PNG", lambda: Image.new("RGBA", (30, 20), (0, 0, 255, 0)), (255, 255, 255)),
        ("CMYK", "JPEG", lambda: Image.new("CMYK", (30, 20), (255, 0, 0, 0)), (0, 255, 255)),
    ],
)
def test_modes_load_as_rgb(tmp_path, mode, fmt, make, expected):
    image = make()
    assert image.mode == mode
    path = tmp_path / f"image.{fmt.lower()}"
    image.save(path, format=fmt)
    with Image.open(path) as raw:
        assert raw.mode == mode  # the file really is in that mode
    loaded = load_rgb(path)
    assert loaded.mode == "RGB"
    assert loaded.size == (30, 20)
    centre = np.array(loaded.getpixel((15, 10)), dtype=int)
    assert np.abs(centre - np.array(expected)).max() <= 6


def test_exif_orientation_is_honoured(tmp_path):
    image = Image.new("RGB", (40, 20), (200, 0, 0))
    image.paste((0, 0, 200), (0, 0, 20, 20))  # left half blue, right half red
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90° clockwise to display
    path = tmp_path / "rotated.jpg"
    image.save(path, exif=exif, quality=95)
    with Image.open(path) as raw:
        assert raw.size == (40, 20)
    loaded = load_rgb(path)
    assert loaded.size == (20, 40)
    # clockwise: the stored left half (blue) ends up on top
    top, bottom = loaded.getpixel((10, 5)), loaded.getpixel((10, 35))
    assert top[2] > 150 and top[0] < 60
    assert bottom[0] > 150 and bottom[2] < 60
    assert load_rgb(path, draft_size=16).size == (20, 40)


def test_draft_decoding_never_goes_below_the_eval_resize(tmp_path):
    config = {"input_size": (3, 224, 224), "crop_pct": 0.875}
    assert decode_size(config) == 256  # the shortest side the eval transform resizes to
    path = tmp_path / "large.jpg"
    Image.new("RGB", (1200, 900), (10, 120, 200)).save(path)
    drafted = load_rgb(path, draft_size=decode_size(config))
    assert drafted.size == (600, 450)  # decoded at 1/2: 1/4 would be 225 px, below 256
    assert min(drafted.size) >= 256


# --- bad input ------------------------------------------------------------------------------------------


def test_missing_path(tmp_path):
    with pytest.raises(GraftcvError, match="does not exist"):
        discover(tmp_path / "nope")
    with pytest.raises(GraftcvError, match="does not exist"):
        read_labelled(tmp_path / "nope")


def test_folder_without_images(tmp_path):
    (tmp_path / "d" / "cats").mkdir(parents=True)
    (tmp_path / "d" / "cats" / "a.txt").write_text("x")
    (tmp_path / "d" / "dogs").mkdir()
    with pytest.raises(GraftcvError, match="No images found"):
        discover(tmp_path / "d")
    with pytest.raises(GraftcvError, match="No labelled images"):
        read_labelled(tmp_path / "d")


def test_one_class(make_folder):
    root = make_folder(classes=1, per_class=5)
    with pytest.raises(GraftcvError, match=r"Only one class \('class_0'\)"):
        discover(root)


def test_class_with_one_image_is_named(make_folder):
    root = make_folder(classes=2, per_class=5)
    write_image(root / "lonely" / "only.jpg", COLOURS[2], seed=3)
    with pytest.raises(GraftcvError, match="'lonely' has fewer than 2 training images"):
        discover(root)


def test_validation_classes_unknown_to_training(make_split_folder):
    root = make_split_folder(classes=2, n_train=4, n_val=2)
    write_image(root / "val" / "zebra" / "z.jpg", COLOURS[3], seed=4)
    with pytest.raises(GraftcvError, match="validation data has classes not in training: zebra"):
        discover(root)


def test_file_that_is_not_a_csv(tmp_path):
    path = write_image(tmp_path / "one.jpg", COLOURS[0], seed=0)
    with pytest.raises(GraftcvError, match="not a CSV"):
        discover(path)


def test_strong_augmentation_survives_every_operation_at_its_largest_magnitude():
    config = {
        "input_size": (3, 32, 32),
        "interpolation": "bicubic",
        "mean": (0.5,) * 3,
        "std": (0.5,) * 3,
        "crop_pct": 0.875,
    }
    transform = build_transform(config, augment="strong", train=True)
    rand_augment = next(t for t in transform.transforms if isinstance(t, RandAugment))
    image = Image.fromarray(np.random.default_rng(0).integers(0, 256, (32, 32, 3), dtype=np.uint8))
    for op in rand_augment.ops:
        op.prob, op.magnitude, op.magnitude_std = 1.0, 100.0, 0.0  # clipped to the preset's upper bound
        assert op(image).size == image.size, op.name


@pytest.mark.parametrize("mode", ["I;16", "I", "F"])
def test_wide_images_are_stretched_to_8_bits_not_clipped(tmp_path, mode):
    from graftcv.data.images import to_rgb
    from graftcv.serve.uploads import Limits, decode_image

    ramp = np.linspace(1000, 4000, 64 * 48).reshape(48, 64)  # a 12-bit scan in 16 bits: all above 255
    dtype = {"I;16": np.uint16, "I": np.int32, "F": np.float32}[mode]
    image = Image.fromarray(ramp.astype(dtype))
    assert image.mode == mode
    rgb = np.asarray(to_rgb(image))
    assert rgb.shape == (48, 64, 3) and rgb.dtype == np.uint8
    assert rgb.min() == 0 and rgb.max() == 255 and (rgb == 255).mean() < 0.01  # PIL's convert: ~100% white
    assert (np.diff(rgb[:, :, 0].ravel().astype(int)) >= 0).all()  # brighter stays brighter
    if mode == "I;16":  # the same pixels from a file, through every decoder
        path = tmp_path / "scan.png"
        image.save(path)
        assert Image.open(path).mode.startswith("I")
        assert np.array_equal(np.asarray(load_rgb(path)), rgb)
        assert np.array_equal(np.asarray(decode_image(path.read_bytes(), "scan.png", Limits())), rgb)
    flat = Image.fromarray(np.full((8, 8), 3000, dtype=dtype))
    assert np.asarray(to_rgb(flat)).max() == 0  # one value: black, not a division by zero


def test_the_same_image_twice_never_straddles_the_split(tmp_path, caplog):
    import logging
    import shutil

    root = tmp_path / "images"
    rows = []
    for c, label in enumerate(("a", "b")):
        for i in range(8):
            rows.append(f"{write_image(root / f'{label}{i}.png', COLOURS[c], seed=10 * c + i).name},{label}")
    for label in ("a", "b"):  # byte-identical copies under other names
        for i in range(3):
            shutil.copy(root / f"{label}{i}.png", root / f"copy-{label}{i}.png")
            rows.append(f"copy-{label}{i}.png,{label}")
    (root / "data.csv").write_text("path,label\n" + "\n".join(rows + rows[:8]) + "\n")  # 8 rows twice
    with caplog.at_level(logging.WARNING, logger="graftcv"):
        splits = discover(root / "data.csv", val_fraction=0.5, seed=0)
    assert "8 repeated path(s) dropped" in caplog.text and "6 byte-identical" in caplog.text
    assert splits.duplicates == {"repeated_paths": 8, "identical_files": 6, "copies_dropped": 0}
    assert len(splits.train) + len(splits.val) == 22  # 16 images + 6 copies, each once
    contents = {split: {p.read_bytes() for p in getattr(splits, split).paths} for split in ("train", "val")}
    assert not contents["train"] & contents["val"]
    assert not set(splits.train.paths) & set(splits.val.paths)


def test_a_given_validation_set_loses_its_copies_of_training_images(make_split_folder, caplog):
    import logging
    import shutil

    root = make_split_folder(classes=2, n_train=5, n_val=3)
    first = sorted((root / "train" / "class_0").iterdir())[0]
    shutil.copy(first, root / "val" / "class_0" / "copy.jpg")
    with caplog.at_level(logging.WARNING, logger="graftcv"):
        splits = discover(root)
    assert splits.duplicates["copies_dropped"] == 1 and len(splits.val) == 6
    assert "copies of earlier ones" in caplog.text


def test_empty_class_folders_and_unusable_files_are_named(tmp_path, caplog):
    import logging

    root = tmp_path / "data"
    for c in range(2):
        for i in range(3):
            write_image(root / f"class_{c}" / f"{i}.jpg", COLOURS[c], seed=i)
    (root / "empty_class").mkdir()
    with caplog.at_level(logging.WARNING, logger="graftcv"):
        splits = discover(root)
    assert splits.classes == ["class_0", "class_1"] and "empty_class" in caplog.text
    junk = tmp_path / "junk" / "cats"
    junk.mkdir(parents=True)
    (junk / "a.jpg").write_bytes(b"not a jpeg")
    (junk / "notes.txt").write_text("hello")
    with pytest.raises(GraftcvError, match=r"none of its 2 file\(s\) is a usable image"):
        discover(tmp_path / "junk")
