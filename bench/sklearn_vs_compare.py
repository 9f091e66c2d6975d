"""Issue 22: GridSearchCV over GraftClassifier's linear-probe heads against `graftcv compare` on the same folds.

.venv/bin/python bench/sklearn_vs_compare.py [../shared/datasets/ants_bees]   (prints a table; one process)
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np
from sklearn.model_selection import GridSearchCV, StratifiedKFold

from graftcv.compare import compare
from graftcv.compare.protocol import pooled_images
from graftcv.sklearn import GraftClassifier

SIZE = 160


def main() -> None:
    data = Path(sys.argv[1] if len(sys.argv) > 1 else "../shared/datasets/ants_bees")
    images = pooled_images(data)  # compare's own pooling: train/ and val/ together
    paths, labels = [str(p) for p in images.paths], np.array(images.labels)
    folds = StratifiedKFold(n_splits=3, shuffle=True, random_state=0)  # what compare --folds 3 --seed 0 draws
    started = time.perf_counter()
    search = GridSearchCV(GraftClassifier(strategy="linear-probe", size=SIZE), {"head": ["logreg", "svm"]}, cv=folds)
    search.fit(paths, labels)
    grid_seconds = time.perf_counter() - started
    print("| what | head | mean accuracy over 3 folds (per fold) | seconds |")
    print("|---|---|---:|---:|")
    for head, mean, scores in zip(
        search.cv_results_["param_head"],
        search.cv_results_["mean_test_score"],
        zip(*(search.cv_results_[f"split{i}_test_score"] for i in range(3)), strict=True),
        strict=True,
    ):
        shown = ", ".join(f"{s:.3f}" for s in scores)
        print(f"| GridSearchCV | {head} | {mean:.4f} ({shown}) | {grid_seconds:.0f} (all) |")
    for head in ("logreg", "svm"):
        started = time.perf_counter()
        result = compare(data, strategies="linear-probe", folds=3, seed=0, head=head, size=SIZE,
                         out=f"bench/out/sklearn-compare-{head}", resume=False)  # fmt: skip
        (entry,) = result.table
        scores = [row["test_accuracy"] for row in sorted(result.rows, key=lambda r: r["split"])]
        print(f"| compare | {head} | {entry['test_accuracy_mean']:.4f} ({', '.join(f'{s:.3f}' for s in scores)}) | "
              f"{time.perf_counter() - started:.0f} |")  # fmt: skip
    print(f"GridSearchCV best: {search.best_params_} {search.best_score_:.4f}")


if __name__ == "__main__":
    main()
