"""The LightningModule that trains a timm classifier on images, or its classifier alone on cached features."""

from __future__ import annotations

import time

import lightning as L
import torch
from torch import nn

from graftcv import distributed
from graftcv.training.freezing import group_learning_rates, set_trainable, trainable_groups
from graftcv.training.optim import OPTIMIZERS, SCHEDULES, OptimSettings, ScheduleContext
from graftcv.training.phase import Phase

__all__ = ["OptimSettings", "TransferModule"]


def _norm_modules(model: nn.Module, names: set[str]) -> list[nn.Module]:
    """BatchNorm layers whose weight is among `names` (or all of them when names is empty)."""
    found = []
    for module_name, module in model.named_modules():
        if isinstance(module, nn.modules.batchnorm._BatchNorm):
            weight_name = f"{module_name}.weight" if module_name else "weight"
            if not names or weight_name in names:
                found.append(module)
    return found


class TransferModule(L.LightningModule):
    """Cross-entropy training of `model` under one `Phase` at a time; the groups decide what trains."""

    def __init__(
        self,
        model: nn.Module,
        groups: list[list[str]],
        optim: OptimSettings,
        label_smoothing: float = 0.1,
        class_weights: torch.Tensor | None = None,
        bn: str = "freeze",
        mixup: nn.Module | None = None,
        frozen_bottom: int = 0,
        alignment: nn.Module | None = None,
        alignment_weight: float = 1.0,
        penalties: dict[str, nn.Module] | None = None,
        decay_pretrained: bool = True,
        penalty_features: bool = False,
        objective: nn.Module | None = None,
    ) -> None:
        """`frozen_bottom`: groups from the stem up that no phase trains (see `backbones.early_groups`).
        `alignment`: a domain-alignment loss (`training.alignment`) on the pooled features of source and target
        batches, when the training loader also yields unlabelled target images.
        `penalties`: fine-tuning regularizers (`training.regularizers`), added to the loss of image epochs;
        `penalty_features`: one of them reads the pooled features; `decay_pretrained=False`: weight decay only on
        the classifier (L2-SP pulls the rest towards its pretrained values instead).
        `objective`: the loss of several labels per image (`training.objectives.OutputsLoss`), replacing
        cross-entropy; targets are then 0/1 rows."""
        super().__init__()
        self.model = model
        self.groups = groups
        self.frozen_bottom = frozen_bottom
        self.optim = optim
        self.bn = bn
        self.mixup = mixup
        self.phase: Phase | None = None
        self.lr = 1e-3  # read and written by Lightning's LR finder
        self.objective = objective
        self.loss = objective or nn.CrossEntropyLoss(weight=class_weights, label_smoothing=label_smoothing)
        self.head_dropout = nn.Dropout(getattr(model, "drop_rate", 0.0) or 0.0)
        self.val_logits: list[torch.Tensor] = []
        self.val_positions: list[torch.Tensor] = []
        self.val_probs: list[torch.Tensor] = []
        self.val_targets: list[torch.Tensor] = []
        self._wrapped_trainable: set[str] = set()
        self.alignment = alignment
        self.alignment_weight = alignment_weight
        self.penalties = nn.ModuleDict(penalties or {})
        self.decay_pretrained = decay_pretrained
        self.penalty_features = penalty_features

    # --- phases and freezing -------------------------------------------------------------------
    def start_phase(self, phase: Phase) -> None:
        self.phase = phase
        self.lr = phase.lr
        self.update_trainable(epoch=0)
        self._wrapped_trainable = {n for n, p in self.model.named_parameters() if p.requires_grad}

    def n_trainable(self, epoch: int) -> int:
        return min(trainable_groups(self.phase, len(self.groups), epoch), len(self.groups) - self.frozen_bottom)

    def update_trainable(self, epoch: int) -> None:
        set_trainable(self.model, self.groups, self.n_trainable(epoch))

    def _set_norm_modes(self) -> None:
        """Frozen groups keep their BatchNorm statistics; with bn='freeze' the trainable ones do too."""
        frozen = {n for n, p in self.model.named_parameters() if not p.requires_grad}
        if self.bn == "freeze":
            modules = _norm_modules(self.model, set())
        else:
            modules = _norm_modules(self.model, frozen) if frozen else []
        for module in modules:
            module.eval()

    def on_fit_start(self) -> None:
        # channels_last: about 1.7x faster convolutions (forward and backward) on CPUs, and what
        # tensor cores want under mixed precision on GPUs
        self.model.to(memory_format=torch.channels_last)

    def on_train_epoch_start(self) -> None:
        self._epoch_clock = (time.perf_counter(), 0)
        stream = getattr(self.trainer.train_dataloader, "dataset", None)
        if hasattr(stream, "set_epoch"):  # shards: Lightning sets the epoch of samplers only
            stream.set_epoch(self.current_epoch)
        if self.phase.unfreeze_every:
            self.update_trainable(self.current_epoch)
        if self.phase.on_features:
            self.model.eval()  # only the classifier runs; dropout comes from head_dropout
        self._set_norm_modes()

    # --- forward and steps -----------------------------------------------------------------------
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.phase is not None and self.phase.on_features:
            return self.model.get_classifier()(self.head_dropout(x))
        return self.model(x.contiguous(memory_format=torch.channels_last))

    def train_input(self, x: torch.Tensor) -> torch.Tensor:
        """The batch at this epoch's size under progressive resizing (antialiased, as a smaller decode would be)."""
        size = None if self.phase.on_features else self.phase.size_at(self.current_epoch)
        if size is None or x.shape[-1] == size and x.shape[-2] == size:
            return x
        return nn.functional.interpolate(x, size=(size, size), mode="bilinear", antialias=True, align_corners=False)

    def _logits_and_penalty(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """The logits of a training batch, and the regularizers' penalty on an image epoch (None without any)."""
        if not self.penalties or self.phase.on_features:
            return self(x), None
        pooled = None
        if self.penalty_features:
            features = self.model.forward_features(x.contiguous(memory_format=torch.channels_last))
            pooled = self.model.forward_head(features, pre_logits=True)
            logits = self.model.get_classifier()(pooled)
        else:
            logits = self(x)
        return logits, self._penalty(pooled)

    def _penalty(self, pooled: torch.Tensor | None) -> torch.Tensor:
        penalty = sum(penalty(self.model, pooled) for penalty in self.penalties.values())
        self.log("reg_loss", penalty.detach(), on_step=False, on_epoch=True, batch_size=1)
        return penalty

    def _adapted_loss(self, batch: dict) -> tuple[torch.Tensor, int]:
        """Classification loss on the source batch plus the weighted alignment of source and target features,
        both through one forward pass."""
        (xs, ys), xt = batch["source"], batch["target"][0]
        images = self.train_input(torch.cat([xs, xt])).contiguous(memory_format=torch.channels_last)
        pooled = self.model.forward_head(self.model.forward_features(images), pre_logits=True)
        source, target = pooled[: len(xs)], pooled[len(xs) :]
        loss = self.loss(self.model.get_classifier()(source), ys)
        progress = self.global_step / max(1, int(self.trainer.estimated_stepping_batches))
        aligned, logs = self.alignment(source, target, progress)
        for name, value in logs.items():
            self.log(name, value, on_step=False, on_epoch=True, batch_size=len(xs))
        self.log("align_loss", aligned.detach(), on_step=False, on_epoch=True, batch_size=len(xs))
        loss = loss + self.alignment_weight * aligned
        if self.penalties:
            loss = loss + self._penalty(source)
        return loss, len(ys)

    def training_step(self, batch, batch_idx: int) -> torch.Tensor:
        if isinstance(batch, dict):
            loss, n = self._adapted_loss(batch)
            self.log("train_loss", loss, on_step=False, on_epoch=True, batch_size=n, sync_dist=True)
            return loss
        x, y = batch
        x = self.train_input(x)
        if self.mixup is not None and not self.phase.on_features:
            x, soft = self.mixup(x, y)
            logits, penalty = self._logits_and_penalty(x)
            loss = torch.sum(-soft * torch.log_softmax(logits, dim=-1), dim=-1).mean()
        else:
            logits, penalty = self._logits_and_penalty(x)
            loss = self.loss(logits, y)
        if penalty is not None:
            loss = loss + penalty
        self.log("train_loss", loss, on_step=False, on_epoch=True, batch_size=len(y), sync_dist=True)
        started, seen = self._epoch_clock
        self._epoch_clock = (started, seen + len(y))
        rate = (seen + len(y)) / max(time.perf_counter() - started, 1e-9)
        self.log("img/s", rate, on_step=True, on_epoch=False, prog_bar=True, logger=False, batch_size=len(y))
        return loss

    def on_validation_epoch_start(self) -> None:
        self.val_logits, self.val_targets, self.val_positions = [], [], []

    def validation_step(self, batch, batch_idx: int) -> None:
        x, y = batch[0], batch[1]  # streamed shards add each image's position in the split (shard_sets)
        self.val_logits.append(self(x).detach().float().cpu())
        self.val_targets.append(y.detach().cpu())
        if len(batch) > 2:
            self.val_positions.append(batch[2].cpu())

    def on_validation_epoch_end(self) -> None:
        """Loss and accuracy of the whole validation set, from every rank's share of it (each rank validates a
        contiguous block, in order), so that every rank sees the same numbers and keeps the same best epoch."""
        logits, targets = torch.cat(self.val_logits), torch.cat(self.val_targets)
        positions = torch.cat(self.val_positions) if self.val_positions else None
        if distributed.size() > 1:
            shares = distributed.gather((logits, targets, positions))
            logits, targets = torch.cat([s[0] for s in shares]), torch.cat([s[1] for s in shares])
            positions = torch.cat([s[2] for s in shares]) if positions is not None else None
        if positions is not None:
            order = torch.argsort(positions)
            logits, targets = logits[order], targets[order]
        if self.objective is not None:  # several labels: val_acc is the share of right yes/no decisions at 0.5
            self.val_probs, self.val_targets = [self.objective.activate(logits)], [targets]
            self.log("val_loss", self.objective.val_loss(logits, targets), prog_bar=True)
            self.log("val_acc", ((self.val_probs[0] >= 0.5) == (targets >= 0.5)).float().mean(), prog_bar=True)
            return
        self.val_probs, self.val_targets = [logits.softmax(-1)], [targets]
        self.log("val_loss", nn.functional.cross_entropy(logits, targets), prog_bar=True)
        self.log("val_acc", (logits.argmax(-1) == targets).float().mean(), prog_bar=True)

    def on_after_backward(self) -> None:
        """Under DDP, parameters frozen when the model was wrapped (progressive unfreezing thaws them later) have
        no gradient hook of DDP's: their gradients are averaged over the ranks here instead."""
        if distributed.size() <= 1 or self.phase is None or not self.phase.unfreeze_every:
            return
        import torch.distributed as dist

        for name, parameter in self.model.named_parameters():
            if parameter.grad is not None and name not in self._wrapped_trainable:
                dist.all_reduce(parameter.grad)
                parameter.grad /= distributed.size()

    # --- optimisation ----------------------------------------------------------------------------
    def _param_groups(self) -> list[dict]:
        """One pair of groups per layer group (decayed weights, then norms and biases without decay)."""
        named = dict(self.model.named_parameters())
        scale = self.lr / self.phase.lr if self.phase.lr else 1.0  # the LR finder changes self.lr
        rates = [r * scale for r in group_learning_rates(self.phase, len(self.groups))]
        top = len(self.groups) - (len(self.groups) if self.phase.unfreeze_every else self.n_trainable(0))
        param_groups = []
        for index, (names, lr) in enumerate(zip(self.groups[top:], rates[top:], strict=True)):
            params = [named[n] for n in names]
            decay = [p for p in params if p.ndim > 1]
            no_decay = [p for p in params if p.ndim <= 1]
            classifier = top + index == len(self.groups) - 1
            weight_decay = self.optim.weight_decay if self.decay_pretrained or classifier else 0.0
            for group, wd in ((decay, weight_decay), (no_decay, 0.0)):
                if group:
                    param_groups.append({"params": group, "lr": lr, "weight_decay": wd})
        extra = list(self.alignment.parameters()) if self.alignment is not None else []
        if extra:  # the domain discriminator learns at the head's rate
            param_groups.append({"params": extra, "lr": rates[-1], "weight_decay": self.optim.weight_decay})
        weights = [p for p in self.objective.parameters()] if self.objective is not None else []
        if weights:  # learned task weights (uncertainty weighting), at the head's rate, not decayed
            param_groups.append({"params": weights, "lr": rates[-1], "weight_decay": 0.0})
        return param_groups

    def configure_optimizers(self):
        optimizer = OPTIMIZERS.lookup(self.optim.optimizer).build(self._param_groups(), self.optim)
        schedule = SCHEDULES.lookup(self.optim.schedule)
        total = max(1, int(self.trainer.estimated_stepping_batches))
        max_epochs = self.trainer.max_epochs or 0
        context = ScheduleContext(
            max_lrs=[g["lr"] for g in optimizer.param_groups],
            total_steps=total,
            steps_per_epoch=max(1, total // max(1, max_epochs)),
            max_epochs=max_epochs,
            settings=self.optim,
        )
        scheduler = schedule.build(optimizer, context)
        if scheduler is None:
            return optimizer
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": schedule.interval}}
