"""Running an exported model.onnx with onnxruntime, after checking it against graftcv.json."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import torch

from graftcv.artifact import read_meta
from graftcv.errors import GraftcvError

ONNX_FILE = "model.onnx"
INPUT_NAME = "images"
OUTPUT_NAMES = ("logits", "probabilities")


def missing_extra(what: str, extra: str) -> GraftcvError:
    """The one-sentence error for an optional dependency that is not installed."""
    return GraftcvError(f"{what} is not installed: pip install 'graftcv[{extra}]'.")


def import_onnxruntime():
    try:
        import onnxruntime
    except ImportError:
        raise missing_extra("onnxruntime (needed to run ONNX models)", "onnx") from None
    return onnxruntime


def onnx_problem(model_bytes: bytes) -> str | None:
    """Why these bytes are not a self-contained ONNX model we are willing to run, or None.

    External data would make onnxruntime open other files named inside the model, so it is refused."""
    try:
        import onnx
    except ImportError:
        raise missing_extra("onnx (needed to check ONNX models)", "onnx") from None
    try:
        model = onnx.load_model_from_string(model_bytes)
    except Exception:  # protobuf's DecodeError and friends
        return "it is not an ONNX model"
    graphs, tensors = [model.graph], []
    while graphs:
        graph = graphs.pop()
        tensors += [*graph.initializer, *(s.values for s in graph.sparse_initializer)]
        for node in graph.node:
            for attribute in node.attribute:  # unset fields read as empty messages, which are harmless here
                tensors += [attribute.t, *attribute.tensors]
                graphs += [attribute.g, *attribute.graphs] if attribute.HasField("g") else list(attribute.graphs)
    if any(tensor.data_location == onnx.TensorProto.EXTERNAL for tensor in tensors):
        return "it refers to external data files"
    inputs, outputs = [i.name for i in model.graph.input], {o.name for o in model.graph.output}
    if inputs != [INPUT_NAME] or not set(OUTPUT_NAMES) <= outputs:
        return f"it does not have graftcv's input ({INPUT_NAME}) and outputs ({', '.join(OUTPUT_NAMES)})"
    return None


class OnnxRunner:
    """Normalised image batch (n, 3, H, W) → class probabilities (n, C), with onnxruntime on the CPU."""

    def __init__(self, model_bytes: bytes, threads: int | None = None) -> None:
        onnxruntime = import_onnxruntime()
        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = threads or torch.get_num_threads()
        options.log_severity_level = 3  # errors only: no chatter about unused initializers
        self.session = onnxruntime.InferenceSession(model_bytes, options, providers=["CPUExecutionProvider"])

    def outputs(self, batch: torch.Tensor | np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(logits, probabilities) as float32 arrays."""
        array = batch.detach().float().contiguous().cpu().numpy() if isinstance(batch, torch.Tensor) else batch
        logits, probs = self.session.run(list(OUTPUT_NAMES), {INPUT_NAME: np.ascontiguousarray(array, np.float32)})
        return logits, probs

    def __call__(self, batch: torch.Tensor) -> torch.Tensor:
        return torch.from_numpy(self.outputs(batch)[1])


def open_onnx(path: str | Path, threads: int | None = None) -> tuple[OnnxRunner, dict]:
    """The runner and metadata of an exported artifact (its directory, or its model.onnx), after checking
    that graftcv.json records this very file's SHA-256."""
    directory, meta = read_meta(path)
    entry = meta.get("onnx")
    if not isinstance(entry, dict) or not isinstance(entry.get("sha256"), str):
        raise GraftcvError(f"{directory} has no ONNX export: run `graftcv export {directory} --format onnx` first.")
    onnx_path = directory / ONNX_FILE
    if not onnx_path.is_file():
        raise GraftcvError(f"{onnx_path} is missing: run `graftcv export {directory} --format onnx` again.")
    model_bytes = onnx_path.read_bytes()  # one read: the bytes checked are the bytes run
    if hashlib.sha256(model_bytes).hexdigest() != entry["sha256"]:
        raise GraftcvError(f"{onnx_path} does not match the checksum in graftcv.json: it was altered or truncated.")
    problem = onnx_problem(model_bytes)
    if problem:
        raise GraftcvError(f"{onnx_path} cannot be run: {problem}.")
    return OnnxRunner(model_bytes, threads), meta
