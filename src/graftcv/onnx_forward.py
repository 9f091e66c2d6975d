"""A trained network's forward pass on onnxruntime for one long inference pass: exported in memory, checked
against PyTorch on its first batch, PyTorch again if it disagrees or cannot be exported."""

from __future__ import annotations

import importlib.util
import logging
import time

import numpy as np
import torch
from torch import nn

log = logging.getLogger("graftcv")
OUTPUT = "probabilities"
TOLERANCE = 1e-4  # largest |Δ| of a class probability accepted against PyTorch
# An in-memory export costs ~3 s and onnxruntime runs ~1.5-2.3x PyTorch's images/s on a 2-core CPU, so the
# export pays from a few hundred images on (bench/RESULTS.md, issue 15); below this, PyTorch is done first.
MIN_IMAGES = 512


class CheckedOnnx:
    """`(n, 3, H, W)` normalised images → `(n, C)` probabilities of `network`, from onnxruntime once its first
    batch matched PyTorch; None when it is unusable (export failed, or it disagreed), and the caller runs torch."""

    def __init__(self, network: nn.Module, input_size: tuple[int, int, int]) -> None:
        self.network, self.session, self.checked = network, None, False
        started = time.perf_counter()
        try:
            import onnxruntime

            from graftcv.export import to_onnx

            model_bytes, _ = to_onnx(network, torch.zeros((2, *input_size)), "torchscript", None, outputs=(OUTPUT,))
            options = onnxruntime.SessionOptions()
            options.intra_op_num_threads = torch.get_num_threads()
            options.log_severity_level = 3
            self.session = onnxruntime.InferenceSession(model_bytes, options, providers=["CPUExecutionProvider"])
        except Exception as error:  # an architecture the exporter cannot take: PyTorch it is
            log.info("Inference runs on PyTorch: the network does not export to ONNX (%s).", str(error)[:200])
            return
        log.info("Exported the network to ONNX for this pass in %.1f s.", time.perf_counter() - started)

    @classmethod
    def worth_it(cls, network: nn.Module | None, device: torch.device, n_images: int) -> bool:
        return (
            network is not None
            and device.type == "cpu"
            and n_images >= MIN_IMAGES
            and importlib.util.find_spec("onnxruntime") is not None
        )

    def __call__(self, batch: torch.Tensor) -> torch.Tensor | None:
        if self.session is None:
            return None
        (probs,) = self.session.run([OUTPUT], {"images": np.ascontiguousarray(batch.numpy(), dtype=np.float32)})
        if not self.checked:
            self.checked = True
            with torch.inference_mode():
                expected = self.network(batch.contiguous(memory_format=torch.channels_last)).float().numpy()
            difference = float(np.abs(expected - probs).max())
            if difference > TOLERANCE:
                log.warning(
                    "Inference runs on PyTorch: the ONNX export differs from it by %.2e (more than %.0e).",
                    difference,
                    TOLERANCE,
                )
                self.session = None
                return torch.from_numpy(expected)
        return torch.from_numpy(probs)
