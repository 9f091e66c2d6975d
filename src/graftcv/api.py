"""The public API in one place: `fit` a classifier, `load` a saved one (see `graftcv.fitting`, `graftcv.model`)."""

from graftcv.adaptation import Adapted, adapt
from graftcv.bagging import bag
from graftcv.bulk import predict_to_parquet
from graftcv.data import DataSplits, ImageSet
from graftcv.ensembling import ensemble
from graftcv.fitting import Run, fit
from graftcv.lr_search import find_lr
from graftcv.model import Model, load
from graftcv.new_classes import add_class

__all__ = [
    "Adapted", "DataSplits", "ImageSet", "Model", "Run", "adapt", "add_class", "bag", "ensemble", "find_lr", "fit",
    "load", "predict_to_parquet",
]  # fmt: skip
