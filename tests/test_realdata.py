"""One real training run on ../shared/datasets (skipped when the data sets are not there)."""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import SHARED, realdata

import graftcv


@pytest.mark.realdata
@pytest.mark.realweights
@realdata
def test_linear_probe_on_ants_and_bees(tmp_path):
    data = SHARED / "ants_bees"
    if not data.is_dir():
        pytest.skip(f"{data} not found")
    run = graftcv.fit(data, strategy="linear-probe", size=160, out=tmp_path / "run", progress=False)
    summary = run.summary
    assert summary["weights_source"] == "package"
    assert summary["val_accuracy"] >= 0.88, summary["val_accuracy"]
    assert summary["skipped_files"] == 1
    assert [Path(p).name for p in summary["skipped"]] == ["imageNotFound.gif"]
    assert summary["n_val"] > 100 and summary["n_train"] > 200  # the train/ and val/ folders were used as given
    assert (tmp_path / "run" / "model" / "model.safetensors").is_file()


@pytest.mark.realdata
@pytest.mark.realweights
@realdata
def test_multilabel_linear_probe_on_mosaics_of_pacs_photos(tmp_path):
    """2x2 mosaics of real photos, labelled with the classes they show; held-out mosaics use unseen photos."""
    import csv

    import numpy as np
    from PIL import Image

    photos = sorted(p for p in (SHARED / "pacs" / "photo").glob("*/*") if p.is_file())
    if not photos:
        pytest.skip("pacs/photo not found")
    rng = np.random.default_rng(0)
    order = rng.permutation(len(photos))
    pools = {"train": order[: len(order) * 2 // 3], "test": order[len(order) * 2 // 3 :]}
    files = {}
    for name, count in (("train", 120), ("test", 40)):
        rows = []
        for i in range(count):
            picked = [photos[j] for j in rng.choice(pools[name], 4, replace=False)]
            canvas = Image.new("RGB", (112, 112))
            for k, path in enumerate(picked):
                canvas.paste(Image.open(path).convert("RGB").resize((56, 56)), ((k % 2) * 56, (k // 2) * 56))
            canvas.save(tmp_path / f"{name}_{i:03d}.jpg", quality=92)
            rows.append([f"{name}_{i:03d}.jpg", ";".join(sorted({p.parent.name for p in picked}))])
        files[name] = tmp_path / f"{name}.csv"
        with files[name].open("w", newline="") as handle:
            csv.writer(handle).writerows([["path", "labels"], *rows])
    run = graftcv.fit(files["train"], test=files["test"], strategy="linear-probe", size=112, out=tmp_path / "run",
                      progress=False)  # fmt: skip
    summary = run.summary
    assert summary["weights_source"] == "package"
    assert summary["test_map_macro"] >= 0.75, summary["test_map_macro"]  # chance is each label's base rate (~0.4)
    assert summary["test_f1_micro"] >= 0.6, summary["test_f1_micro"]
    (found,) = graftcv.load(tmp_path / "run" / "model").predict([str(tmp_path / "test_000.jpg")])
    assert len(found["probabilities"]) == 7 and all(0.0 <= x["probability"] <= 1.0 for x in found["labels"])


@pytest.mark.realdata
@pytest.mark.realweights
@realdata
def test_a_real_run_on_ants_and_bees_in_mlflow_and_tensorboard(tmp_path):
    mlflow = pytest.importorskip("mlflow")
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    data = SHARED / "ants_bees"
    if not data.is_dir():
        pytest.skip(f"{data} not found")
    run = graftcv.fit(data, tmp_path / "run", strategy="head", size=128, epochs=4, progress=False,
                      logger="mlflow,tensorboard", tracking_uri=str(tmp_path / "mlruns"))  # fmt: skip
    client = mlflow.tracking.MlflowClient(tracking_uri=run.summary["tracking"]["mlflow_tracking_uri"])
    logged = client.get_run(run.summary["tracking"]["mlflow_run_id"])
    assert logged.data.params["model"] == "tf_efficientnet_lite0" and logged.data.params["size"] == "128"
    assert logged.data.metrics["val_accuracy"] == pytest.approx(run.summary["val_accuracy"])
    assert run.summary["val_accuracy"] >= 0.85, run.summary["val_accuracy"]
    assert "model" in {a.path for a in client.list_artifacts(logged.info.run_id)}
    events = EventAccumulator(str(tmp_path / "run" / "logs" / "tensorboard")).Reload()
    assert len(events.Scalars("val_loss")) == len(run.history) >= 4
