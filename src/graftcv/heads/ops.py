"""Head operations on features, by name: what an exported head (and graftcv.json) is made of."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from graftcv.errors import GraftcvError
from graftcv.registry import Registry


@dataclass(frozen=True)
class HeadOp:
    """One kind of step of a tensor head: `apply(op, x)`; `check(op)` refuses malformed stored values;
    `graph(op)`, when given, is an equivalent module without data-dependent loops (for ONNX export)."""

    name: str
    help: str
    apply: Callable[[dict, torch.Tensor], torch.Tensor]
    check: Callable[[dict], None] | None = None
    graph: Callable[[dict], nn.Module] | None = None


OPS: Registry[HeadOp] = Registry("head operation")
register_op = OPS.register


def _sigmoid2(op: dict, x: torch.Tensor) -> torch.Tensor:
    p = torch.sigmoid(x[:, -1:])
    return torch.cat([1 - p, p], dim=1)


def activate_segments(op: dict, x: torch.Tensor) -> torch.Tensor:
    """Softmax or sigmoid over each [start, stop, kind] slice: the probabilities of a multi-label or multi-task
    model (`graftcv.data.tasks`)."""
    parts = []
    for start, stop, kind in op["segments"]:
        part = x[:, int(start) : int(stop)]
        parts.append(torch.sigmoid(part) if kind == "sigmoid" else part.softmax(-1))
    return torch.cat(parts, dim=1)


def _check_segments(op: dict) -> None:
    segments = op.get("segments")
    ok = isinstance(segments, list) and segments and all(
        isinstance(s, list) and len(s) == 3 and isinstance(s[0], int) and isinstance(s[1], int) and 0 <= s[0] < s[1]
        and s[2] in ("softmax", "sigmoid") for s in segments
    )  # fmt: skip
    if not ok or any(a[1] != b[0] for a, b in zip(segments, segments[1:], strict=False)) or segments[0][0] != 0:
        raise GraftcvError("The artifact's head has a malformed 'segments' operation.")


register_op(HeadOp("affine", "x @ weight.T + bias", lambda op, x: x @ op["weight"].T + op["bias"]))
register_op(HeadOp("bias", "x + bias", lambda op, x: x + op["bias"]))
register_op(HeadOp("relu", "max(x, 0)", lambda op, x: x.clamp_min(0)))
register_op(HeadOp("l2norm", "x / |x|", lambda op, x: nn.functional.normalize(x, dim=-1)))
register_op(HeadOp("softmax", "probabilities over classes", lambda op, x: x.softmax(-1)))
register_op(HeadOp("sigmoid2", "two-class probabilities from one logit", _sigmoid2))
register_op(HeadOp("segments", "softmax or sigmoid per task slice", activate_segments, check=_check_segments))

# Class-probability normalisers: ONNX export splits them off to give the logits as an output of their own.
NORMALISERS = ("softmax", "sigmoid2", "segments")


def affine(weight: np.ndarray, bias: np.ndarray) -> dict:
    return {
        "op": "affine",
        "weight": torch.as_tensor(np.asarray(weight, dtype=np.float32)),
        "bias": torch.as_tensor(np.asarray(bias, dtype=np.float32)),
    }


class TensorHead(nn.Module):
    """Evaluates exported head ops on features; returns class probabilities."""

    def __init__(self, ops: list[dict]) -> None:
        super().__init__()
        for op in ops:
            OPS.lookup(op["op"])  # an unknown op is an error here, never skipped later
        self.ops = ops

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.float()
        for op in self.ops:
            x = OPS[op["op"]].apply(op, x)
        return x

    def state(self) -> tuple[dict[str, torch.Tensor], list[dict]]:
        """(tensors, JSON-able op list naming them) for safetensors + graftcv.json."""
        tensors, spec = {}, []
        for i, op in enumerate(self.ops):
            entry = {}
            for key, value in op.items():
                if isinstance(value, torch.Tensor):
                    tensors[f"probe.{i}.{key}"] = value.contiguous()
                    entry[key] = f"probe.{i}.{key}"
                else:
                    entry[key] = value
            spec.append(entry)
        return tensors, spec

    @classmethod
    def from_state(cls, tensors: dict[str, torch.Tensor], spec: list[dict]) -> TensorHead:
        """The head stored in an artifact; unknown or malformed operations are a GraftcvError."""
        ops = [
            {k: tensors[v] if isinstance(v, str) and v.startswith("probe.") else v for k, v in entry.items()}
            for entry in spec
        ]
        for op in ops:
            name = op.get("op")
            if name not in OPS:
                raise GraftcvError(
                    f"The artifact's head uses an operation this graftcv does not know ({str(name)[:40]!r}); "
                    f"known: {', '.join(OPS)}."
                )
            if OPS[name].check is not None:
                OPS[name].check(op)
        return cls(ops)
