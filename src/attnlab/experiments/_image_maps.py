"""A trained image model's attention maps, sorted by kind, and the charts drawn over many images.

:func:`sorted_maps` runs a model once (through
:func:`attnlab.interpret.explain_image.image_attention_maps`) and sorts what its blocks
and layers weighed: spatial maps (CBAM, residual-attention masks), channel excitations
(SE, CBAM's channel part), non-local attention and a ViT's token attention, each
labelled by the stage of :class:`~attnlab.models.convnet.ConvNet` it comes from.
:func:`draw_excitations` draws the mean excitation per class and stage (Hu et al. 2018,
fig. 6) over the first test images.
"""

from __future__ import annotations

import re
from pathlib import Path

import torch
from torch import Tensor, nn

from attnlab.experiments._image_data import ImageSplits
from attnlab.interpret.explain_image import image_attention_maps
from attnlab.interpret.image_charts import mean_excitation_by_class, plot_channel_excitations

__all__ = ["EXCITATION_IMAGES", "draw_excitations", "sorted_maps", "stage_label"]

EXCITATION_IMAGES = 1000  # test images averaged per class for the excitation chart


def stage_label(module: str) -> str:
    """A ConvNet module name as people read it; other names as they are.

    Example:
        >>> stage_label("stages.1.block.spatial"), stage_label("stages.0.block")
        ('stage 2 spatial', 'stage 1')
    """
    found = re.fullmatch(r"stages\.(\d+)\.block\.?(.*)", module)
    if found is None:
        return module
    return f"stage {int(found.group(1)) + 1} {found.group(2)}".strip()


def sorted_maps(model: nn.Module, x: Tensor) -> tuple[Tensor, dict, dict, dict, list[Tensor]]:
    """The model's logits on ``x`` and its attention maps, sorted by kind.

    Spatial ``(B, h, w)`` and channel ``(B, C)`` maps by stage label, non-local
    ``(B, HW, HW')`` weights by stage label, and the ViT's ``(B, H, L, L)`` per layer.
    """
    with torch.no_grad():
        logits, found = image_attention_maps(model, x)
    spatial, channel, query, tokens = {}, {}, {}, []
    for module, (w, is_block) in found.items():
        w, label = w.float().cpu(), stage_label(module)
        if not is_block:
            tokens.append(w)
        elif w.ndim == 4 and w.shape[2:] == (1, 1):
            channel[label] = w.flatten(1)
        elif w.ndim == 4:  # CBAM's spatial map, or RAN's soft mask averaged over channels
            spatial[label if " " in label.removeprefix("stage ") else f"{label} mask"] = w.mean(1)
        elif w.ndim == 3:
            query[label] = w
    return logits.cpu(), spatial, channel, query, tokens


def draw_excitations(data: ImageSplits, model: nn.Module, name: str, out: Path) -> list[str]:
    """Mean excitation per class and stage over the first test images (SE, CBAM channels)."""
    n = min(EXCITATION_IMAGES, len(data.test))
    device = next(iter(model.parameters())).device
    batches = [
        sorted_maps(model, data.prepare(x, device))[2] for x in data.test.images[:n].split(250)
    ]
    if not batches[0]:
        return []
    labels, classes = data.test.targets[:n], len(data.classes)
    means = {
        stage: mean_excitation_by_class(torch.cat([b[stage] for b in batches]), labels, classes)
        for stage in batches[0]
    }
    path = out / f"excitations_{name}.png"
    plot_channel_excitations(means, data.classes, path, title=f"{name}: mean excitation by class")
    return [path.name]
