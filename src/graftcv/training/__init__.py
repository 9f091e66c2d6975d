"""Gradient training: one LightningModule and its callbacks, one loop for every strategy.

Nothing is imported here, so that `graftcv.training.phase` and `.freezing` stay light (no Lightning)."""
