"""`graftcv tune`: hyper-parameter search on Optuna over `fit`, the best model kept as a normal run."""

from graftcv.tuning.study import tune

__all__ = ["tune"]
