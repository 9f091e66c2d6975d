"""The commands that use a saved model: `predict`, `evaluate` and `explain`."""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Annotated

import typer

from graftcv.cli.application import out
from graftcv.cli.delivery import TTA_HELP
from graftcv.cli.tables import (
    CAM_SCORES_NOTE,
    SHOWN_ROWS,
    cam_scores_table,
    explanations_table,
    outputs_line,
    outputs_table,
    predictions_table,
    report_table,
    summary_line,
)
from graftcv.errors import GraftcvError
from graftcv.explain.methods import user_methods
from graftcv.tta import TTA_MODES, check_tta

ModelDir = Annotated[Path, typer.Argument(help="A saved model directory")]
Runtime = Annotated[
    str,
    typer.Option(
        help="auto (onnx once exported) | torch | onnx (the exported model.onnx; also chosen by MODEL/model.onnx)"
    ),
]


def predict(
    model_dir: ModelDir,
    images: Annotated[
        list[Path], typer.Argument(help="Image files or folders (with --out also .txt lists, CSVs with a path column)")
    ],
    topk: Annotated[int | None, typer.Option(help="Classes per image (default 1; 5 with --out)")] = None,
    csv_path: Annotated[Path | None, typer.Option("--csv", help="Write predictions to this CSV")] = None,
    batch_size: Annotated[int, typer.Option()] = 32,
    runtime: Runtime = "auto",
    parquet: Annotated[
        Path | None,
        typer.Option("--out", help="Stream any number of images into this .parquet file, in resumable parts"),
    ] = None,
    workers: Annotated[int, typer.Option(help="With --out: predicting processes on this machine")] = 1,
    part_size: Annotated[int, typer.Option(help="With --out: images per part (the unit a rerun resumes by)")] = 10_000,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="With --out: start over, replacing its parts")] = False,
    tta: Annotated[str | None, typer.Option(help=TTA_HELP)] = None,
) -> None:
    """Predict the class of each image with a saved model."""
    from graftcv.meta import read_meta

    tta = check_tta(tta if tta is not None else read_meta(model_dir)[1].get("tta"))
    if parquet is not None:
        options = dict(
            workers=workers, part_size=part_size, batch_size=batch_size, runtime=runtime, overwrite=overwrite
        )
        if tta != "none":
            raise GraftcvError("--tta applies to predict without --out (and to evaluate and serve).")
        return predict_parquet(model_dir, images, parquet, csv_path, topk=5 if topk is None else topk, **options)
    if workers != 1 or part_size != 10_000 or overwrite:
        raise GraftcvError("--workers, --part-size and --overwrite apply to --out PATH.parquet only.")
    topk = 1 if topk is None else topk
    from graftcv.lite import choose_runtime

    if tta != "none":
        import graftcv

        model = graftcv.load(model_dir, runtime=choose_runtime(model_dir, runtime), tta=tta)
        out.print(f"TTA {tta}: {TTA_MODES[tta]} forward passes per image")
    elif choose_runtime(model_dir, runtime) == "onnx":
        from graftcv.lite import LitePredictor  # onnxruntime, numpy and PIL: no torch to import

        model = LitePredictor.open(model_dir)
    else:
        import graftcv

        model = graftcv.load(model_dir, runtime="torch")
    results = model.predict([str(p) for p in images], topk=topk, batch_size=batch_size, progress=True)
    out.print(predictions_table(results, topk, len(model.classes)))
    if len(results) > SHOWN_ROWS:
        out.print(f"… {len(results) - SHOWN_ROWS} more")
    if csv_path:
        write_predictions(csv_path, results)
        out.print(f"wrote {csv_path}")


def predict_parquet(model_dir: Path, images: list[Path], parquet: Path, csv_path: Path | None, **options) -> None:
    """`predict --out PATH.parquet`: graftcv.bulk, then one line of what it did."""
    from graftcv.bulk import predict_to_parquet

    if csv_path is not None:
        raise GraftcvError("Give either --out PATH.parquet or --csv PATH, not both.")
    if parquet.suffix.lower() != ".parquet":
        raise GraftcvError(f"--out {parquet} should end in .parquet: predict writes one Parquet file.")
    done = predict_to_parquet(model_dir, images, parquet, **options)
    rate = f"{done['images']:,} images in {done['seconds']:.1f} s ({done['images_per_second']:,.1f} images/s)"
    skipped = f", {done['parts_skipped']} part(s) already done" if done["parts_skipped"] else ""
    errors = f", {done['errors']:,} unreadable" if done["errors"] else ""
    where = f"wrote {done['out']}" if done["out"] else f"rank {done['rank']} wrote its parts; rank 0 merges them"
    out.print(f"{rate}{skipped}{errors}: {where}")


def write_predictions(path: Path, results: list[dict]) -> None:
    """path, class1, prob1, class2, prob2, ...: one row per image (several labels per image: path, the predicted
    labels ';'-joined per task, then every output's probability)."""
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        if results and "top" not in results[0]:
            tasks = list(results[0]["tasks"]) if "tasks" in results[0] else ["labels"]
            outputs = list(results[0]["probabilities"])
            writer.writerow(["path", *tasks, *outputs])
            for row in results:
                found = row["tasks"] if "tasks" in row else {"labels": row["labels"]}
                chosen = [found[t]["class"] if isinstance(found[t], dict) else ";".join(i["label"] for i in found[t])
                          for t in tasks]  # fmt: skip
                writer.writerow([row["path"], *chosen, *(f"{row['probabilities'][o]:.6f}" for o in outputs)])
            return
        k = len(results[0]["top"])
        writer.writerow(["path", *[f"{kind}{i + 1}" for i in range(k) for kind in ("class", "prob")]])
        for row in results:
            writer.writerow([row["path"], *[v for t in row["top"] for v in (t["class"], f"{t['probability']:.6f}")]])


def evaluate(
    model_dir: ModelDir,
    data: Annotated[
        str, typer.Argument(help="Labelled images: ROOT/CLASS/*, a path,label CSV, or shards (folder, manifest URL)")
    ],
    out_dir: Annotated[
        Path | None, typer.Option("--out", help="Where to write the JSON and CSV files (default MODEL/evaluation/DATA)")
    ] = None,
    runtime: Runtime = "auto",
    tta: Annotated[str | None, typer.Option(help=TTA_HELP)] = None,
) -> None:
    """Score a saved model on labelled images: per-class table, confusion matrix, calibration."""
    import graftcv
    from graftcv.lite import choose_runtime
    from graftcv.rundir import evaluation_dir, write_evaluation

    model = graftcv.load(
        model_dir, runtime=choose_runtime(model_dir, runtime), tta=None if tta is None else check_tta(tta)
    )
    report = model.evaluate(data, progress=True)
    if "headline" in report:  # several labels per image
        out.print(outputs_table(report, title=f"{model_dir} on {data}"))
        out.print(outputs_line(report))
    else:
        out.print(report_table(report, title=f"{model_dir} on {data}"))
        out.print(summary_line(report))
    if model.tta != "none":
        report["tta"] = model.tta
        out.print(f"TTA {model.tta}: {TTA_MODES[model.tta]} forward passes per image")
    name = data if model.tta == "none" else f"{Path(data).name}-tta-{model.tta}"
    paths = write_evaluation(report, out_dir or evaluation_dir(model_dir, name))
    out.print(f"wrote {', '.join(str(p) for p in paths.values())}")


def explain(
    model_dir: ModelDir,
    images: Annotated[list[Path], typer.Argument(help="Image files or folders (CLASS folders give true labels)")],
    method: Annotated[str, typer.Option(help=" | ".join(user_methods()))] = "gradcam",
    target: Annotated[str, typer.Option(help="The class the map explains: pred | true | a class name")] = "pred",
    layer: Annotated[str | None, typer.Option(help="Target module name (default: the last feature map)")] = None,
    out_dir: Annotated[Path, typer.Option("--out", help="Where the PNGs and cam_scores.json go")] = Path("explain"),
    score: Annotated[bool, typer.Option("--score", help="Measure CAM quality against a random CAM")] = False,
    masks: Annotated[Path | None, typer.Option(help="Folder of binary object masks named like the images")] = None,
    boxes: Annotated[Path | None, typer.Option(help="CSV of object boxes: path,x0,y0,x1,y1")] = None,
    limit: Annotated[int | None, typer.Option(help="Explain at most N images, spread over the list")] = None,
) -> None:
    """Class activation maps: one PNG per image (image | heat map | overlay); --score measures their quality."""
    import graftcv
    from graftcv.data import evenly_spaced, list_images
    from graftcv.explain.render import render_cam

    if masks is not None and boxes is not None:
        raise GraftcvError("Give object annotations either as --masks or as --boxes, not both.")
    model = graftcv.load(model_dir)
    paths, _ = list_images([str(p) for p in images])
    results = model.explain([str(p) for p in evenly_spaced(paths, limit)], method=method, target=target, layer=layer)
    out_dir.mkdir(parents=True, exist_ok=True)
    rows, used = [], set()
    for result in results:
        png = render_cam(result, out_dir / png_name(result.name, used))
        rows.append((Path(result.name).name, f"{result.predicted} {result.probability:.3f}", result.target, str(png)))
    out.print(explanations_table(rows) if len(rows) <= SHOWN_ROWS else f"wrote {len(rows)} PNGs to {out_dir}")
    if score or masks or boxes:
        scores = model.score_explanations(results, masks=masks, boxes=boxes)
        out.print(cam_scores_table(scores))
        out.print(CAM_SCORES_NOTE)
        (out_dir / "cam_scores.json").write_text(json.dumps(scores, indent=2))
        out.print(f"wrote {out_dir / 'cam_scores.json'}")


def png_name(name: str, used: set[str]) -> str:
    """IMAGE.png, or FOLDER-IMAGE.png when another folder already gave that name."""
    path = Path(name)
    candidates = [f"{path.stem}.png", f"{path.parent.name}-{path.stem}.png"]
    candidates += [f"{path.parent.name}-{path.stem}-{n}.png" for n in range(2, len(used) + 3)]
    chosen = next(c for c in candidates if c not in used)
    used.add(chosen)
    return chosen
