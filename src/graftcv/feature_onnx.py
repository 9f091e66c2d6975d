"""Frozen-backbone features on onnxruntime: exported once per backbone, weights and input size, cached with its
SHA-256 beside the feature cache, and checked against PyTorch on its first use."""

from __future__ import annotations

import hashlib
import logging
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from graftcv.atomic import write_bytes, write_json
from graftcv.rundir import read_json

log = logging.getLogger("graftcv")
OUTPUT = "features"
TOLERANCE = 1e-4  # largest |Δ| of a pooled feature accepted against PyTorch
# Exporting costs a few seconds; below this many images to compute, torch is done before the export would pay.
MIN_IMAGES_TO_EXPORT = 256


class PooledFeatures(nn.Module):
    """images → the backbone's pooled, pre-logits features: what the feature cache stores."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.model.forward_head(self.model.forward_features(images), pre_logits=True)


@dataclass
class OnnxFeatures:
    """A checked onnxruntime session: `(n, 3, H, W)` float32 images → `(n, D)` pooled features."""

    session: object
    path: Path
    checked: bool  # whether its agreement with PyTorch has been measured (on the first batch it runs)

    def __call__(self, images: np.ndarray) -> np.ndarray:
        (features,) = self.session.run([OUTPUT], {"images": np.ascontiguousarray(images, dtype=np.float32)})
        return features


def _session(model_bytes: bytes):
    import onnxruntime

    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = torch.get_num_threads()
    options.log_severity_level = 3
    return onnxruntime.InferenceSession(model_bytes, options, providers=["CPUExecutionProvider"])


def open_or_export(model: nn.Module, input_size: tuple[int, int, int], directory: Path, images_to_compute: int):
    """The cached export for this feature space (rebuilt when missing, altered or unreadable), or a fresh one
    when enough images wait to be computed; None when onnxruntime is missing, the export fails, or an earlier
    check found it disagreeing with PyTorch (each said once, in the log)."""
    try:
        import onnxruntime  # noqa: F401
    except ImportError:
        return None
    path, record_path = directory / "onnx" / "backbone.onnx", directory / "onnx" / "backbone.json"
    record = read_json(record_path)
    if record is not None and record.get("rejected"):
        return None
    if record is not None and path.is_file():
        model_bytes = path.read_bytes()
        if hashlib.sha256(model_bytes).hexdigest() == record.get("sha256"):
            try:
                return OnnxFeatures(_session(model_bytes), path, checked="max_abs_diff" in record)
            except Exception as error:  # onnxruntime's own errors for a file it cannot load
                log.warning("The cached ONNX backbone %s does not load (%s): exporting it again.", path, error)
        else:
            log.warning("The cached ONNX backbone %s does not match its checksum: exporting it again.", path)
    if images_to_compute < MIN_IMAGES_TO_EXPORT:
        return None
    return _export(model, input_size, path, record_path)


def _export(model: nn.Module, input_size: tuple[int, int, int], path: Path, record_path: Path):
    from graftcv.export import to_onnx

    started = time.perf_counter()
    was_training = model.training
    model.eval()
    try:
        example = torch.zeros((2, *input_size))
        model_bytes, exporter = to_onnx(PooledFeatures(model), example, "torchscript", None, outputs=(OUTPUT,))
        session = _session(model_bytes)
    except Exception as error:  # an architecture the exporter cannot take (GraftcvError included): torch it is
        log.warning("Features run on PyTorch: the backbone does not export to ONNX (%s).", str(error)[:200])
        return None
    finally:
        model.train(was_training)
    write_bytes(path, model_bytes)
    write_json(
        record_path,
        {"sha256": hashlib.sha256(model_bytes).hexdigest(), "exporter": exporter, "input_size": list(input_size)},
    )
    log.info("Exported the frozen backbone to ONNX for the feature pass in %.1f s.", time.perf_counter() - started)
    return OnnxFeatures(session, path, checked=False)


def check_against_torch(runner: OnnxFeatures, torch_features: np.ndarray, onnx_features: np.ndarray) -> bool:
    """Record the first batch's largest difference; a runner off by more than TOLERANCE is rejected for good
    (the record says so), and the caller goes on with PyTorch."""
    difference = float(np.abs(torch_features - onnx_features).max()) if len(torch_features) else 0.0
    record_path = runner.path.with_suffix(".json")
    record = read_json(record_path) or {}
    accepted = difference <= TOLERANCE
    write_json(record_path, record | {"max_abs_diff": difference} | ({} if accepted else {"rejected": True}))
    runner.checked = True
    if not accepted:
        log.warning(
            "Features run on PyTorch: the ONNX backbone differs from it by %.2e (more than %.0e).",
            difference,
            TOLERANCE,
        )
    return accepted
