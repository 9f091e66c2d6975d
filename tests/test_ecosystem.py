"""graftcv inside other tools: the scikit-learn estimator, the model card, timm's own files, notebook HTML."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from conftest import COLOURS, TINY, write_image
from PIL import Image

import graftcv
from graftcv.errors import GraftcvError

SKLEARN_TINY = {k: TINY[k] for k in ("model", "size", "epochs", "batch_size")}


def images_and_labels(root: Path, per_class: int = 8, classes: int = 3) -> tuple[list[str], np.ndarray]:
    paths, labels = [], []
    for c in range(classes):
        for i in range(per_class):
            paths.append(str(write_image(root / f"{c}_{i:02d}.png", COLOURS[c], c * 100 + i, size=40)))
            labels.append(c)
    return paths, np.array(labels)


def estimator(**extra):
    from graftcv.sklearn import GraftClassifier

    settings = {"pretrained": False, "num_workers": 0, "head_epochs": 1}
    return GraftClassifier(strategy="linear-probe", **SKLEARN_TINY, settings=settings, **extra)


def test_the_estimator_follows_scikit_learn_conventions(tmp_path: Path) -> None:
    from sklearn.base import clone
    from sklearn.utils.estimator_checks import (
        check_get_params_invariance,
        check_no_attributes_set_in_init,
        check_parameters_default_constructible,
        check_set_params,
    )

    from graftcv.sklearn import GraftClassifier

    model = estimator(head="svm")
    for check in (check_get_params_invariance, check_set_params, check_no_attributes_set_in_init,
                  check_parameters_default_constructible):  # fmt: skip
        check("GraftClassifier", model)
    copy = clone(model)
    assert copy.get_params() == model.get_params() and copy is not model
    assert GraftClassifier().get_params()["strategy"] == "finetune"
    paths, y = images_and_labels(tmp_path)
    fitted = model.fit(paths, y)
    assert fitted is model and list(model.classes_) == [0, 1, 2]
    probs = model.predict_proba(paths[:5])
    assert probs.shape == (5, 3) and np.allclose(probs.sum(1), 1.0, atol=1e-5)
    assert model.predict(paths[:5]).dtype == y.dtype
    assert 0.0 <= model.score(paths, y) <= 1.0
    pil = [Image.open(p).convert("RGB") for p in paths[:4]]
    arrays = [np.asarray(image) for image in pil]
    assert np.allclose(model.predict_proba(pil), model.predict_proba(paths[:4]), atol=1e-5)
    assert np.allclose(model.predict_proba(arrays), model.predict_proba(paths[:4]), atol=1e-5)
    with pytest.raises(ValueError, match="image paths, PIL images or arrays"):
        model.predict_proba([3.5])
    with pytest.raises(ValueError, match="which is not a file"):
        estimator().fit([*paths[:-1], str(tmp_path / "missing.png")], y)


def test_grid_search_cross_validation_pipeline_and_calibration(tmp_path: Path) -> None:
    from sklearn.calibration import CalibratedClassifierCV
    from sklearn.model_selection import GridSearchCV, cross_val_score
    from sklearn.pipeline import Pipeline

    paths, y = images_and_labels(tmp_path, per_class=9)
    labels = np.array(["red", "green", "blue"])[y]  # string labels keep their own values
    search = GridSearchCV(estimator(), {"head": ["logreg", "svm"]}, cv=3).fit(paths, labels)
    assert search.best_params_["head"] in ("logreg", "svm") and len(search.cv_results_["mean_test_score"]) == 2
    assert set(search.predict(paths[:6])) <= {"red", "green", "blue"}
    scores = cross_val_score(Pipeline([("classify", estimator())]), paths, labels, cv=3)
    assert scores.shape == (3,) and np.all((scores >= 0) & (scores <= 1))
    calibrated = CalibratedClassifierCV(estimator(), cv=3).fit(paths, labels)
    assert calibrated.predict_proba(paths[:4]).shape == (4, 3)


def test_every_model_gets_a_hub_model_card(make_folder, tmp_path: Path) -> None:
    run = graftcv.fit(make_folder(), tmp_path / "run", **TINY)
    text = (tmp_path / "run" / "model" / "README.md").read_text()
    _, front, body = text.split("---\n", 2)
    card = yaml.safe_load(front)
    assert card["library_name"] == "graftcv" and "image-classification" in card["tags"]
    assert card["base_model"] == "timm/resnet10t.c3_in1k" or card["base_model"] == "resnet10t"
    metrics = {m["name"]: m["value"] for m in card["model-index"][0]["results"][0]["metrics"]}
    assert metrics["validation accuracy"] == pytest.approx(run.summary["val_accuracy"], abs=1e-4)
    for section in ("## Data", "## Training", "## Evaluation", "## Intended use and limits", "## How to load"):
        assert section in body
    assert "class_0" in body and f"{run.summary['n_train']} train" in body


def test_timm_loads_the_exported_network_with_the_same_logits(make_folder, tmp_path: Path) -> None:
    import timm

    from graftcv.timm_export import export_timm

    graftcv.fit(make_folder(), tmp_path / "run", **(TINY | {"strategy": "head"}))
    target = export_timm(tmp_path / "run" / "model")
    config = json.loads((target / "config.json").read_text())
    assert config["architecture"] == "resnet10t" and config["label_names"] == ["class_0", "class_1", "class_2"]
    network = timm.create_model(
        config["architecture"],
        pretrained=True,
        num_classes=config["num_classes"],
        pretrained_cfg_overlay={"file": str(target / "model.safetensors"), **config["pretrained_cfg"]},
    ).eval()
    ours = graftcv.load(tmp_path / "run" / "model")
    batch = torch.randn(4, 3, 32, 32)
    with torch.no_grad():
        expected = ours.network.backbone.float().cpu()(batch.contiguous())
        assert torch.allclose(network(batch), expected, atol=1e-5)
    assert list(network.pretrained_cfg["mean"]) == list(ours.data_config["mean"])


def test_timm_export_refuses_what_is_not_one_timm_network(make_folder, tmp_path: Path) -> None:
    from graftcv.timm_export import export_timm

    graftcv.fit(make_folder(), tmp_path / "probe", **(TINY | {"strategy": "linear-probe"}))
    with pytest.raises(GraftcvError, match="scikit-learn head"):
        export_timm(tmp_path / "probe" / "model")


def test_notebooks_show_runs_models_and_comparisons(make_folder, tmp_path: Path) -> None:
    from graftcv.compare import compare

    run = graftcv.fit(make_folder(), tmp_path / "run", **(TINY | {"strategy": "linear-probe"}))
    page = run._repr_html_()
    assert "linear-probe" in page and "val accuracy" in page and "validation confusion" in page
    assert "class_2" in graftcv.load(tmp_path / "run" / "model")._repr_html_()
    settings = {k: v for k, v in TINY.items() if k != "progress"}
    comparison = compare(
        make_folder("cmp", per_class=12), strategies="linear-probe", folds=2, out=tmp_path / "cmp-out", **settings
    )
    assert "linear-probe" in comparison._repr_html_() and "accuracy (95% CI)" in comparison._repr_html_()


# --- experiment tracking ----------------------------------------------------------------------------------


def tracked_run(data: Path, out: Path, store: Path, **extra):
    return graftcv.fit(data, out, **(TINY | {"strategy": "head", "epochs": 3, "logger": "csv,tensorboard,mlflow",
                                            "tracking_uri": str(store), "experiment": "tests"} | extra))  # fmt: skip


def read_tensorboard(folder: Path) -> dict[str, list[float]]:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(folder)).Reload()
    return {tag: [e.value for e in events.Scalars(tag)] for tag in events.Tags()["scalars"]}


def test_a_run_logs_to_csv_tensorboard_and_a_local_mlflow_store(make_folder, tmp_path: Path) -> None:
    pytest.importorskip("mlflow")
    pytest.importorskip("tensorboard")
    from mlflow.tracking import MlflowClient

    run = tracked_run(make_folder(), tmp_path / "run", tmp_path / "mlruns")
    found = run.summary["tracking"]
    client = MlflowClient(tracking_uri=found["mlflow_tracking_uri"])
    logged = client.get_run(found["mlflow_run_id"])
    assert logged.data.params["strategy"] == "head" and logged.data.params["model"] == "resnet10t"
    assert logged.data.metrics["val_accuracy"] == pytest.approx(run.summary["val_accuracy"])
    history = client.get_metric_history(found["mlflow_run_id"], "val_loss")
    assert len(history) == len(run.history) and [h.step for h in history] == list(range(len(history)))
    artifacts = {a.path for a in client.list_artifacts(found["mlflow_run_id"])}
    assert {"model", "summary.json", "config.json", "metrics.csv"} <= artifacts
    assert {a.path for a in client.list_artifacts(found["mlflow_run_id"], "model")} >= {
        "model/model.safetensors", "model/graftcv.json", "model/README.md"}  # fmt: skip
    assert logged.info.status == "FINISHED" and (tmp_path / "mlruns" / "mlflow.db").is_file()
    scalars = read_tensorboard(tmp_path / "run" / "logs" / "tensorboard")
    assert len(scalars["val_loss"]) == len(run.history)
    assert scalars["val_accuracy"][-1] == pytest.approx(run.summary["val_accuracy"], abs=1e-6)
    csv_rows = (tmp_path / "run" / "logs" / "csv" / "metrics.csv").read_text().splitlines()
    assert csv_rows[0].count("val_loss") == 1 and len(csv_rows) > len(run.history)


def test_a_comparison_nests_its_runs_under_one_mlflow_run(make_folder, tmp_path: Path) -> None:
    pytest.importorskip("mlflow")
    from mlflow.tracking import MlflowClient

    from graftcv.compare import compare
    from graftcv.tracking import store

    settings = {k: v for k, v in TINY.items() if k != "progress"}
    compare(make_folder(per_class=12), strategies="linear-probe,head", folds=2, out=tmp_path / "cmp",
            logger="mlflow", tracking_uri=str(tmp_path / "mlruns"), experiment="cmp", **settings)  # fmt: skip
    client = MlflowClient(tracking_uri=store(str(tmp_path / "mlruns"))[0])
    experiment = client.get_experiment_by_name("cmp")
    runs = client.search_runs([experiment.experiment_id])
    parents = [r for r in runs if "mlflow.parentRunId" not in r.data.tags]
    children = [r for r in runs if "mlflow.parentRunId" in r.data.tags]
    assert len(parents) == 1 and len(children) == 4  # 2 strategies x 2 folds
    assert {r.data.tags["mlflow.parentRunId"] for r in children} == {parents[0].info.run_id}
    assert {r.data.params["strategy"] for r in children} == {"linear-probe", "head"}


def test_an_unknown_logger_is_one_sentence(make_folder, tmp_path: Path) -> None:
    with pytest.raises(GraftcvError, match="Unknown --logger 'wandb'"):
        graftcv.fit(make_folder(), tmp_path / "run", **(TINY | {"logger": "csv,wandb"}))
    pytest.importorskip("mlflow")
    with pytest.raises(GraftcvError, match="cannot create that folder"):
        graftcv.fit(make_folder(), tmp_path / "run", **(TINY | {"logger": "mlflow", "tracking_uri": "/proc/no/store"}))
    assert not any((tmp_path / "run").iterdir())  # refused before anything was written
