"""Running an exported model.onnx with onnxruntime, after checking it against graftcv.json (no torch needed)."""

from __future__ import annotations

import hashlib
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from graftcv.errors import GraftcvError
from graftcv.meta import read_meta

ONNX_FILE = "model.onnx"
INPUT_NAME = "images"
OUTPUT_NAMES = ("logits", "probabilities")


# Where an ONNX model can hold tensors: message → {field number: the message type of that field}, from
# onnx-ml.proto. A TensorProto (field 13 external_data, field 14 data_location) is checked wherever it sits.
NESTED = {
    "model": {7: "graph", 20: "training", 25: "function"},
    "training": {1: "graph", 2: "graph"},
    "function": {7: "node", 11: "attribute"},
    "graph": {1: "node", 5: "tensor", 15: "sparse"},
    "node": {5: "attribute"},
    "attribute": {5: "tensor", 6: "graph", 10: "tensor", 11: "graph", 22: "sparse", 23: "sparse"},
    "sparse": {1: "tensor", 2: "tensor"},
    "tensor": {},
}
EXTERNAL = 1  # TensorProto.DataLocation.EXTERNAL


def missing_extra(what: str, extra: str) -> GraftcvError:
    """The one-sentence error for an optional dependency that is not installed."""
    return GraftcvError(f"{what} is not installed: pip install 'graftcv[{extra}]'.")


def import_onnxruntime() -> Any:
    try:
        import onnxruntime
    except ImportError:
        raise GraftcvError("onnxruntime, which runs ONNX models, is not installed: pip install onnxruntime.") from None
    return onnxruntime


def has_onnx_export(meta: dict) -> bool:
    """Whether graftcv.json records an ONNX export (its checksum)."""
    entry = meta.get("onnx")
    return isinstance(entry, dict) and isinstance(entry.get("sha256"), str)


def _varint(data: memoryview, pos: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        if pos >= len(data) or shift > 63:
            raise ValueError("truncated varint")
        byte = data[pos]
        result |= (byte & 0x7F) << shift
        pos, shift = pos + 1, shift + 7
        if byte < 0x80:
            return result, pos


def _fields(data: memoryview) -> Iterator[tuple[int, int, int | memoryview | None]]:
    """(field number, wire type, value) of one protobuf message: an int for varints, the bytes of
    length-delimited fields (a nested message, a string), None for fixed-width ones."""
    pos = 0
    while pos < len(data):
        key, pos = _varint(data, pos)
        number, wire = key >> 3, key & 7
        value: int | memoryview | None = None
        if wire == 0:
            value, pos = _varint(data, pos)
        elif wire in (1, 5):
            pos += 8 if wire == 1 else 4
        elif wire == 2:
            length, pos = _varint(data, pos)
            value, pos = data[pos : pos + length], pos + length
        else:
            raise ValueError("groups or an unknown wire type")
        if number == 0 or pos > len(data):
            raise ValueError("bad field")
        yield number, wire, value


def onnx_problem(model_bytes: bytes) -> str | None:
    """Why these bytes are not a self-contained ONNX model we are willing to run, or None.

    External data would make onnxruntime open other files named inside the model, so it is refused. The
    protobuf is walked here, field by field, rather than parsed with the onnx package, whose import alone takes
    longer than a prediction."""
    inputs, outputs = [], set()
    stack = [("model", memoryview(model_bytes), False)]
    try:
        while stack:
            kind, data, top = stack.pop()
            for number, wire, value in _fields(data):
                if kind == "tensor" and (number == 13 or (number == 14 and wire == 0 and value == EXTERNAL)):
                    return "it refers to external data files"
                if wire != 2 or not isinstance(value, memoryview):
                    continue
                if top and number in (11, 12):  # the main graph's inputs and outputs: ValueInfoProto.name is 1
                    name = next((bytes(v).decode("utf-8", "replace") for n, w, v in _fields(value) if n == 1), "")
                    if number == 11:
                        inputs.append(name)
                    else:
                        outputs.add(name)
                if number in NESTED[kind]:
                    stack.append((NESTED[kind][number], value, kind == "model" and number == 7))
    except ValueError:
        return "it is not an ONNX model"
    if inputs != [INPUT_NAME] or not set(OUTPUT_NAMES) <= outputs:
        return f"it does not have graftcv's input ({INPUT_NAME}) and outputs ({', '.join(OUTPUT_NAMES)})"
    return None


def _is_torch_tensor(batch: object) -> bool:
    """A torch.Tensor, told without importing torch: if torch is not imported, nothing is one."""
    torch = sys.modules.get("torch")
    return torch is not None and isinstance(batch, torch.Tensor)


class OnnxRunner:
    """Normalised image batch (n, 3, H, W) → class probabilities (n, C), with onnxruntime on the CPU.

    Batches are numpy arrays or torch tensors; `runner(batch)` answers in the kind it was given."""

    def __init__(self, model_bytes: bytes, threads: int | None = None) -> None:
        onnxruntime = import_onnxruntime()
        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = threads or os.cpu_count() or 1
        options.log_severity_level = 3  # errors only: no chatter about unused initializers
        self.session = onnxruntime.InferenceSession(model_bytes, options, providers=["CPUExecutionProvider"])

    def outputs(self, batch: Any) -> tuple[np.ndarray, np.ndarray]:
        """(logits, probabilities) as float32 arrays."""
        array = batch.detach().float().contiguous().cpu().numpy() if _is_torch_tensor(batch) else batch
        logits, probs = self.session.run(list(OUTPUT_NAMES), {INPUT_NAME: np.ascontiguousarray(array, np.float32)})
        return logits, probs

    def __call__(self, batch: Any) -> Any:
        probs = self.outputs(batch)[1]
        if _is_torch_tensor(batch):
            import torch

            return torch.from_numpy(probs)
        return probs


def open_onnx(path: str | Path, threads: int | None = None) -> tuple[OnnxRunner, dict]:
    """The runner and metadata of an exported artifact (its directory, or its model.onnx), after checking
    that graftcv.json records this very file's SHA-256."""
    directory, meta = read_meta(path)
    if not has_onnx_export(meta):
        raise GraftcvError(f"{directory} has no ONNX export: run `graftcv export {directory} --format onnx` first.")
    onnx_path = directory / ONNX_FILE
    if not onnx_path.is_file():
        raise GraftcvError(f"{onnx_path} is missing: run `graftcv export {directory} --format onnx` again.")
    model_bytes = onnx_path.read_bytes()  # one read: the bytes checked are the bytes run
    if hashlib.sha256(model_bytes).hexdigest() != meta["onnx"]["sha256"]:
        raise GraftcvError(f"{onnx_path} does not match the checksum in graftcv.json: it was altered or truncated.")
    problem = onnx_problem(model_bytes)
    if problem:
        raise GraftcvError(f"{onnx_path} cannot be run: {problem}.")
    try:
        return OnnxRunner(model_bytes, threads), meta
    except GraftcvError:
        raise
    except Exception as error:  # onnxruntime's own errors (InvalidGraph, Fail) for a model it cannot load
        message = str(error).splitlines()[0][:160] if str(error) else type(error).__name__
        raise GraftcvError(f"{onnx_path} cannot be run: onnxruntime refused it ({message}).") from None
