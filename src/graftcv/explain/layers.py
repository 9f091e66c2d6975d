"""Which layer a CAM looks at: the last convolutional feature map of any CNN, found by tracing a forward pass."""

from __future__ import annotations

import torch
from torch import nn

from graftcv.errors import GraftcvError

# Modules that pass a feature map through unchanged: hooking them adds nothing and only hides the real layer.
PASS_THROUGH = (nn.Identity, nn.Dropout, nn.Dropout2d)


def trace_output_shapes(model: nn.Module, input_size: tuple[int, int, int]) -> list[tuple[str, tuple[int, ...]]]:
    """(module name, output shape) for every named module, in the order their forward calls finish."""
    shapes: list[tuple[str, tuple[int, ...]]] = []
    handles = []
    for name, module in model.named_modules():
        if not name or isinstance(module, PASS_THROUGH):
            continue

        def record(_module: nn.Module, _inputs: tuple, output: object, name: str = name) -> None:
            if isinstance(output, torch.Tensor):
                shapes.append((name, tuple(output.shape)))

        handles.append(module.register_forward_hook(record))
    was_training = model.training
    try:
        model.eval()
        parameter = next(model.parameters(), None)
        device = parameter.device if parameter is not None else torch.device("cpu")
        with torch.no_grad():
            model(torch.zeros(1, *input_size, device=device))
    finally:
        for handle in handles:
            handle.remove()
        model.train(was_training)
    return shapes


def find_target_layer(model: nn.Module, input_size: tuple[int, int, int]) -> str:
    """The name of the last module whose output is a spatial feature map (N, C, H, W with H, W > 1).

    One generic rule instead of a table per family: it picks `layer4` in a ResNet, `bn2` (the activated
    `conv_head` output) in an EfficientNet, the last of `blocks` in a MobileNetV3 (its `conv_head` runs
    after pooling), `features` in a VGG and `stages` in a ConvNeXt. Containers finish after their children,
    so the whole last stage wins over its last layer.
    """
    shapes = trace_output_shapes(model, input_size)
    feature_maps = [i for i, (_, shape) in enumerate(shapes) if len(shape) == 4]
    if not feature_maps:
        raise GraftcvError(
            f"{type(model).__name__} has no convolutional feature map; "
            "CAMs need a CNN backbone (ResNet, EfficientNet, ...)."
        )
    spatial = [i for i in feature_maps if shapes[i][1][2] > 1 and shapes[i][1][3] > 1]
    chosen = (spatial or feature_maps)[-1]  # a tiny input can shrink every map to 1×1: take the last one then
    if any(len(shape) == 3 for _, shape in shapes[chosen + 1 :]):
        raise GraftcvError(
            f"{type(model).__name__} works on token sequences after its last feature map (a transformer?); "
            "graftcv's CAMs need a convolutional backbone."
        )
    return shapes[chosen][0]


def resolve_layer(model: nn.Module, name: str | None, input_size: tuple[int, int, int]) -> tuple[str, nn.Module]:
    """The named module (`--layer`), or the automatic choice when `name` is None."""
    modules = dict(model.named_modules())
    if name is None:
        name = find_target_layer(model, input_size)
    if name not in modules or not name:
        last = [n for n, _ in model.named_children()][-4:]
        raise GraftcvError(
            f"The model has no layer {name!r}; use a module name such as {', '.join(last)} (dotted for nested ones)."
        )
    return name, modules[name]
