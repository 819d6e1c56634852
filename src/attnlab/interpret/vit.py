r"""What a Vision Transformer's attention covers on the image: distances and rollout maps.

Both take the per-layer weights :func:`attnlab.interpret.capture` records from a
:class:`~attnlab.models.vit.VisionTransformer` (``(B, H, T + N, T + N)`` per layer:
``T`` prefix tokens such as the class token, then the ``N = gh * gw`` patches in
row-major order).

- :func:`mean_attention_distance`: Dosovitskiy et al. 2021, fig. 7 (right) and
  appendix D.7, the "attention distance" of each head, the analogue of a receptive
  field size: how far, in pixels, each patch looks, weighted by attention.
- :func:`patch_rollout`: the class token's attention rollout (Abnar & Zuidema 2020)
  over the patches, as a ``(gh, gw)`` map to lay over the image.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from attnlab._validate import as_size
from attnlab.interpret._common import as_attention_layers
from attnlab.interpret.rollout import attention_rollout
from attnlab.vision.patches import as_pair

__all__ = ["mean_attention_distance", "patch_rollout"]


def _patch_layers(
    attentions: Sequence[Any], grid: Any, prefix_tokens: int
) -> tuple[torch.Tensor, bool, tuple[int, int], int]:
    """Stacked ``(layers, B, H, L, L)`` weights, batched or not, the grid and the prefix."""
    stacked, batched = as_attention_layers(attentions)
    gh, gw = as_pair("grid", grid)
    prefix = as_size("prefix_tokens", prefix_tokens)
    length = stacked.shape[-1]
    if length != prefix + gh * gw:
        raise ValueError(
            f"the weights cover {length} tokens but a {gh}x{gw} grid with {prefix} prefix "
            f"token(s) has {prefix + gh * gw}; pass the model's grid and prefix_tokens"
        )
    return stacked, batched, (gh, gw), prefix


def mean_attention_distance(
    attentions: Sequence[Any],
    grid: int | Sequence[int],
    *,
    patch_size: int | Sequence[int] = 1,
    prefix_tokens: int = 1,
) -> torch.Tensor:
    r"""Mean attention distance per layer and head (ViT paper, fig. 7), in pixels.

    For query patch :math:`i` at pixel offset :math:`p_i` (its grid position times the
    patch size) and its attention :math:`a_{ij}` over the patches (the prefix tokens,
    which have no place in the image, are left out and each row renormalised):

    .. math::
        d = \operatorname{mean}_{b,\,i}\ \frac{\sum_j a_{ij} \lVert p_i - p_j \rVert_2}
        {\sum_j a_{ij}}

    A query that puts all of its weight on prefix tokens has no distance and is left
    out of the mean; a head whose queries all do gives 0.

    Args:
        attentions: one ``(B, H, L, L)`` or ``(H, L, L)`` tensor per layer, bottom first
            (``captured.attentions``), ``L = prefix_tokens + gh * gw``.
        grid: patches per column and per row, ``(gh, gw)`` (``model.grid``).
        patch_size: pixels per patch, ``P`` or ``(P_h, P_w)``; 1 gives patch units.
        prefix_tokens: tokens before the patches (1: the class token).

    Returns:
        ``(layers, heads)``, float32 or wider, on the weights' device.

    Raises:
        ValueError: the weights do not fit the grid, or are not attention weights.
        TypeError: ``attentions`` is not a sequence of tensors.

    Shapes:
        attentions[l] ``(B, H, L, L)`` -> ``(layers, H)``.

    Example:
        >>> w = torch.tensor([[[1.0, 0.0, 0.0],    # class token
        ...                    [0.5, 0.25, 0.25],  # patch 0: half on each patch
        ...                    [0.0, 0.0, 1.0]]])  # patch 1: on itself
        >>> mean_attention_distance([w], (1, 2), patch_size=16)  # (8 + 0) / 2
        tensor([[4.]])
    """
    stacked, _, (gh, gw), prefix = _patch_layers(attentions, grid, prefix_tokens)
    ph, pw = as_pair("patch_size", patch_size)
    patches = stacked[..., prefix:, prefix:]  # (layers, B, H, N, N)
    rows, cols = torch.meshgrid(
        torch.arange(gh, dtype=patches.dtype, device=patches.device) * ph,
        torch.arange(gw, dtype=patches.dtype, device=patches.device) * pw,
        indexing="ij",
    )
    pixels = torch.stack([rows.reshape(-1), cols.reshape(-1)], dim=1)
    distance = torch.cdist(pixels, pixels)  # (N, N)
    mass = patches.sum(dim=-1)
    covered = (patches * distance).sum(dim=-1)
    has_mass = mass > 0
    per_query = torch.where(has_mass, covered / mass.clamp_min(torch.finfo(mass.dtype).tiny), 0)
    counted = has_mass.sum(dim=(1, 3)).clamp_min(1)  # (layers, H)
    return per_query.sum(dim=(1, 3)) / counted


def patch_rollout(
    attentions: Sequence[Any],
    grid: int | Sequence[int],
    *,
    prefix_tokens: int = 1,
    query: int = 0,
    **rollout_options: Any,
) -> torch.Tensor:
    """Attention rollout from one token (the class token) to every patch, as a map.

    Row ``query`` of :func:`~attnlab.interpret.rollout.attention_rollout`, its patch
    columns reshaped to the grid (what reaches the class token from each patch).

    Args:
        attentions: one ``(B, H, L, L)`` or ``(H, L, L)`` tensor per layer, bottom first.
        grid: ``(gh, gw)`` (``model.grid``).
        prefix_tokens: tokens before the patches.
        query: the token whose row is read (0: the class token).
        **rollout_options: ``head_fusion``, ``discard_ratio``, ``residual`` of rollout.

    Returns:
        ``(B, gh, gw)`` (``(gh, gw)`` for unbatched weights); the map sums to the share
        of the query's rollout that comes from patches (below 1 by its own share).

    Shapes:
        attentions[l] ``(B, H, L, L)`` -> ``(B, gh, gw)``.

    Example:
        >>> uniform = torch.full((1, 5, 5), 0.2)  # one head, class token + 2x2 patches
        >>> patch_rollout([uniform], (2, 2))
        tensor([[0.1000, 0.1000],
                [0.1000, 0.1000]])
    """
    stacked, batched, (gh, gw), prefix = _patch_layers(attentions, grid, prefix_tokens)
    length = stacked.shape[-1]
    if isinstance(query, bool) or not isinstance(query, int) or not -length <= query < length:
        raise ValueError(f"query must be a token index in [0, {length}), got {query!r}")
    rollout = attention_rollout(list(stacked.unbind(0)), **rollout_options)  # (B, L, L)
    maps = rollout[:, query, prefix:].reshape(-1, gh, gw)
    return maps if batched else maps[0]
