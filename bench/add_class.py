"""add-class on sign_digits (issue 19): train prototype and linear-probe models on nine digits, add the tenth from
five images, and score the tenth and the other nine before and after.

    .venv/bin/python bench/add_class.py [--shots 5] [--new 9] [--seed 0]

The same stratified 80/20 split of all 2,062 images for every row; the new class's five images come from its
training part, its test images were never seen."""

from __future__ import annotations

import argparse
import csv
import tempfile
import time
from pathlib import Path

import numpy as np
from sklearn.model_selection import train_test_split

import graftcv

DATA = Path("../shared/datasets/sign_digits")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--shots", type=int, default=5)
    parser.add_argument("--new", default="9")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    paths = sorted(p for p in DATA.glob("*/*") if p.is_file())
    labels = [p.parent.name for p in paths]
    train, test = train_test_split(np.arange(len(paths)), test_size=0.2, stratify=labels, random_state=args.seed)
    work = Path(tempfile.mkdtemp(prefix="graftcv-add-class-"))
    old = [i for i in train if labels[i] != args.new]
    with (work / "train.csv").open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["path", "label"])
        writer.writerows([str(paths[i].resolve()), labels[i]] for i in old)
    rng = np.random.default_rng(args.seed)
    support = rng.choice([i for i in train if labels[i] == args.new], args.shots, replace=False)
    folder = work / args.new
    folder.mkdir()
    for i in support:
        (folder / paths[i].name).symlink_to(paths[i].resolve())
    test_old = [str(paths[i]) for i in test if labels[i] != args.new]
    test_new = [str(paths[i]) for i in test if labels[i] == args.new]
    truth_old = np.array([labels[i] for i in test if labels[i] != args.new])
    print(
        f"train {len(old)} images of 9 digits; add {args.new!r} from {args.shots}; test {len(test_old)} + "
        f"{len(test_new)}"
    )
    print("| model | acc. other nine, before | after | acc. new class | new predicted on others | seconds |")
    print("|---|---:|---:|---:|---:|---:|")
    for strategy in ("prototype", "linear-probe"):
        run = graftcv.fit(work / "train.csv", out=work / strategy, strategy=strategy, progress=False)
        model = run.model
        before = np.mean(np.array(model.classes)[model.predict_proba(test_old)[0].argmax(1)] == truth_old)
        started = time.perf_counter()
        graftcv.add_class(run.out_dir / "model", folder, out=work / f"{strategy}-10")
        seconds = time.perf_counter() - started
        grown = graftcv.load(work / f"{strategy}-10")
        names = np.array(grown.classes)
        after_old = names[grown.predict_proba(test_old)[0].argmax(1)]
        after_new = names[grown.predict_proba(test_new)[0].argmax(1)]
        print(
            f"| {strategy} | {before:.4f} | {np.mean(after_old == truth_old):.4f} | "
            f"{np.mean(after_new == args.new):.4f} | {np.mean(after_old == args.new):.4f} | {seconds:.1f} |"
        )


if __name__ == "__main__":
    main()
