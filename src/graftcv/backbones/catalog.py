"""Known backbones for `graftcv models`: the torch-free `graftcv.catalog`, under its old name."""

from __future__ import annotations

from graftcv.catalog import CATALOG, KNOWN_BACKBONES, describe_models, weights_available

__all__ = ["CATALOG", "KNOWN_BACKBONES", "describe_models", "weights_available"]
