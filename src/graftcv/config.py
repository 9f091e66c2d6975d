"""Every training setting in one dataclass: the API's keyword arguments, the CLI's options, config.json."""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, fields
from datetime import timedelta

from graftcv.errors import GraftcvError

CHOICES = {
    "augment": ("none", "light", "strong"),
    "balance": ("none", "weights", "sampler"),
    "bn": ("train", "freeze"),
    "optimizer": ("adamw", "sgd", "rmsprop"),
    "schedule": ("onecycle", "cosine", "step", "cyclical", "constant"),
    "head": ("logreg", "svm", "rf", "gb", "mlp"),
}


@dataclass
class TrainConfig:
    """Settings of one training run. None means 'the strategy's or the backbone's default'."""

    strategy: str = "finetune"
    model: str = "tf_efficientnet_lite0"
    weights: str | None = None
    pretrained: bool = True
    # data
    val: str | None = None
    test: str | None = None
    val_fraction: float = 0.2
    size: int | None = None
    augment: str = "light"
    mixup: float = 0.0
    cutmix: float = 0.0
    balance: str = "none"
    batch_size: int = 32
    # images per forward/backward pass; gradients accumulate up to batch_size. None: 16 on a CPU with frozen
    # BatchNorm, where the summed gradients are the same as one batch's and 224 px training needs ~1 GB less
    micro_batch: int | None = None
    num_workers: int | None = None
    # strategy
    head: str = "logreg"
    pca: int | None = None
    unfreeze: int = 2
    unfreeze_every: int = 1
    epochs: int | None = None
    head_epochs: int = 20
    lr: float | str | None = None
    head_lr: float = 3e-3
    lr_decay: float = 0.7
    bn: str = "freeze"
    # optimisation and regularisation
    optimizer: str = "adamw"
    schedule: str = "onecycle"
    weight_decay: float = 0.01
    momentum: float = 0.9
    label_smoothing: float = 0.1
    dropout: float = 0.2
    drop_path: float = 0.1
    patience: int = 3
    max_time: str | None = None
    # execution
    seed: int = 0
    devices: str = "auto"
    accelerator: str = "auto"
    precision: str = "32-true"
    cache: bool = True
    progress: bool = True

    def validate(self) -> TrainConfig:
        for name, allowed in CHOICES.items():
            if getattr(self, name) not in allowed:
                raise GraftcvError(f"--{name} must be one of {', '.join(allowed)}, not {getattr(self, name)!r}.")
        if isinstance(self.lr, str) and self.lr != "auto":
            try:
                self.lr = float(self.lr)
            except ValueError:
                raise GraftcvError(f"--lr must be a number or 'auto', not {self.lr!r}.") from None
        for name in ("batch_size", "head_epochs", "unfreeze_every"):
            if getattr(self, name) < 1:
                raise GraftcvError(f"--{name.replace('_', '-')} must be at least 1.")
        if self.micro_batch is not None and self.micro_batch < 1:
            raise GraftcvError("--micro-batch must be at least 1.")
        if self.epochs is not None and self.epochs < 1:
            raise GraftcvError("--epochs must be at least 1.")
        if self.size is not None and self.size < 16:
            raise GraftcvError("--size must be at least 16 pixels.")
        if not 0.0 <= self.label_smoothing < 1.0 or not 0.0 <= self.dropout < 1.0:
            raise GraftcvError("--label-smoothing and --dropout must be in [0, 1).")
        parse_duration(self.max_time)
        return self

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def field_names(cls) -> set[str]:
        return {f.name for f in fields(cls)}


def parse_duration(text: str | None) -> timedelta | None:
    """'90s', '10m', '1.5h', '1h30m' → timedelta; None stays None."""
    if text is None or text == "":
        return None
    parts = re.fullmatch(r"\s*(?:(\d+(?:\.\d+)?)h)?\s*(?:(\d+(?:\.\d+)?)m)?\s*(?:(\d+(?:\.\d+)?)s?)?\s*", str(text))
    if not parts or not any(parts.groups()):
        raise GraftcvError(f"--max-time must look like 90s, 10m or 1h30m, not {text!r}.")
    hours, minutes, seconds = (float(g) if g else 0.0 for g in parts.groups())
    return timedelta(hours=hours, minutes=minutes, seconds=seconds)
