"""The search space of `graftcv tune`: each hyper-parameter, its range, when it applies, and what `train` uses."""

from __future__ import annotations

import json
from dataclasses import dataclass, field, replace
from pathlib import Path

from graftcv.config import TrainConfig
from graftcv.errors import GraftcvError
from graftcv.heads.multi import LINEAR_HEADS

GRADIENT = ("head", "finetune")
KINDS = ("categorical", "float", "int")
MULTI_HEADS = LINEAR_HEADS  # the linear-probe heads fitted per label


@dataclass(frozen=True)
class Param:
    """One hyper-parameter (a `TrainConfig` field): categorical `choices`, or a float/int range [low, high].

    `when` names the strategies it applies to (empty: all); `default` is what a plain `graftcv train` uses, the
    value of the study's first, enqueued trial."""

    name: str
    kind: str
    choices: tuple = ()
    low: float | None = None
    high: float | None = None
    log: bool = False
    when: tuple[str, ...] = ()
    default: object = None

    def applies(self, strategy: str) -> bool:
        return not self.when or strategy in self.when

    def suggest(self, trial):
        if self.kind == "categorical":
            return trial.suggest_categorical(self.name, list(self.choices))
        if self.kind == "int":
            return trial.suggest_int(self.name, int(self.low), int(self.high), log=self.log)
        return trial.suggest_float(self.name, float(self.low), float(self.high), log=self.log)


@dataclass(frozen=True)
class Space:
    params: tuple[Param, ...] = field(default_factory=tuple)

    def for_several_labels(self) -> Space:
        """The space for multi-label or multi-task data: no mixup or cutmix, the probe heads that fit per label."""
        kept = []
        for param in self.params:
            if param.name in ("mixup", "cutmix", "balance"):
                continue
            if param.name == "head":
                param = replace(param, choices=tuple(c for c in param.choices if c in MULTI_HEADS) or MULTI_HEADS)
            kept.append(param)
        return Space(tuple(kept))

    def without(self, names: set[str]) -> Space:
        return Space(tuple(p for p in self.params if p.name not in names))

    def settings(self, trial, fixed_strategy: str | None = None) -> dict:
        """One trial's settings: the strategy first, then what applies to it (Optuna's define-by-run)."""
        chosen = {}
        strategy_param = next((p for p in self.params if p.name == "strategy"), None)
        strategy = strategy_param.suggest(trial) if strategy_param else fixed_strategy or TrainConfig.strategy
        if strategy_param:
            chosen["strategy"] = strategy
        for param in self.params:
            if param.name != "strategy" and param.applies(strategy):
                chosen[param.name] = param.suggest(trial)
        return chosen

    def defaults(self) -> dict:
        """The parameters of plain `graftcv train` (what the study tries first)."""
        strategy = next((p.default for p in self.params if p.name == "strategy"), TrainConfig.strategy)
        values = {"strategy": strategy}
        for param in self.params:
            if param.name != "strategy" and param.applies(strategy) and param.default is not None:
                values[param.name] = param.default
        return values

    def as_dict(self) -> dict:
        return {
            p.name: {k: v for k, v in p.__dict__.items() if k != "name" and v not in ((), None)} for p in self.params
        }


def default_space() -> Space:
    """Strategy, learning rate and its decay per layer group, epochs, input size, augmentation, label smoothing,
    mixup, and the scikit-learn head of a linear probe: ranges that hold for small image sets in general."""
    return Space((
        Param("strategy", "categorical", ("finetune", "head", "linear-probe"), default="finetune"),
        Param("head", "categorical", ("logreg", "svm", "mlp"), when=("linear-probe",), default="logreg"),
        Param("size", "categorical", (128, 160, 192, 224), default=224),
        Param("lr", "float", low=1e-4, high=1e-2, log=True, when=GRADIENT, default=3e-4),
        Param("lr_decay", "float", low=0.3, high=1.0, when=("finetune",), default=0.7),
        Param("epochs", "int", low=2, high=10, when=GRADIENT, default=5),
        Param("augment", "categorical", ("none", "light", "strong"), when=GRADIENT, default="light"),
        Param("label_smoothing", "float", low=0.0, high=0.2, when=GRADIENT, default=0.1),
        Param("mixup", "categorical", (0.0, 0.2, 0.4), when=("finetune",), default=0.0),
    ))  # fmt: skip


def read_space(source: str | Path | None) -> Space:
    """`default`, or a JSON file of {name: {kind, choices | low, high, log, when, default}}."""
    if source in (None, "default"):
        return default_space()
    path = Path(source)
    try:
        raw = json.loads(path.read_text())
    except FileNotFoundError:
        raise GraftcvError(f"--space {path} does not exist: give a JSON file, or 'default'.") from None
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise GraftcvError(f"--space {path} is not valid JSON.") from None
    if not isinstance(raw, dict) or not raw:
        raise GraftcvError(f"--space {path} should be a JSON object of hyper-parameters.")
    params = []
    for name, entry in raw.items():
        if name not in TrainConfig.field_names():
            raise GraftcvError(f"--space {path}: {name!r} is not a training setting.")
        if not isinstance(entry, dict) or entry.get("kind") not in KINDS:
            raise GraftcvError(f"--space {path}: {name} needs a kind ({', '.join(KINDS)}).")
        kind = entry["kind"]
        if kind == "categorical" and not entry.get("choices"):
            raise GraftcvError(f"--space {path}: {name} is categorical and needs choices.")
        if kind != "categorical" and not (isinstance(entry.get("low"), int | float) and "high" in entry):
            raise GraftcvError(f"--space {path}: {name} needs low and high.")
        if kind != "categorical" and not entry["low"] < entry["high"]:
            raise GraftcvError(f"--space {path}: {name} needs low below high.")
        params.append(Param(
            name, kind, tuple(entry.get("choices", ())), entry.get("low"), entry.get("high"),
            bool(entry.get("log", False)), tuple(entry.get("when", ())), entry.get("default"),
        ))  # fmt: skip
    return Space(tuple(params))
