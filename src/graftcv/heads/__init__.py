"""Heads on frozen features as tensor operations: scikit-learn heads exported, the prototype head, the op registry."""

from graftcv.heads.ops import NORMALISERS, OPS, HeadOp, TensorHead, affine, register_op
from graftcv.heads.prototype import PROTOTYPE_TEMPERATURE, fit_prototype
from graftcv.heads.sklearn import (
    HEADS,
    LOGREG_C,
    SklearnHead,
    export_pipeline,
    fit_probe,
    make_sklearn_head,
    register_head,
)
from graftcv.heads.trees import UnrolledTrees

__all__ = [
    "HEADS",
    "LOGREG_C",
    "NORMALISERS",
    "OPS",
    "PROTOTYPE_TEMPERATURE",
    "HeadOp",
    "SklearnHead",
    "TensorHead",
    "UnrolledTrees",
    "affine",
    "export_pipeline",
    "fit_probe",
    "fit_prototype",
    "make_sklearn_head",
    "register_head",
    "register_op",
]
