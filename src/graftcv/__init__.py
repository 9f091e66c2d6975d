"""graftcv: transfer learning for image classification, from a folder of images to a shippable model."""

from graftcv.api import DataSplits, ImageSet, Model, Run, find_lr, fit, load
from graftcv.errors import GraftcvError

__all__ = ["DataSplits", "GraftcvError", "ImageSet", "Model", "Run", "find_lr", "fit", "load"]
__version__ = "0.1.0"
