"""One image through a model, every picture of what it attends to (``attnlab explain --image``).

:func:`image_attention_maps` runs a model once and returns every attention map its
modules produced: those that take ``need_weights`` (non-local blocks, attention gates,
residual attention, the ViT's self-attention) through :func:`~attnlab.interpret.capture`,
and those that always return an :class:`~attnlab.functional.AttentionOutput` with
weights (Squeeze-and-Excitation, CBAM) through forward hooks. :func:`explain_image`
sorts the maps by what they are and draws each kind its picture (each file only where
the model has that kind of map):

* ``maps.png``: spatial maps (CBAM, gates, residual-attention masks averaged over
  channels, ViT attention rollout from the class token) over the image;
* ``channels.png``: channel excitations (SE, CBAM's channel attention) per stage;
* ``query-<module>.png``: a non-local block's attention from chosen query pixels;
* ``distance.png``: the ViT's mean attention distance per head and layer;
* ``explain.html``: the image with a tab per spatial map;
* ``explain.json``: the prediction, each map's shape and kind, the files.
"""

from __future__ import annotations

import fnmatch
import json
import math
import re
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from attnlab.functional import AttentionOutput
from attnlab.interpret.capture import attention_modules, capture
from attnlab.interpret.image_charts import plot_attention_distance, plot_channel_excitations
from attnlab.interpret.image_page import image_attention_page
from attnlab.interpret.images import as_rgb, plot_image_maps, plot_query_attention
from attnlab.interpret.rollout import attention_rollout
from attnlab.interpret.vit import mean_attention_distance, patch_rollout

__all__ = ["explain_image", "image_attention_maps"]


def image_attention_maps(
    model: nn.Module, images: Tensor, *, layers: Sequence[str] | None = None
) -> tuple[Any, dict[str, tuple[Tensor, bool]]]:
    """Run ``model(images)`` once; return its output and the attention of every module.

    Args:
        model: Any network of attnlab image blocks or attention modules.
        images: The model's input.
        layers: Glob patterns on module names (``"stages.1.*"``); None keeps all.

    Returns:
        ``(output, maps)``: maps is module name -> ``(weights, is_image_block)`` in
        model order, weights detached as the module returned them (batch first);
        ``is_image_block`` tells an :mod:`attnlab.vision` block from token attention.
        Weights passed on by an outer module (CBAM returns its spatial part's map)
        are listed once, under the module that made them (``"...spatial"``).

    Raises:
        KeyError: A pattern in ``layers`` matches no module that made weights.

    Example:
        >>> from attnlab.vision.squeeze_excite import SqueezeExcite
        >>> net = nn.Sequential(nn.Conv2d(1, 4, 3), SqueezeExcite(4, reduction=2))
        >>> _, maps = image_attention_maps(net, torch.rand(2, 1, 5, 5))
        >>> {name: tuple(w.shape) for name, (w, _) in maps.items()}
        {'1': (2, 4, 1, 1)}
    """
    captured = {id(m) for _, m in attention_modules(model)}
    names = {id(m): name or "model" for name, m in model.named_modules()}
    # (storage, shape) -> (module name, weights): a map passed on, even detached, is one.
    recorded: dict[tuple[int, tuple[int, ...]], tuple[str, Tensor]] = {}

    def record(module: nn.Module, args: tuple, output: Any) -> None:
        weights = output.weights if isinstance(output, AttentionOutput) else None
        if weights is None and id(module) in captured and isinstance(output, tuple):
            weights = output[1]  # torch.nn.MultiheadAttention
        if isinstance(weights, Tensor):
            # Inner modules finish first: weights passed on by an outer block (CBAM its
            # spatial map) or container keep the name of the module that made them.
            key = (weights.data_ptr(), tuple(weights.shape))
            recorded.setdefault(key, (names[id(module)], weights))

    # Registered before capture's hooks, so these see each output before capture hands
    # the caller None where it did not ask for weights; capture only turns weights on.
    hooks = [m.register_forward_hook(record) for m in model.modules()]
    try:
        if captured:
            with capture(model):
                output = model(images)
        else:
            output = model(images)
    finally:
        for hook in hooks:
            hook.remove()
    modules = dict(model.named_modules())
    by_name = {name: w.detach() for name, w in recorded.values()}
    order = [name or "model" for name in modules]
    maps = {
        n: (by_name[n], type(modules.get(n, model)).__module__.startswith("attnlab.vision"))
        for n in order
        if n in by_name
    }
    for pattern in layers or ():
        if not fnmatch.filter(maps, pattern):
            raise KeyError(
                f"no attention map matches {pattern!r}; the model has: {', '.join(maps)}"
            )
    if layers is not None:
        maps = {n: v for n, v in maps.items() if any(fnmatch.fnmatch(n, p) for p in layers)}
    return output, maps


def _patch_grid(model: nn.Module, length: int, size: tuple[int, int]) -> tuple[int, int] | None:
    # The ViT's own grid, else square patches that tile the image with 0 or 1 prefix token.
    grid = getattr(model, "grid", None)
    if isinstance(grid, tuple) and len(grid) == 2 and 0 <= length - grid[0] * grid[1] <= 1:
        return grid
    for n in (length - 1, length):
        side = math.isqrt(size[0] * size[1] // n) if n > 0 else 0
        if side and size[0] % side == size[1] % side == 0 and n * side * side == size[0] * size[1]:
            return size[0] // side, size[1] // side
    return None


def _file_name(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name)


def explain_image(
    model: nn.Module,
    image: Tensor,
    out: str | Path,
    *,
    maps: Sequence[str] | None = None,
    prepare: Callable[[Tensor], Tensor] | None = None,
    class_names: Sequence[str] | None = None,
    query_points: Sequence[tuple[int, int]] | None = None,
    title: str = "",
) -> dict[str, Any]:
    """Run one image through ``model`` and draw every attention map it makes into ``out``.

    The model runs once in eval mode without gradients (its mode is restored). Maps
    are sorted by shape: ``(1, C, 1, 1)`` channel excitations, ``(1, C, h, w)`` spatial
    maps (averaged over C), ``(1, HW, HW')`` non-local attention, and token attention
    ``(1, H, L, L)`` of a ViT (rollout over its layers and mean attention distance);
    anything else (3-D gates) is listed in ``explain.json`` as skipped.

    Args:
        model: The trained network (e.g. ``ConvNet`` with blocks, ``VisionTransformer``,
            ``UNet`` with gates).
        image: The image to draw, ``(C, H, W)`` or ``(H, W)``, float in [0, 1] or uint8.
        out: Folder for the files (created; existing files replaced).
        maps: Glob patterns of module names to draw; None draws all.
        prepare: Turns the image into the model's input batch (e.g. normalisation);
            by default the float image with a batch dimension, on the model's device.
        class_names: Names of the classes, for the prediction's label.
        query_points: Query pixels ``(row, col)`` for non-local maps; default the centre.
        title: Prefix of every picture's title (e.g. the run's name).

    Returns:
        The summary also written to ``explain.json``.

    Raises:
        ValueError: A malformed image, or class names that do not match the logits.
        KeyError: A pattern in ``maps`` matches no module.
    """
    rgb = as_rgb(image)
    size = rgb.shape[:2]
    picture = torch.as_tensor(image).detach().cpu()
    if prepare is None:
        first = next(iter(model.parameters()), None)
        x = picture.float() / 255.0 if not picture.is_floating_point() else picture.float()
        x = x.reshape(-1, *size)[None]
        batch = x.to(first.device, first.dtype) if first is not None else x
    else:
        batch = prepare(image)
    training = model.training
    model.eval()
    try:
        with torch.no_grad():
            output, found = image_attention_maps(model, batch, layers=maps)
    finally:
        model.train(training)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    lead = f"{title}: " if title else ""
    summary: dict[str, Any] = {"image": list(picture.shape), "maps": {}, "files": {}}
    if isinstance(output, Tensor) and output.ndim == 2 and output.shape[0] == 1:
        probs = torch.softmax(output[0].float(), -1)
        k = int(probs.argmax())
        if class_names is not None and len(class_names) != len(probs):
            raise ValueError(f"class_names has {len(class_names)} names for {len(probs)} classes")
        label = class_names[k] if class_names is not None else str(k)
        summary["prediction"] = {"class": k, "label": label, "probability": float(probs[k])}
    label = summary.get("prediction", {}).get("label")
    caption = "this image" if label is None else f"predicted {label}"
    spatial: dict[str, Tensor] = {}
    if isinstance(output, Tensor) and output.shape[:2] == (1, 1) and output.shape[2:] == size:
        spatial["output (sigmoid)"] = torch.sigmoid(output[0, 0].float().cpu())  # a mask
    channels: dict[str, Tensor] = {}
    tokens: list[Tensor] = []
    for name, (w, is_block) in found.items():
        w = w[0].float().cpu()
        kind = "skipped"
        if not is_block and w.ndim == 3 and w.shape[-1] == w.shape[-2]:
            kind = "tokens"
            tokens.append(w)
        elif w.ndim == 3 and w.shape[1:] == (1, 1):
            kind, channels[name] = "channels", w.reshape(1, -1)
        elif w.ndim == 3:
            kind, spatial[name] = "spatial", w.mean(0)
        elif w.ndim == 2:
            kind = "query"
            side = math.sqrt(size[0] * size[1] / w.shape[0])
            grid = (round(size[0] / side), round(size[1] / side))
            points = list(query_points or [(size[0] // 2, size[1] // 2)])
            path = out / f"query-{_file_name(name)}.png"
            summary["files"][f"query {name}"] = path.name
            plot_query_attention(image, w, grid, points, path, title=f"{lead}{name}")
        summary["maps"][name] = {"shape": list(w.shape), "kind": kind}
    grid = _patch_grid(model, tokens[0].shape[-1], size) if tokens else None
    if grid is not None:
        prefix = tokens[0].shape[-1] - grid[0] * grid[1]
        if prefix == 0 or getattr(model, "pool", "cls") == "mean":
            # The patches' mean is what the head reads: average their rollout rows.
            spatial["rollout"] = attention_rollout(tokens)[prefix:, prefix:].mean(0).reshape(grid)
        else:
            spatial["rollout"] = patch_rollout(tokens, grid, prefix_tokens=prefix)
        patch = (size[0] // grid[0], size[1] // grid[1])
        distances = mean_attention_distance(tokens, grid, patch_size=patch, prefix_tokens=prefix)
        summary["mean_attention_distance"] = distances.tolist()
        summary["files"]["distance"] = plot_attention_distance(
            distances, out / "distance.png", title=f"{lead}mean attention distance"
        ).name
    if spatial:
        summary["files"]["maps"] = plot_image_maps(
            image, spatial, out / "maps.png", title=f"{lead}attention, {caption}"
        ).name
        summary["files"]["html"] = image_attention_page(
            [image],
            {name: [m] for name, m in spatial.items()},
            None,
            out / "explain.html",
            predictions=None if label is None else [label],
            title=f"{lead}attention",
        ).name
    if channels:
        summary["files"]["channels"] = plot_channel_excitations(
            channels, [caption], out / "channels.png", title=f"{lead}channel excitations"
        ).name
    (out / "explain.json").write_text(json.dumps(summary, indent=1))
    return summary
