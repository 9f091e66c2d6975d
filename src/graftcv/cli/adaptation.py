"""The `graftcv adapt` command: train on labelled source images with unlabelled target images beside them."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from graftcv.cli.application import out
from graftcv.cli.options import given, parsed, with_config_options
from graftcv.training.alignment import ALIGNMENTS, SOURCE_ONLY

METHODS = " | ".join((SOURCE_ONLY, *ALIGNMENTS, "self-training"))


@with_config_options
def adapt(
    source: Annotated[str, typer.Argument(help="Labelled source images: ROOT/CLASS/*, ROOT/{train,val}/..., a CSV")],
    target: Annotated[Path, typer.Option(help="Unlabelled images of the target domain (class folders ignored)")],
    method: Annotated[str, typer.Option(help=METHODS)] = "dann",
    target_labels: Annotated[
        Path | None, typer.Option(help="Labelled target images, for evaluation only (never trained on)")
    ] = None,
    methods: Annotated[
        str | None, typer.Option(help="Compare several, e.g. source-only,dann,mmd (needs --target-labels)")
    ] = None,
    seeds: Annotated[str, typer.Option(help="--methods: the seeds every method runs with")] = "0,1,2",
    out_dir: Annotated[Path | None, typer.Option("--out", help="Run directory")] = None,
    overwrite: Annotated[bool, typer.Option(help="Replace a finished run in --out")] = False,
    **settings: Any,
) -> None:
    """Domain adaptation: train on SOURCE while aligning its features with the TARGET images' (dann, mmd, coral)."""
    import graftcv
    from graftcv.cli.training import print_run, write_report

    chosen = parsed(given(settings))
    if methods is not None:
        _compare(source, target, target_labels, methods, seeds, out_dir, chosen)
        return
    adapted = graftcv.adapt(source, target, out=out_dir, method=method, target_labels=target_labels,
                            overwrite=overwrite, **chosen)  # fmt: skip
    if adapted.run.rank:
        return
    print_run(adapted.run.summary, adapted.run.out_dir)
    before, after = adapted.shift["before"], adapted.shift["after"]
    out.print(
        f"domain shift (proxy A-distance, 0 = indistinguishable, 2 = separable): {before['proxy_a_distance']:.3f} "
        f"before → {after['proxy_a_distance']:.3f} after"
    )
    if adapted.target_report is not None:
        report = adapted.target_report
        out.print(f"target: accuracy {report['accuracy']:.4f} · macro-F1 {report['macro_f1']:.4f} on {target_labels}")
    write_report(adapted.run.out_dir)


def _compare(source: str, target: Path, target_labels: Path | None, methods: str, seeds: str, out_dir, chosen: dict):
    from graftcv.compare.adaptation import compare_adaptation, markdown
    from graftcv.errors import GraftcvError

    if target_labels is None:
        raise GraftcvError("--methods compares target accuracy: give --target-labels (used for scoring only).")
    comparison = compare_adaptation(source, target, target_labels, methods, seeds, out_dir, **chosen)
    out.print(markdown(comparison), markup=False)
    out.print(f"written: {comparison.out_dir / 'adaptation-compare.md'} (and .json, adaptation-runs.csv)")
