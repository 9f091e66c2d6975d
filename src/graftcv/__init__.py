"""graftcv: transfer learning for image classification, from a folder of images to a shippable model."""

from graftcv.api import Model, Run, fit, load
from graftcv.errors import GraftcvError

__all__ = ["GraftcvError", "Model", "Run", "fit", "load"]
__version__ = "0.1.0"
