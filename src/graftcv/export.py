"""ONNX export of a saved model: model.onnx beside graftcv.json, dynamic batch size, checked against PyTorch."""

from __future__ import annotations

import contextlib
import hashlib
import io
import logging
import time
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from graftcv.artifact import Classifier, build_classifier, read_artifact, read_meta, update_meta
from graftcv.atomic import write_bytes
from graftcv.data import build_transform, decode_size, evenly_spaced, load_rgb
from graftcv.data.discovery import list_images
from graftcv.ensembles import Ensemble
from graftcv.errors import GraftcvError
from graftcv.heads.ops import NORMALISERS, OPS, TensorHead, activate_segments
from graftcv.rundir import RunDir
from graftcv.runtime import INPUT_NAME, ONNX_FILE, OUTPUT_NAMES, OnnxRunner, missing_extra

log = logging.getLogger("graftcv")
EXPORTERS = ("auto", "dynamo", "torchscript")
TORCHSCRIPT_OPSET = 17


class ExportNetwork(nn.Module):
    """Images → (logits, probabilities), the two outputs of model.onnx.

    `probabilities` are the artifact's own; `logits` are what softmax turns into them: the timm network's
    logits, the pre-softmax scores of a probe head, or log-probabilities for a head that ends in
    probabilities (random forest)."""

    def __init__(self, classifier: Classifier | Ensemble) -> None:
        super().__init__()
        self.ensemble = classifier if isinstance(classifier, Ensemble) else None
        self.backbone = classifier.backbone
        self.segments = classifier.segments
        ops = classifier.probe.ops if classifier.probe is not None else None
        self.has_probe = ops is not None
        self.normaliser = TensorHead([ops[-1]]) if ops and ops[-1]["op"] in NORMALISERS else None
        body = ops[:-1] if self.normaliser is not None else (ops or [])
        stages: list[nn.Module] = []
        for op in body:
            graph = OPS.lookup(op["op"]).graph
            if graph is not None:  # an op with a data-dependent loop, as an equivalent fixed graph
                stages.append(graph(op))
            elif stages and isinstance(stages[-1], TensorHead):
                stages[-1].ops.append(op)
            else:
                stages.append(TensorHead([op]))
        self.stages = nn.ModuleList(stages)
        self.normaliser_kind = ops[-1]["op"] if self.normaliser is not None else None

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if self.ensemble is not None:  # averaged probabilities: their logarithm is what softmax turns into them
            probs = self.ensemble(images)
            return probs.clamp_min(1e-12).log(), probs
        out = self.backbone(images).float()
        if not self.has_probe:
            return out, activate_segments({"segments": self.segments}, out) if self.segments else out.softmax(-1)
        for stage in self.stages:
            out = stage(out)
        if self.normaliser is None:
            return out.clamp_min(1e-12).log(), out
        probs = self.normaliser(out)
        if self.normaliser_kind == "sigmoid2":  # sigmoid2(z) = softmax([0, z])
            return torch.cat([torch.zeros_like(out[:, -1:]), out[:, -1:]], dim=1), probs
        return out, probs


@dataclass
class ExportReport:
    """What `export_onnx` wrote and how closely onnxruntime matched PyTorch."""

    path: str
    exporter: str
    opset: int
    seconds: float
    random_inputs: int
    real_images: int
    max_abs_logit_diff: float
    max_abs_prob_diff: float
    top1_agreement: float
    top1_mismatches_real: int

    def as_dict(self) -> dict:
        return asdict(self)


def to_onnx(
    network: nn.Module,
    example: torch.Tensor,
    exporter: str = "auto",
    opset: int | None = None,
    outputs: tuple[str, ...] = OUTPUT_NAMES,
) -> tuple[bytes, str]:
    """Serialized ONNX of `network` (input `images`, the named `outputs`) with a dynamic batch axis, and which
    exporter made it."""
    try:
        import onnxscript  # noqa: F401  (the dynamo exporter needs it; fail with our sentence, not torch's)
    except ImportError:
        if exporter == "dynamo":
            raise missing_extra("onnxscript (needed by the ONNX exporter)", "onnx") from None
        exporter = "torchscript" if exporter == "auto" else exporter
    quiet = contextlib.redirect_stdout(io.StringIO())  # the dynamo exporter prints progress lines
    if exporter in ("auto", "dynamo"):
        try:
            with quiet, warnings.catch_warnings():
                warnings.simplefilter("ignore")
                program = torch.onnx.export(
                    network,
                    (example,),
                    dynamo=True,
                    input_names=[INPUT_NAME],
                    output_names=list(outputs),
                    dynamic_shapes={"images": {0: torch.export.Dim("batch", min=1)}},
                    opset_version=opset,
                    external_data=False,
                    verbose=False,
                )
            return program.model_proto.SerializeToString(), "dynamo"
        except Exception as error:
            if exporter == "dynamo":
                raise GraftcvError(f"The dynamo ONNX exporter failed ({str(error).splitlines()[0][:200]}).") from None
            log.info("The dynamo ONNX exporter failed (%s); trying the TorchScript exporter.", error)
    buffer = io.BytesIO()
    axes = {name: {0: "batch"} for name in (INPUT_NAME, *outputs)}
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.onnx.export(
                network,
                (example,),
                buffer,
                dynamo=False,
                input_names=[INPUT_NAME],
                output_names=list(outputs),
                dynamic_axes=axes,
                opset_version=opset or TORCHSCRIPT_OPSET,
            )
    except Exception as error:
        raise GraftcvError(f"ONNX export failed ({str(error).splitlines()[0][:200]}).") from None
    return buffer.getvalue(), "torchscript"


def _opset(model_bytes: bytes) -> int:
    import onnx

    model = onnx.load_model_from_string(model_bytes)
    return next(entry.version for entry in model.opset_import if entry.domain in ("", "ai.onnx"))


def parity_batches(
    data_config: dict, images: list | None, max_images: int, seed: int = 0
) -> list[tuple[str, torch.Tensor]]:
    """("random" | "real", batch) pairs: random batches of 1 and 5 (sizes unlike the export example), then
    the real images, preprocessed as for prediction, 16 at a time."""
    size = tuple(data_config["input_size"])
    generator = torch.Generator().manual_seed(seed)
    batches = [("random", torch.randn((n, *size), generator=generator)) for n in (1, 5)]
    if images:
        paths, _ = list_images(list(images))
        transform, side = build_transform(data_config), decode_size(data_config)
        paths = evenly_spaced(paths, max_images)  # so that every class folder is represented
        tensors = [transform(load_rgb(p, draft_size=side)) for p in paths]
        batches += [("real", torch.stack(tensors[i : i + 16])) for i in range(0, len(tensors), 16)]
    return batches


def recorded_images(model_dir: str | Path) -> Path | None:
    """The training data recorded in the run directory around a model, when still there: real images for the
    parity check when none are given."""
    return RunDir.around_model(model_dir).recorded_data()


def compare(classifier: Classifier, network: ExportNetwork, runner: OnnxRunner, batches: list) -> dict:
    """Max |Δ| of logits (ONNX vs the export network) and probabilities (ONNX vs the artifact's own
    PyTorch classifier), and top-1 agreement, over every batch."""
    logit_diff = prob_diff = 0.0
    agree = total = real_mismatches = 0
    with torch.inference_mode():
        for kind, batch in batches:
            torch_logits, _ = network(batch)
            torch_probs = classifier(batch).float()
            onnx_logits, onnx_probs = runner.outputs(batch)
            logit_diff = max(logit_diff, float(np.abs(onnx_logits - torch_logits.numpy()).max()))
            prob_diff = max(prob_diff, float(np.abs(onnx_probs - torch_probs.numpy()).max()))
            same = onnx_probs.argmax(1) == torch_probs.numpy().argmax(1)
            agree, total = agree + int(same.sum()), total + len(same)
            real_mismatches += int((~same).sum()) if kind == "real" else 0
    return {
        "max_abs_logit_diff": logit_diff,
        "max_abs_prob_diff": prob_diff,
        "top1_agreement": agree / max(total, 1),
        "top1_mismatches_real": real_mismatches,
    }


def export_onnx(
    model_dir: str | Path,
    opset: int | None = None,
    images: list[str | Path] | None = None,
    exporter: str = "auto",
    tolerance: float = 1e-4,
    max_images: int = 256,
) -> ExportReport:
    """Write MODEL/model.onnx (input `images` (batch, 3, H, W) normalised as for prediction; outputs
    `logits` and `probabilities`), check it with onnxruntime against PyTorch on random inputs and on
    `images` when given, and record its SHA-256 and opset in graftcv.json. Nothing is written when the
    outputs differ by more than `tolerance` or a real image's top-1 class changes."""
    if exporter not in EXPORTERS:
        raise GraftcvError(f"Unknown exporter {exporter!r}: choose one of {', '.join(EXPORTERS)}.")
    start = time.perf_counter()
    directory, _ = read_meta(model_dir)
    tensors, meta = read_artifact(directory)
    classifier = build_classifier(tensors, meta).eval()
    network = ExportNetwork(classifier).eval()  # eval() matters: the exporters would trace train-mode BatchNorm
    example = torch.randn((2, *meta["data_config"]["input_size"]), generator=torch.Generator().manual_seed(1))
    model_bytes, used = to_onnx(network, example, exporter, opset)
    runner = OnnxRunner(model_bytes)
    batches = parity_batches(meta["data_config"], images, max_images)
    result = compare(classifier, network, runner, batches)
    if result["max_abs_logit_diff"] > tolerance or result["top1_mismatches_real"]:
        raise GraftcvError(
            f"The ONNX model does not match PyTorch (max |Δlogit| {result['max_abs_logit_diff']:.2e}, "
            f"{result['top1_mismatches_real']} real images change class); nothing was written."
        )
    path = directory / ONNX_FILE
    write_bytes(path, model_bytes)
    report = ExportReport(
        path=str(path),
        exporter=used,
        opset=_opset(model_bytes),
        seconds=round(time.perf_counter() - start, 2),
        random_inputs=sum(len(b) for kind, b in batches if kind == "random"),
        real_images=sum(len(b) for kind, b in batches if kind == "real"),
        **result,
    )
    update_meta(
        directory,
        onnx={
            "file": ONNX_FILE,
            "sha256": hashlib.sha256(model_bytes).hexdigest(),
            "opset": report.opset,
            "exporter": used,
            "input": f"{INPUT_NAME}: float32 (batch, {', '.join(map(str, meta['data_config']['input_size']))})",
            "outputs": list(OUTPUT_NAMES),
            "parity": {k: v for k, v in report.as_dict().items() if k not in ("path", "seconds")},
            "torch": torch.__version__,
        },
    )
    return report
