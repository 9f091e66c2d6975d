"""graftcv: transfer learning for image classification, from a folder of images to a shippable model."""

import importlib

from graftcv.errors import GraftcvError

__version__ = "0.1.0"
__all__ = [
    "Adapted",
    "DataSplits",
    "GraftcvError",
    "ImageSet",
    "Model",
    "Run",
    "adapt",
    "add_class",
    "bag",
    "ensemble",
    "fewshot",
    "find_lr",
    "fit",
    "load",
    "predict_to_parquet",
    "tune",
]
# The API, imported on first use (PEP 562): `import graftcv`, and with it the CLI's help and usage errors, do
# not pay for torch, timm, Lightning and scikit-learn until something trains or predicts.
_API = {
    "fit": "graftcv.api",
    "adapt": "graftcv.api",
    "add_class": "graftcv.api",
    "ensemble": "graftcv.api",
    "bag": "graftcv.api",
    "tune": "graftcv.tuning",  # a face (layer 3) over fit
    "fewshot": "graftcv.fewshot",  # a face (layer 3), like compare: not through graftcv.api
    "Adapted": "graftcv.api",
    "find_lr": "graftcv.api",
    "Run": "graftcv.api",
    "Model": "graftcv.api",
    "load": "graftcv.api",
    "DataSplits": "graftcv.api",
    "ImageSet": "graftcv.api",
    "predict_to_parquet": "graftcv.bulk",  # not through graftcv.api: an exported model predicts without torch
}


def __getattr__(name: str):
    if name not in _API:
        raise AttributeError(f"module 'graftcv' has no attribute {name!r}")
    value = getattr(importlib.import_module(_API[name]), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *_API])
