"""The `graftcv map` command: class maps of large scenes, tile by tile, scored against masks when given."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from graftcv.cli.application import out
from graftcv.cli.inference import ModelDir, Runtime


def scores_table(title: str, scores: dict) -> Table:
    table = Table(title=title)
    table.add_column("class")
    table.add_column("IoU", justify="right")
    table.add_column("true px", justify="right")
    table.add_column("mapped px", justify="right")
    for name, iou in scores["iou"].items():
        shown = f"{iou:.4f}" if iou is not None else "—"
        table.add_row(name, shown, f"{scores['true_pixels'][name]:,}", f"{scores['mapped_pixels'][name]:,}")
    return table


def map_command(
    model_dir: ModelDir,
    scenes: Annotated[list[Path], typer.Argument(help="Scenes: (Geo)TIFF, read by window, or JPEG/PNG")],
    tile: Annotated[int, typer.Option(help="Tile side in scene pixels (after --scale), e.g. the training tiles'")],
    out_dir: Annotated[Path, typer.Option("--out", help="Output folder: one sub-folder per scene")],
    stride: Annotated[
        int | None, typer.Option(help="Step between tiles (default: the tile; tile/2 blends overlapping tiles)")
    ] = None,
    scale: Annotated[
        float, typer.Option(help="Resample the scene first: 0.5 halves its resolution (match the training tiles')")
    ] = 1.0,
    refine: Annotated[
        str | None, typer.Option(help="cam: sharpen each tile's decision inside the tile with its CAMs")
    ] = None,
    mask: Annotated[
        list[Path] | None,
        typer.Option(help="Ground truth: a raster of class indices per scene (repeat, in order) or one folder"),
    ] = None,
    mask_classes: Annotated[
        Path | None, typer.Option(help="JSON of the class name of each mask value (default: classes.json beside)")
    ] = None,
    batch_size: Annotated[int, typer.Option(help="Tiles per forward pass")] = 32,
    runtime: Runtime = "auto",
    resume: Annotated[bool, typer.Option("--resume", help="Continue maps an interrupted run left unfinished")] = False,
    max_pixels: Annotated[
        int | None, typer.Option(help="Largest JPEG/PNG scene, in pixels (decoded whole; TIFFs have no limit)")
    ] = None,
) -> None:
    """Class maps of large scenes: the classifier slid over each scene, tiles blended, maps scored against masks."""
    import graftcv
    from graftcv.lite import choose_runtime

    chosen = choose_runtime(model_dir, runtime)
    model = graftcv.load(model_dir, runtime=chosen, explainable=chosen == "onnx" and refine == "cam")
    summary = model.map(
        scenes, out_dir, tile, stride=stride, scale=scale, refine=refine, masks=mask, mask_classes=mask_classes,
        batch_size=batch_size, resume=resume, max_pixels=max_pixels, progress=True,
    )  # fmt: skip
    rate = f"{summary['tiles']:,} tiles in {summary['seconds']:.1f} s ({summary['tiles_per_second'] or 0:,.1f} tiles/s)"
    out.print(f"mapped {len(summary['scenes'])} scene(s), {rate}, {chosen} runtime")
    if "scores" in summary:
        scores = summary["scores"]
        out.print(scores_table(f"{scores['scenes']} scored scene(s)", scores))
        out.print(f"pixel accuracy {scores['pixel_accuracy']:.4f} · mIoU {scores['miou']:.4f}")
    out.print(f"wrote {out_dir / 'index.html'} and {out_dir / 'map.json'}")
