"""The `graftcv shard` command: a folder or CSV of labelled images as WebDataset tar shards with a manifest."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from graftcv.cli.application import out
from graftcv.config import TrainConfig


def shard(
    data: Annotated[Path, typer.Argument(help="ROOT/CLASS/*, ROOT/{train,val[,test]}/CLASS/*, or a path,label CSV")],
    out_dir: Annotated[Path, typer.Option("--out", help="The shard folder to write (SHARDS/)")],
    shard_size: Annotated[
        str, typer.Option(help="Image bytes per shard, e.g. 1GB, 500MB, 64KiB (tar headers add 1.5 KB an image)")
    ] = "1GB",
    val: Annotated[Path | None, typer.Option(help="Validation folder or CSV")] = None,
    test: Annotated[Path | None, typer.Option(help="Test folder or CSV")] = None,
    val_fraction: Annotated[
        float, typer.Option(help="Validation share when no validation set is given (as train draws it)")
    ] = TrainConfig.val_fraction,
    seed: Annotated[int, typer.Option(help="Seed of the validation split (as train draws it)")] = TrainConfig.seed,
    overwrite: Annotated[bool, typer.Option(help="Replace the shards already in --out")] = False,
) -> None:
    """Write the train/val(/test) splits `graftcv train DATA` would draw as tar shards: `graftcv train SHARDS/`."""
    from graftcv.data.shard_writer import write_shards

    done = write_shards(
        data,
        out_dir,
        val=val,
        test=test,
        val_fraction=val_fraction,
        seed=seed,
        shard_size=shard_size,
        overwrite=overwrite,
        progress=True,
    )
    images = ", ".join(f"{count:,} {split}" for split, count in done["counts"].items())
    out.print(
        f"wrote {images} images in {done['shards']} shard(s), {done['bytes'] / 1e6:,.1f} MB, to {done['out']} "
        f"in {done['seconds']:.1f} s" + (f" ({done['skipped']} unusable file(s) skipped)" if done["skipped"] else "")
    )
