"""Input checks of the image blocks: one clear line, before any work.

Feature maps are channels-first, ``(B, C, H, W)`` (or ``(B, C, L)``, ``(B, C, D, H, W)``),
so the channel count sits in dim 1, not in the last dim that
:func:`attnlab.functional._problem.check_layout` checks; this adds that, and the
parameters' dtype through :func:`attnlab.nn._checks.check_input`.
"""

from __future__ import annotations

from torch import Tensor, nn

from attnlab.functional._problem import check_layout
from attnlab.nn._checks import check_input, parameter_dtype

__all__ = ["check_image"]

# The names of the spatial dims of a 1-, 2- and 3-D map, for the messages.
_SPATIAL = {1: ("L",), 2: ("H", "W"), 3: ("D", "H", "W")}


def check_image(
    x: object,
    channels: int | None,
    name: str = "x",
    dims: int = 2,
    *,
    owner: nn.Module | None = None,
) -> Tensor:
    """``x`` itself when it is a batch of ``dims``-D maps with ``channels`` channels.

    Args:
        x: the input to check.
        channels: the channel count dim 1 must have; None accepts any.
        name: the argument's name, for the messages.
        dims: the number of spatial dims (2 for images, 3 for volumes).
        owner: when given, ``x`` must also have the dtype of ``owner``'s parameters
            (any floating dtype when it has none; another one under autocast).

    Returns:
        ``x``.

    Raises:
        TypeError: ``x`` is not a tensor, or not of the parameters' (floating) dtype.
        ValueError: ``x`` has the wrong number of dims or of channels.

    Example:
        >>> import torch
        >>> check_image(torch.zeros(2, 3, 5, 7), 3).shape
        torch.Size([2, 3, 5, 7])
        >>> check_image(torch.zeros(2, 4, 5, 7), 3)  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        ValueError: x must be (B, 3, H, W), i.e. ... with 3 channels in dim 1; got (2, 4, 5, 7)
    """
    layout = ("B", "C", *_SPATIAL[dims])
    t = check_layout(name, x, layout)
    if channels is not None and t.shape[1] != channels:
        wanted = ", ".join(("B", str(channels), *_SPATIAL[dims]))
        raise ValueError(
            f"{name} must be ({wanted}), i.e. ({', '.join(layout)}) with {channels} channels "
            f"in dim 1; got {tuple(t.shape)}"
        )
    if owner is not None:
        check_input(owner, name, t, parameter_dtype(owner))
    return t
