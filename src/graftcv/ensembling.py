"""`ensemble`: trained models of one split combined into one artifact, weighted equally or by ensemble selection."""

from __future__ import annotations

import logging
import time
from datetime import datetime
from pathlib import Path

import numpy as np

from graftcv.artifact import Classifier, build_classifier, read_artifact, save_artifact, save_ensemble, update_meta
from graftcv.data import ImageSet
from graftcv.ensembles import Ensemble, MemberInput, ensemble_data_config, negative_log_likelihood, select_weights
from graftcv.errors import GraftcvError
from graftcv.evaluation import classification_report
from graftcv.evaluation.outputs import headline
from graftcv.meta import META_FILE
from graftcv.model import load
from graftcv.outcomes import Run, versions
from graftcv.rundir import RunDir
from graftcv.snapshotting import greedy_soup

log = logging.getLogger("graftcv")
WEIGHTINGS = ("learned", "equal", "soup")


def model_directory(path: str | Path) -> Path:
    """A model directory, given it or the run directory around it."""
    path = Path(path).expanduser()
    if (path / "model" / META_FILE).is_file():
        return path / "model"
    if (path / META_FILE).is_file():
        return path
    raise GraftcvError(f"{path} is neither a graftcv model nor a run directory holding one (model/{META_FILE}).")


def split_predictions(model_dir: Path, split: str, classes: list[str]) -> tuple[ImageSet, np.ndarray] | None:
    """The images of a member's recorded split and its probabilities for them, or None when not recorded."""
    rows = RunDir.around_model(model_dir).predictions(split)
    if not rows:
        return None
    images = ImageSet([Path(r["path"]) for r in rows], [r["label"] for r in rows])
    return images, np.array([[float(r[c]) for c in classes] for r in rows], dtype=np.float64)


def _aligned(members: list[Path], split: str, classes: list[str]) -> tuple[ImageSet, list[np.ndarray]] | None:
    """Every member's probabilities on one split, rows in the first member's order; None when some lack the split."""
    found = [split_predictions(m, split, classes) for m in members]
    if any(f is None for f in found):
        return None
    images = found[0][0]
    order = {str(p): i for i, p in enumerate(images.paths)}
    probs = []
    for member, (other, member_probs) in zip(members, found, strict=True):
        if sorted(order) != sorted(str(p) for p in other.paths):
            raise GraftcvError(
                f"{member} was validated on other images than {members[0]}: ensemble members must share their "
                "split (train them on the same data with the same --seed, --val and --test)."
            )
        rows = np.empty_like(member_probs)
        rows[[order[str(p)] for p in other.paths]] = member_probs
        probs.append(rows)
    return images, probs


def ensemble(models: list[str | Path], out: str | Path, weights: str = "equal", overwrite: bool = False) -> Run:
    """Combine trained models (their run or model directories) into one ensemble artifact under `out`/model.

    The members must share their classes and validation split. `weights="equal"` (the default) averages them;
    `"learned"` chooses each member's weight by greedy ensemble selection on the validation predictions, which
    a few hundred validation images overfit (below equal weights on flowers5 and art_painting, bench/RESULTS.md);
    `"soup"` averages their weights instead (see `_save_soup`). The ensemble is then scored on
    the members' validation and (when they have one) test images, by running the saved artifact itself."""
    started = time.perf_counter()
    if weights not in WEIGHTINGS:
        raise GraftcvError(f"Unknown --weights {weights!r}: choose learned, equal or soup.")
    if len(models) < 2:
        raise GraftcvError("An ensemble needs at least two models.")
    run_dir = RunDir(Path(out))
    if run_dir.finished() and not overwrite:
        raise GraftcvError(f"{out} already holds a finished run: choose another --out, or pass --overwrite.")
    member_dirs = [model_directory(m) for m in models]
    loaded = [read_artifact(m) for m in member_dirs]
    classes = list(loaded[0][1]["classes"])
    for directory, (_, meta) in zip(member_dirs, loaded, strict=True):
        if meta.get("kind") == "ensemble":
            raise GraftcvError(f"{directory} is already an ensemble: give its members instead.")
        if meta.get("tasks"):
            raise GraftcvError(f"{directory} has several labels per image; ensembles take single-label models.")
        if list(meta["classes"]) != classes:
            raise GraftcvError(f"{directory} has other classes than {member_dirs[0]}: members must share them.")
    val = _aligned(member_dirs, "val", classes)
    if val is None:
        raise GraftcvError("Every member needs its val_predictions.csv (a finished graftcv train run around it).")
    val_images, val_probs = val
    val_targets = np.array(val_images.targets(classes))
    networks: list[Classifier] = [build_classifier(tensors, meta) for tensors, meta in loaded]
    run_dir.path.mkdir(parents=True, exist_ok=True)
    if weights == "soup":
        meta, chosen = _save_soup(networks, [m for _, m in loaded], member_dirs, val_images, run_dir)
    else:
        chosen = select_weights(val_probs, val_targets) if weights == "learned" else [1 / len(loaded)] * len(loaded)
        data_config = ensemble_data_config([meta["data_config"] for _, meta in loaded])
        network = Ensemble(networks, [MemberInput(data_config, m["data_config"]) for _, m in loaded], chosen)
        names = [meta["backbone"] for _, meta in loaded]
        meta = {
            "backbone": f"ensemble({'+'.join(names)})",
            "classes": classes,
            "data_config": data_config,
            "strategy": "ensemble",
            "head": None,
            "weighting": weights,
            "versions": versions(),
            "created": datetime.now().isoformat(timespec="seconds"),
        }
        members = [m | {"source": str(d)} for d, (_, m) in zip(member_dirs, loaded, strict=True)]
        save_ensemble(run_dir.model, network, meta, members)
    model = load(run_dir.model)

    reports, sizes = {}, {}
    for split in ("val", "test"):
        found = val if split == "val" else _aligned(member_dirs, "test", classes)
        if found is None:
            continue
        images, _ = found
        sizes[split] = len(images)
        probs, _ = model.predict_proba([str(p) for p in images.paths], progress=True)
        reports[split] = classification_report(np.array(images.targets(classes)), probs, classes)
        run_dir.write_evaluation(split, reports[split], images, probs, classes)
    update_meta(run_dir.model, metrics=headline(reports["val"]))
    member_rows = []
    for directory, weight, probs in zip(member_dirs, chosen, val_probs, strict=True):
        summary = RunDir.around_model(directory).summary() or {}
        member_rows.append({
            "model_dir": str(directory), "model": summary.get("model"), "strategy": summary.get("strategy"),
            "weight": round(weight, 4), "val_accuracy": summary.get("val_accuracy"),
            "test_accuracy": summary.get("test_accuracy"), "test_macro_f1": summary.get("test_macro_f1"),
            "val_log_loss": round(negative_log_likelihood(probs, val_targets), 4),
        })  # fmt: skip
    first = RunDir.around_model(member_dirs[0]).config() or {}
    run_dir.write_config({
        "command": "ensemble", "strategy": "ensemble", "model": meta["backbone"], "weighting": weights,
        "members": [str(d) for d in member_dirs], "data": first.get("data"), "data_summary": first.get("data_summary"),
        "seed": first.get("seed"),
    })  # fmt: skip
    summary = {
        "strategy": "ensemble" if weights != "soup" else "soup",
        "model": meta["backbone"],
        "weighting": weights,
        "weights": [round(w, 4) for w in chosen],
        "members": member_rows,
        **{f"{split}_{k}": v for split, report in reports.items() for k, v in headline(report).items()},
        "classes": classes,
        "n_val": len(val_images),
        "n_test": sizes.get("test", 0),
        "wall_seconds": round(time.perf_counter() - started, 2),
        "model_dir": str(run_dir.model),
    }
    run_dir.write_summary(summary)
    return Run(out_dir=run_dir.path, model=model, summary=summary, config=run_dir.config() or {})


def _save_soup(
    networks: list[Classifier], metas: list[dict], member_dirs: list[Path], val_images: ImageSet, run_dir: RunDir
) -> tuple[dict, list[float]]:
    """Greedy soup (Wortsman et al., 2022): the members' weights averaged, adding them best first (by validation
    accuracy) and keeping each only when the averaged network's validation accuracy does not drop. The members
    must be one architecture fine-tuned from the same pretrained weights (tune's trials of one backbone, say)."""
    first = metas[0]
    for directory, meta, network in zip(member_dirs, metas, networks, strict=True):
        same = meta["backbone"] == first["backbone"] and meta["data_config"] == first["data_config"]
        if not same or network.probe is not None or meta.get("kind") != "classifier":
            raise GraftcvError(
                f"{directory} cannot join a soup with {member_dirs[0]}: a soup averages the weights of fine-tuned "
                "networks of one backbone and input (no probe heads)."
            )
    states = [{k: v.detach().clone() for k, v in n.backbone.state_dict().items()} for n in networks]
    averaged, kept = greedy_soup(networks[0], first, states, val_images, [str(d) for d in member_dirs])
    meta = {k: v for k, v in first.items() if k not in ("weights_sha256", "onnx", "metrics", "format_version", "kind")}
    meta |= {"soup": [str(member_dirs[j]) for j in kept], "weighting": "soup", "created": datetime.now().isoformat()}
    save_artifact(run_dir.model, networks[0].backbone, meta)
    return meta | {"backbone": first["backbone"]}, [1 / len(kept) if i in kept else 0.0 for i in range(len(states))]
