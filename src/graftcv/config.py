"""Every training setting in one dataclass: the API's keyword arguments, the CLI's options, config.json."""

from __future__ import annotations

import os
import re
from dataclasses import asdict, dataclass, field, fields
from datetime import timedelta
from pathlib import Path

from graftcv.errors import GraftcvError
from graftcv.meta import MAX_SIDE

PANELS = ("Strategy", "Backbone", "Data", "Optimisation", "Execution")
LOGGERS = ("csv", "tensorboard", "mlflow")


def parse_loggers(text: str | None) -> list[str]:
    """'csv, mlflow' → ['csv', 'mlflow']; None or 'none' → []; an unknown name is one sentence."""
    names = [n.strip().lower() for n in (text or "").split(",") if n.strip() and n.strip().lower() != "none"]
    unknown = [n for n in names if n not in LOGGERS]
    if unknown:
        raise GraftcvError(f"Unknown --logger {unknown[0]!r}: choose among {', '.join(LOGGERS)} (comma-separated).")
    return list(dict.fromkeys(names))


def setting(default, help: str, panel: str, *, flag: str | None = None, choices: tuple = (), cli: bool = True):
    """A TrainConfig field with what the CLI needs to offer it: help text, panel, flag and fixed choices (the
    settings whose values name a registered item, such as strategy and head, are checked by `graftcv.choices`)."""
    return field(default=default, metadata={"help": help, "panel": panel, "flag": flag, "choices": choices, "cli": cli})


@dataclass
class TrainConfig:
    """Settings of one training run. None means 'the strategy's or the backbone's default'.

    Each field's metadata is the CLI's option for it (`graftcv train --help`): every default is written here
    once. A strategy's own defaults (see `graftcv.strategies`) replace these where the caller set nothing."""

    strategy: str = setting("finetune", "What trains, and how (see the strategy table)", "Strategy")
    model: str = setting("tf_efficientnet_lite0", "Any timm model name", "Backbone")
    weights: str | None = setting(None, ".pth/.pt/.safetensors weights", "Backbone")
    pretrained: bool = setting(True, "--no-pretrained: random init", "Backbone")
    # data
    val: str | None = setting(None, "Validation folder or CSV", "Data")
    test: str | None = setting(None, "Test folder or CSV", "Data")
    val_fraction: float = setting(0.2, "Validation share when no validation set is given", "Data")
    size: int | None = setting(None, "Input size in pixels", "Data")
    # FixRes (Touvron et al. 2019): random crops make objects look larger in training than at test, so training
    # below the evaluation size can match apparent sizes and costs fewer pixels (176 of 224: 1.8x the images/s).
    # Not the default: every epoch at 176 px lost 0.5-2.4 test points on flowers5 and art_painting; progressive
    # resizing, whose last epoch is at full size, buys the same time back (bench/RESULTS.md, issue 15).
    train_size: int | None = setting(None, "Training input size (default: --size; evaluation stays at --size)", "Data")
    progressive_resize: bool = setting(
        True, "Image epochs grow from 4/7 of the training size to it (--no-progressive-resize: all at it)", "Data"
    )
    augment: str = setting("light", "Training augmentation", "Data", choices=("none", "light", "strong"))
    mixup: float = setting(0.0, "Mixup alpha", "Data")
    cutmix: float = setting(0.0, "CutMix alpha", "Data")
    balance: str = setting("none", "Class imbalance", "Data", choices=("none", "weights", "sampler"))
    multi_label: bool = setting(
        False, "The CSV is path plus one 0/1 column per label (path,labels with ';' needs no flag)", "Data"
    )
    multilabel_loss: str = setting(
        "bce", "Loss of multi-label outputs: bce, or asl (asymmetric, for rare positives)", "Optimisation",
        choices=("bce", "asl"),
    )  # fmt: skip
    task_weights: str = setting(
        "equal", "Multi-task loss weights: equal | uncertainty (learned) | W1,W2,... in column order", "Optimisation"
    )
    batch_size: int = setting(32, "Images per optimizer step", "Data")
    # images per forward/backward pass; gradients accumulate up to batch_size. None: 16 on a CPU with frozen
    # BatchNorm, where the summed gradients are the same as one batch's and 224 px training needs ~1 GB less
    micro_batch: int | None = setting(None, "Images per pass; gradients accumulate to the batch", "Data")
    num_workers: int | None = setting(None, "Decoding workers", "Data", flag="--workers")
    # strategy
    head: str = setting("logreg", "linear-probe: the scikit-learn head", "Strategy")
    pca: int | None = setting(None, "linear-probe: PCA components", "Strategy")
    freeze_stem: bool = setting(
        True, "Pretrained stem and stride-4 stages stay frozen (--no-freeze-stem: train them)", "Strategy"
    )
    unfreeze: int = setting(2, "partial: backbone groups that train", "Strategy")
    unfreeze_every: int = setting(1, "progressive: epochs per group", "Strategy")
    epochs: int | None = setting(None, "Epochs of the main phase (default: the strategy's)", "Strategy")
    snapshots: int = setting(
        0, "Snapshot ensemble: the main phase run as K learning-rate cycles, a member from each cycle's end, and a "
        "greedy soup of its best epochs (0: off)", "Strategy",
    )  # fmt: skip
    head_epochs: int = setting(20, "finetune: head epochs on features", "Strategy")
    lr: float | str | None = setting(None, "Learning rate, or 'auto' (default: the strategy's)", "Optimisation")
    head_lr: float = setting(3e-3, "Learning rate of head phases", "Optimisation")
    lr_decay: float = setting(0.7, "LR factor per group below the head", "Optimisation")
    bn: str = setting("freeze", "BatchNorm statistics", "Optimisation", choices=("train", "freeze"))
    # optimisation and regularisation
    optimizer: str = setting("adamw", "Optimizer", "Optimisation")
    schedule: str = setting("onecycle", "Learning-rate schedule", "Optimisation")
    weight_decay: float = setting(0.01, "Weight decay (not on norms and biases)", "Optimisation")
    momentum: float = setting(0.9, "sgd / rmsprop momentum", "Optimisation")
    label_smoothing: float = setting(0.1, "Label smoothing", "Optimisation")
    reg: str = setting(
        "none", "Fine-tuning regularizers: l2sp | bss | l2sp,bss (NAME:WEIGHT sets a weight)", "Optimisation"
    )
    dropout: float = setting(0.2, "Head dropout", "Optimisation")
    drop_path: float = setting(0.1, "Stochastic depth", "Optimisation")
    patience: int = setting(
        3, "Early stopping: epochs without a better val loss, once the rate is under half its peak", "Optimisation"
    )
    max_time: str | None = setting(None, "e.g. 10m: stop training there and keep the best", "Optimisation")
    # execution
    budget: str | None = setting(
        None, "Whole-run budget, e.g. 10m: epochs chosen from a measured probe so the run ends within it", "Execution"
    )
    seed: int = setting(0, "Random seed of splits, initialisation and order", "Execution")
    devices: str | int = setting(
        "auto",
        "Lightning devices per machine: auto (one: the GPU when there is one) or a count (one process each)",
        "Execution",
    )
    num_nodes: int = setting(1, "Machines of a multi-node run (torchrun/SLURM set it themselves)", "Execution")
    strategy_ddp: str = setting(
        "ddp",
        "How processes start: ddp (the command re-run per rank) | ddp_spawn (spawned from Python) | fsdp",
        "Execution",
        choices=("ddp", "ddp_spawn", "fsdp"),
    )
    accelerator: str = setting("auto", "Lightning accelerator: auto, cpu, gpu, ...", "Execution")
    precision: str = setting("32-true", "32-true | 16-mixed | bf16-mixed", "Execution")
    cache: bool = setting(True, "Reuse cached features", "Execution")
    logger: str | None = setting(
        None, "Experiment tracking through Lightning's loggers: csv, tensorboard, mlflow (comma-separated)", "Execution"
    )
    tracking_uri: str | None = setting(
        None, "--logger mlflow: tracking URI (a folder, sqlite:///FILE or a server; default: MLflow's own)", "Execution"
    )
    experiment: str = setting("graftcv", "--logger mlflow/tensorboard: the experiment's name", "Execution")
    parent_run: str | None = setting(None, "--logger mlflow: nest this run under that MLflow run id", "Execution")
    progress: bool = setting(True, "Progress bars and per-epoch lines", "Execution", cli=False)
    target: str | None = setting(None, "Unlabelled images of the target domain (graftcv adapt)", "Data", cli=False)
    adaptation: str = setting(
        "source-only", "Domain adaptation: source-only or a registered alignment (dann, mmd, coral)", "Strategy",
        cli=False,
    )  # fmt: skip
    adaptation_weight: float = setting(1.0, "Weight of the domain-alignment loss", "Strategy", cli=False)

    def validate(self) -> TrainConfig:
        for item in fields(self):
            allowed = item.metadata.get("choices")
            if allowed and getattr(self, item.name) not in allowed:
                flag = item.metadata.get("flag") or f"--{item.name.replace('_', '-')}"
                raise GraftcvError(f"{flag} must be one of {', '.join(allowed)}, not {getattr(self, item.name)!r}.")
        if isinstance(self.devices, str) and self.devices.isdigit():
            self.devices = int(self.devices)
        if self.devices != "auto" and not (isinstance(self.devices, int) and self.devices >= 1):
            raise GraftcvError(f"--devices must be auto or a count of at least 1, not {self.devices!r}.")
        if self.num_nodes < 1:
            raise GraftcvError("--num-nodes must be at least 1.")
        if self.strategy_ddp == "fsdp":
            raise GraftcvError(
                "--strategy-ddp fsdp shards a model too large for one device across devices; every graftcv backbone "
                "fits on one, so use ddp (the default), which is faster for models of this size."
            )
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
        if self.snapshots == 1 or self.snapshots < 0:
            raise GraftcvError("--snapshots needs at least 2 cycles (0: off).")
        if self.epochs is not None and self.epochs < 1:
            raise GraftcvError("--epochs must be at least 1.")
        for name in ("size", "train_size"):
            value = getattr(self, name)
            if value is not None and not 16 <= value <= MAX_SIDE:
                raise GraftcvError(f"--{name.replace('_', '-')} must be between 16 and {MAX_SIDE} pixels, not {value}.")
        if not 0.0 <= self.label_smoothing < 1.0 or not 0.0 <= self.dropout < 1.0:
            raise GraftcvError("--label-smoothing and --dropout must be in [0, 1).")
        parse_duration(self.max_time, "--max-time")
        parse_duration(self.budget, "--budget")
        parse_loggers(self.logger)
        return self

    def training_size(self, eval_size: int) -> int:
        """Input size of training images: train_size, else the evaluation size."""
        return self.train_size or eval_size

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def field_names(cls) -> set[str]:
        return {f.name for f in fields(cls)}


def cache_root() -> Path:
    """Where graftcv keeps what it can compute again (features, unpacked shards): $GRAFTCV_CACHE or ~/.cache/graftcv."""
    return Path(os.environ.get("GRAFTCV_CACHE", Path.home() / ".cache" / "graftcv"))


def parse_duration(text: str | None, flag: str = "--max-time") -> timedelta | None:
    """'90s', '10m', '1.5h', '1h30m' → timedelta; None stays None."""
    if text is None or text == "":
        return None
    parts = re.fullmatch(r"\s*(?:(\d+(?:\.\d+)?)h)?\s*(?:(\d+(?:\.\d+)?)m)?\s*(?:(\d+(?:\.\d+)?)s?)?\s*", str(text))
    if not parts or not any(parts.groups()):
        raise GraftcvError(f"{flag} must look like 90s, 10m or 1h30m, not {text!r}.")
    hours, minutes, seconds = (float(g) if g else 0.0 for g in parts.groups())
    return timedelta(hours=hours, minutes=minutes, seconds=seconds)
