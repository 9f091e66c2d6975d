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
