"""Gradient training: one LightningModule and its callbacks, one loop for every strategy."""

from graftcv.training.module import OptimSettings, TransferModule
from graftcv.training.runner import PhaseResult, run_phase

__all__ = ["OptimSettings", "PhaseResult", "TransferModule", "run_phase"]
