"""The commands that ship a model, or pick one: `export`, `serve` and `models`."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Annotated

import typer

from graftcv.cli.application import out
from graftcv.cli.tables import models_table, parity_table
from graftcv.errors import GraftcvError
from graftcv.tta import check_tta

TTA_HELP = (
    "Test-time augmentation: none | flip (2 forward passes per image) | flip-crops (10: flips of 5 crops); "
    "default: the model's own (a --preset may store flip)"
)

ModelDir = Annotated[Path, typer.Argument(help="A saved model directory")]


def export(
    model_dir: ModelDir,
    export_format: Annotated[
        str, typer.Option("--format", help="onnx | timm (MODEL/timm/: timm's state dict and config.json)")
    ] = "onnx",
    opset: Annotated[int | None, typer.Option(help="ONNX opset (default: the exporter's)")] = None,
    images: Annotated[
        list[Path] | None,
        typer.Option("--images", help="Real images for the parity check (default: the run's training data)"),
    ] = None,
    max_images: Annotated[int, typer.Option(help="At most this many real images in the parity check")] = 256,
    exporter: Annotated[str, typer.Option(help="auto | dynamo | torchscript")] = "auto",
    tolerance: Annotated[float, typer.Option(help="Largest |Δlogit| accepted against PyTorch")] = 1e-4,
    json_path: Annotated[Path | None, typer.Option("--json", help="Also write the parity report here")] = None,
) -> None:
    """Export to ONNX (MODEL/model.onnx, dynamic batch size), checked against PyTorch before it is written, or
    to timm's own files (MODEL/timm/), which timm.create_model loads without graftcv."""
    from graftcv.export import export_onnx, recorded_images

    if export_format.lower() == "timm":
        from graftcv.timm_export import export_timm

        target = export_timm(model_dir)
        config = json.loads((target / "config.json").read_text())
        out.print(f"wrote {target}: timm.create_model({config['architecture']!r}, pretrained=True, "
                  f"num_classes={config['num_classes']}, pretrained_cfg_overlay={{'file': "
                  f"'{target / 'model.safetensors'}', 'num_classes': {config['num_classes']}}})")  # fmt: skip
        return
    if export_format.lower() != "onnx":
        raise GraftcvError(f"Unknown export format {export_format!r}: choose onnx or timm.")
    sources = [str(p) for p in images] if images else None
    if sources is None and (recorded := recorded_images(model_dir)) is not None:
        sources = [str(recorded)]
    if sources is None:
        logging.getLogger("graftcv").warning("No real images for the parity check (--images): random inputs only.")
    report = export_onnx(
        model_dir, opset=opset, images=sources, exporter=exporter, tolerance=tolerance, max_images=max_images
    )
    out.print(parity_table(report))
    if json_path:
        json_path.write_text(json.dumps(report.as_dict(), indent=2))
        out.print(f"wrote {json_path}")


def serve(
    model_dir: ModelDir,
    host: Annotated[str, typer.Option(help="Interface to bind; the default is reachable from this machine only")] = (
        "127.0.0.1"
    ),
    port: Annotated[int, typer.Option()] = 8000,
    workers: Annotated[int, typer.Option(help="Worker processes, each with its own copy of the model")] = 1,
    runtime: Annotated[str, typer.Option(help="auto (onnx once exported) | torch | onnx")] = "auto",
    max_files: Annotated[int, typer.Option(help="Images per request")] = 16,
    max_file_mb: Annotated[float, typer.Option(help="Megabytes per uploaded file")] = 10.0,
    max_pixels: Annotated[int, typer.Option(help="Pixels per image (width × height)")] = 40_000_000,
    max_request_mb: Annotated[float, typer.Option(help="Megabytes per request, all files together")] = 32.0,
    tta: Annotated[str | None, typer.Option(help=TTA_HELP)] = None,
) -> None:
    """Serve a model over HTTP: POST /predict, POST /explain, GET /health, GET /metadata, docs at /docs."""
    try:
        from graftcv.serve import Limits, ServeSettings
        from graftcv.serve import serve as run_server
    except ImportError as error:
        missing = (error.name or "fastapi").split(".")[0].replace("_", "-")
        raise GraftcvError(f"{missing} is not installed, and serving needs it: pip install 'graftcv[serve]'.") from None
    limits = Limits.from_megabytes(max_files, max_file_mb, max_pixels, max_request_mb)
    run_server(
        ServeSettings(str(model_dir), runtime, limits, tta=None if tta is None else check_tta(tta)),
        host=host,
        port=port,
        workers=workers,
    )


def models() -> None:
    """Known backbones: weights on this machine, parameters, input size, ImageNet top-1."""
    from graftcv.catalog import describe_models  # static facts: no torch, no timm

    out.print(models_table(describe_models()))
    out.print("Any other timm model name works too: `timm.list_models()`; weights come from --weights FILE offline.")
