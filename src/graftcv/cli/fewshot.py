"""Few classes, few images: `graftcv fewshot` (N-way K-shot episodes on frozen pretrained features) and
`graftcv add-class` (a new class for a prototype or linear-probe model from a handful of images)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from graftcv.cli.application import out
from graftcv.config import TrainConfig


def fewshot(
    data: Annotated[str, typer.Argument(help="Labelled images: ROOT/CLASS/* (train/val/test folders are pooled)")],
    ways: Annotated[int, typer.Option(help="Classes per episode")] = 5,
    shots: Annotated[str, typer.Option(help="Support images per class, e.g. 1,5")] = "1,5",
    queries: Annotated[int, typer.Option(help="Query images per class and episode")] = 15,
    episodes: Annotated[int, typer.Option(help="Episodes per shot level")] = 600,
    methods: Annotated[
        str, typer.Option(help="Comma-separated: prototype, linear-probe, finetune-head, bd-cspn, tim")
    ] = "prototype,linear-probe,finetune-head,bd-cspn,tim",
    seed: Annotated[int, typer.Option(help="Fixes the episodes")] = 0,
    model: Annotated[str, typer.Option(help="Any timm model name")] = TrainConfig.model,
    size: Annotated[int | None, typer.Option(help="Input size in pixels")] = None,
    weights: Annotated[str | None, typer.Option(help="Pretrained weights file")] = None,
    pretrained: Annotated[bool, typer.Option(help="--no-pretrained: random weights (smoke tests)")] = True,
    cache: Annotated[bool, typer.Option(help="Reuse cached features")] = True,
    out_dir: Annotated[Path | None, typer.Option("--out", help="Default runs/fewshot-<data>-<time>")] = None,
) -> None:
    """Few-shot evaluation: mean accuracy and 95% intervals over episodes, the same episodes for every method."""
    from graftcv.fewshot import fewshot as run_fewshot
    from graftcv.fewshot.run import markdown

    result = run_fewshot(data, ways, shots, queries, episodes, methods, seed, model, size, weights, out_dir, cache,
                         pretrained=pretrained)  # fmt: skip
    out.print(markdown(result), markup=False)
    out.print(f"written: {result.out_dir / 'fewshot.md'} (and fewshot.json, fewshot.csv)")


def add_class(
    model: Annotated[Path, typer.Argument(help="A trained prototype or linear-probe model directory")],
    images: Annotated[Path, typer.Argument(help="A folder of images of the new class")],
    name: Annotated[str | None, typer.Option(help="The class name (default: the folder's name)")] = None,
    out_dir: Annotated[Path | None, typer.Option("--out", help="Save here instead of in place")] = None,
) -> None:
    """Add a class to a trained prototype or linear-probe model without touching its backbone."""
    from graftcv.new_classes import add_class as run_add_class

    record = run_add_class(model, images, name, out_dir)
    out.print(f"added class {record['class']!r} from {record['images']} images ({record['method']}) → "
              f"{out_dir or model}")  # fmt: skip


def zeroshot(
    data: Annotated[str, typer.Argument(help="Labelled images: ROOT/CLASS/* (train/val/test folders are pooled)")],
    attributes: Annotated[Path, typer.Option(help="CSV: class,ATTRIBUTE,... one row per class (0/1 or real)")],
    unseen: Annotated[str, typer.Option(help="Classes held out of training, comma-separated")],
    model: Annotated[str, typer.Option(help="Any timm model name")] = TrainConfig.model,
    size: Annotated[int | None, typer.Option(help="Input size in pixels")] = None,
    weights: Annotated[str | None, typer.Option(help="Pretrained weights file")] = None,
    seed: Annotated[int, typer.Option(help="Fixes the held-out seen images")] = 0,
    test_fraction: Annotated[float, typer.Option(help="Seen classes' images kept to score them")] = 0.2,
    pretrained: Annotated[bool, typer.Option(help="--no-pretrained: random weights (smoke tests)")] = True,
    cache: Annotated[bool, typer.Option(help="Reuse cached features")] = True,
    out_dir: Annotated[Path | None, typer.Option("--out", help="Default runs/zeroshot-<data>-<time>")] = None,
) -> None:
    """Zero-shot: recognise classes with no training images from their attributes (ESZSL on pretrained features)."""
    from graftcv.fewshot.zeroshot import markdown
    from graftcv.fewshot.zeroshot import zeroshot as run_zeroshot

    result = run_zeroshot(data, attributes, unseen, model, size, weights, seed, test_fraction, out_dir, cache,
                          pretrained=pretrained)  # fmt: skip
    out.print(markdown(result), markup=False)
    out.print(f"written: {result.out_dir / 'zeroshot.json'}")
