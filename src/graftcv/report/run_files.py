"""Reading a run directory's files for the report; a missing or broken file reads as None, never an error."""

from __future__ import annotations

import csv
import json
from pathlib import Path


def read_json(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError, UnicodeDecodeError):
        return None


def read_csv(path: Path) -> list[dict] | None:
    try:
        with path.open(newline="") as handle:
            return list(csv.DictReader(handle))
    except (OSError, csv.Error, UnicodeDecodeError):
        return None
