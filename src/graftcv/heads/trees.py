"""Decision trees as tensors: scikit-learn forests and boosting exported, evaluated, checked and unrolled."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from graftcv.errors import GraftcvError
from graftcv.heads.ops import HeadOp, register_op


def export_trees(trees: list, scale: float) -> dict:
    """Decision trees as padded arrays: (T, nodes) left/right/feature/threshold and (T, nodes, out) values."""
    n_nodes = max(t.tree_.node_count for t in trees)
    n_out = trees[0].tree_.value.shape[-1] if trees[0].tree_.value.ndim == 3 else 1

    def pad(array: np.ndarray, fill: float) -> np.ndarray:
        shape = (n_nodes, *array.shape[1:])
        padded = np.full(shape, fill, dtype=array.dtype)
        padded[: len(array)] = array
        return padded

    values = []
    for t in trees:
        value = t.tree_.value.reshape(t.tree_.node_count, -1)
        if value.shape[1] > 1:  # classifier leaves hold class fractions
            value = value / value.sum(axis=1, keepdims=True)
        values.append(pad(value, 0.0))
    return {
        "op": "trees",
        "left": torch.as_tensor(np.stack([pad(t.tree_.children_left, -1) for t in trees])),
        "right": torch.as_tensor(np.stack([pad(t.tree_.children_right, -1) for t in trees])),
        "feature": torch.as_tensor(np.stack([pad(t.tree_.feature, 0) for t in trees]).clip(min=0)),
        "threshold": torch.as_tensor(np.stack([pad(t.tree_.threshold, 0.0) for t in trees]).astype(np.float32)),
        "value": torch.as_tensor(np.stack(values).astype(np.float32)),
        "scale": scale,
        "n_out": n_out,
    }


def eval_trees(op: dict, x: torch.Tensor) -> torch.Tensor:
    n_trees = op["left"].shape[0]
    node = torch.zeros(n_trees, x.shape[0], dtype=torch.long)
    tree_index = torch.arange(n_trees)[:, None]
    while True:
        left = op["left"][tree_index, node]
        active = left >= 0
        if not active.any():
            break
        feature = op["feature"][tree_index, node]
        go_left = x.T[feature, torch.arange(x.shape[0])[None, :]] <= op["threshold"][tree_index, node]
        nxt = torch.where(go_left, left, op["right"][tree_index, node])
        node = torch.where(active, nxt, node)
    values = op["value"][tree_index, node]  # (T, n, out)
    columns = int(op.get("columns", 0))
    if columns:  # boosting: tree t adds to raw output t % columns
        summed = values[..., 0].reshape(-1, columns, x.shape[0]).sum(0).T
        return summed * op["scale"]
    return values.sum(0) * op["scale"]


def check_trees(op: dict) -> None:
    """Every child index of a stored tree must point further down the node array (as scikit-learn writes
    them): a cycle would make tree evaluation loop for ever."""
    nodes = torch.arange(op["left"].shape[1])
    for children in (op["left"], op["right"]):
        if not bool(((children == -1) | (children > nodes)).all()) or bool((children >= len(nodes)).any()):
            raise GraftcvError("The artifact's probe holds malformed decision trees (a child index points back).")


def tree_depth(left: torch.Tensor, right: torch.Tensor) -> int:
    """The longest root-to-leaf path over padded (trees, nodes) child arrays; children follow their parent."""
    left_np, right_np = left.numpy(), right.numpy()
    depth = np.zeros(left_np.shape, dtype=np.int64)
    rows = np.arange(left_np.shape[0])
    for node in range(left_np.shape[1]):
        for children in (left_np[:, node], right_np[:, node]):
            has = children >= 0
            depth[rows[has], children[has]] = depth[rows[has], node] + 1
    return int(depth.max())


class UnrolledTrees(nn.Module):
    """A `trees` head op walked for a fixed number of levels (the deepest tree's depth) instead of `while`:
    the same result, and a graph ONNX can hold. Nodes are indexed in one flat array over all trees."""

    def __init__(self, op: dict) -> None:
        super().__init__()
        n_trees, n_nodes = op["left"].shape
        offsets = torch.arange(n_trees)[:, None] * n_nodes

        def flat_children(children: torch.Tensor) -> torch.Tensor:
            return torch.where(children >= 0, children + offsets, -1).flatten()

        self.depth = tree_depth(op["left"], op["right"])
        self.register_buffer("roots", torch.arange(n_trees) * n_nodes)
        self.register_buffer("left", flat_children(op["left"]))
        self.register_buffer("right", flat_children(op["right"]))
        self.register_buffer("feature", op["feature"].flatten().long())
        self.register_buffer("threshold", op["threshold"].flatten().float())
        self.register_buffer("value", op["value"].reshape(n_trees * n_nodes, -1).float())
        self.scale = float(op["scale"])
        self.columns = int(op.get("columns", 0))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        node = self.roots.expand(x.shape[0], -1)  # (n, trees)
        for _ in range(self.depth):
            left = self.left[node]
            go_left = torch.gather(x, 1, self.feature[node]) <= self.threshold[node]
            node = torch.where(left >= 0, torch.where(go_left, left, self.right[node]), node)
        values = self.value[node]  # (n, trees, out)
        if self.columns:  # boosting: tree t adds to raw output t % columns
            return values[..., 0].reshape(x.shape[0], -1, self.columns).sum(1) * self.scale
        return values.sum(1) * self.scale


register_op(HeadOp("trees", "a forest or boosted ensemble of decision trees", eval_trees, check_trees, UnrolledTrees))
