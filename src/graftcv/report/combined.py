"""The report's sections for runs that combine others: a `tune` study (trials, importance, plots) and an ensemble
(its members and their weights)."""

from __future__ import annotations

from graftcv.pages import png_uri
from graftcv.rundir import RunDir, read_json

SHOWN_TRIALS = 40


def tune_section(run_dir: RunDir) -> dict | None:
    found = read_json(run_dir.path / "tune.json")
    if not found:
        return None
    trials = read_json(run_dir.path / "trials.json") or []
    if not isinstance(trials, list):
        trials = []
    params = sorted({k for row in trials for k in row if k.startswith("param_")})
    ranked = sorted(trials, key=lambda r: (r.get("value") is None, -(r.get("value") or 0.0)))[:SHOWN_TRIALS]
    plots = {}
    for name in found.get("plots") or []:
        path = run_dir.path / name
        if path.is_file() and path.suffix == ".png":
            plots[name] = png_uri(path.read_bytes())
    return found | {"rows": ranked, "params": params, "plot_uris": plots}


def ensemble_section(summary: dict) -> dict | None:
    if "weighting" not in summary or not isinstance(summary.get("members"), list):  # ensemble, bagging
        return None
    return {"weighting": summary.get("weighting"), "members": summary["members"]}


def snapshots_section(summary: dict) -> list[dict] | None:
    """--snapshots: the best single epoch, the snapshot ensemble and the soup, as rows."""
    found = summary.get("snapshots")
    if not isinstance(found, dict):
        return None
    where = {"best_epoch": "model/", "ensemble": "snapshots/ensemble/", "soup": "snapshots/soup/"}
    return [{"name": name.replace("_", " "), "where": where.get(name, ""), **row} for name, row in found.items()]
