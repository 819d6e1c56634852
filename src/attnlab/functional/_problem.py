"""The validated description of one attention call, shared by every engine."""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import Tensor

from attnlab._validate import dtype_name
from attnlab.functional.scores import Score

CAUSAL_ALIGNMENTS = ("upper_left", "lower_right")


class Problem(NamedTuple):
    """Prepared inputs of one call: engines read this and nothing else.

    A named tuple rather than a frozen dataclass: it is built on every call, and the
    dispatch overhead over bare SDPA must stay unmeasurable.

    Attributes:
        q: prepared queries ``(B, H, Lq, D')``.
        k: prepared keys ``(B, H, Lk, D')``.
        v: values ``(B, H, Lk, Dv)``.
        score: the score function (``pairwise`` works on q and k as given).
        scale: ``score.dot_scale(q)``: not None when scores are ``scale * q @ k^T``.
        mask: boolean, True = may attend, broadcastable to ``(B, H, Lq, Lk)``, or None.
        bias: float logits added to the scores, broadcastable likewise, or None.
        causal_offset: None, or the offset ``o`` such that key j is visible to query i
            only when ``j <= i + o`` (0 upper-left, ``Lk - Lq`` lower-right).
        dropout_p: dropout on the attention probabilities (0 when not training).
    """

    q: Tensor
    k: Tensor
    v: Tensor
    score: Score
    scale: float | None
    mask: Tensor | None
    bias: Tensor | None
    causal_offset: int | None
    dropout_p: float

    @property
    def shape(self) -> tuple[int, int, int, int]:
        """``(B, H, Lq, Lk)``."""
        b, h, lq, _ = self.q.shape
        return b, h, lq, self.k.shape[-2]


def causal_offset(causal: bool | str, lq: int, lk: int) -> int | None:
    """Translate the ``causal=`` argument into the offset of :class:`Problem`."""
    if causal is False or causal is None:
        return None
    if causal is True or causal == "upper_left":
        return 0
    if causal == "lower_right":
        return lk - lq
    raise ValueError(f"causal must be False, True, 'upper_left' or 'lower_right', got {causal!r}")


def causal_block(offset: int, qs: int, qe: int, ks: int, ke: int, device: torch.device) -> Tensor:
    """Boolean ``(qe - qs, ke - ks)`` block of the causal mask, True = may attend."""
    rows = torch.arange(qs, qe, device=device).unsqueeze(-1)
    cols = torch.arange(ks, ke, device=device)
    return cols <= rows + offset


def full_mask(p: Problem) -> Tensor | None:
    """The boolean mask with causality folded in (materialised only for small engines)."""
    if p.causal_offset is None:
        return p.mask
    _, _, lq, lk = p.shape
    causal = causal_block(p.causal_offset, 0, lq, 0, lk, p.q.device)
    return causal if p.mask is None else p.mask & causal


def block_of(t: Tensor | None, qs: int, qe: int, ks: int, ke: int) -> Tensor | None:
    """Slice the query/key block out of a broadcastable ``(..., Lq, Lk)`` tensor.

    Broadcast dimensions (size 1) are kept as they are.
    """
    if t is None:
        return None
    rows = slice(qs, qe) if t.shape[-2] != 1 else slice(None)
    cols = slice(ks, ke) if t.shape[-1] != 1 else slice(None)
    return t[..., rows, cols]


class _Shared:
    def __repr__(self) -> str:
        return "SHARED"


SHARED = _Shared()  # check_qkv's default dtype rule: one floating dtype for q, k and v


def check_qkv(
    q: object,
    k: object,
    v: object,
    *,
    names: tuple[str, str, str] = ("q", "k", "v"),
    dims: tuple[str, ...] = ("B", "H", "L", "D"),
    widths: tuple[int | None, int | None, int | None] = (None, None, None),
    prefix: str = "",
    single_query: bool = False,
    same_width: bool = False,
    dtype: torch.dtype | None | object = SHARED,
    owner: str = "the module",
) -> None:
    """The one shape check of attention inputs: functions and modules alike.

    Keys and values are laid out as ``dims`` (e.g. ``(B, H, L, D)`` for the functional
    core, ``(B, L, E)`` for batch-first modules); queries too, or one dim fewer with
    ``single_query`` (one decoder step, ``(B, D)``). Queries and keys share their
    leading dims (all but the last two), keys and values also their length.

    Args:
        q: queries.
        k: keys.
        v: values.
        names: the arguments' names, for the messages.
        dims: the names of the dims, last one the feature size.
        widths: expected feature sizes (a module's sizes); None accepts any.
        prefix: words before the layout in messages (``"batch-first "``).
        single_query: ``q`` may lack the length dim.
        same_width: ``q`` and ``k`` must have one feature size.
        dtype: the parameters' dtype that every input must have (None: any floating
            dtype; see :func:`check_dtype`); by default the three share one floating
            dtype.
        owner: the module named in a dtype message.

    Raises:
        TypeError: a non-tensor, a non-floating tensor, or a wrong or mixed dtype.
        ValueError: a tensor of the wrong rank or feature size, or shapes that do not
            fit together.
    """
    for name, t, width, is_query in zip(names, (q, k, v), widths, (True, False, False)):
        check_layout(name, t, dims, width, prefix=prefix, optional_length=is_query and single_query)
        if dtype is not SHARED:
            check_dtype(name, t, dtype, owner)  # type: ignore[arg-type]
        elif not t.is_floating_point():
            raise TypeError(f"{name} must be a floating tensor, got {t.dtype}")
    if dtype is SHARED and not q.dtype == k.dtype == v.dtype:
        raise TypeError(
            f"{', '.join(names)} must share a dtype, got {q.dtype}, {k.dtype}, {v.dtype}"
        )
    lead = k.shape[:-2]
    q_lead = q.shape[:-1] if q.dim() < k.dim() else q.shape[:-2]
    if (
        q_lead != lead
        or v.shape[:-1] != k.shape[:-1]
        or (same_width and q.shape[-1] != k.shape[-1])
    ):
        layout = {name: _layout(dims, length) for name, length in zip(names, ("Lq", "Lk", "Lk"))}
        raise ValueError(
            "shapes do not match: "
            + ", ".join(f"{n} {tuple(t.shape)} = {layout[n]}" for n, t in zip(names, (q, k, v)))
        )


def check_layout(
    name: str,
    t: object,
    dims: tuple[str, ...],
    width: int | None = None,
    *,
    prefix: str = "",
    optional_length: bool = False,
) -> Tensor:
    """``t`` itself when it is a tensor laid out as ``dims`` with feature size ``width``.

    With ``optional_length`` the second-to-last dim may be missing (a single query).

    Example:
        >>> check_layout("x", torch.zeros(2, 5, 3), ("B", "L", "E"), 3).shape
        torch.Size([2, 5, 3])
    """
    if not isinstance(t, Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(t).__name__}")
    rank_ok = t.dim() == len(dims) or (optional_length and t.dim() == len(dims) - 1)
    if not rank_ok or (width is not None and t.shape[-1] != width):
        text = _alternatives(dims, optional_length)
        if width is not None:
            numbers = _alternatives(dims[:-1] + (str(width),), optional_length)
            text = f"{numbers}, i.e. {text} with {width} features in the last dim"
        raise ValueError(f"{name} must be {prefix}{text}; got {tuple(t.shape)}")
    return t


def _alternatives(dims: tuple[str, ...], optional_length: bool) -> str:
    """``(B, L, D)``, or ``(B, L, D) or (B, D)`` when the length may be missing."""
    text = _layout(dims)
    return f"{text} or {_layout(dims[:-2] + dims[-1:])}" if optional_length else text


def check_dtype(name: str, t: Tensor, dtype: torch.dtype | None, owner: str) -> None:
    """``t`` has the parameters' ``dtype`` (None: any floating dtype), else one line.

    One comparison for a valid input; under ``torch.autocast`` another floating dtype
    is fine (the autocast ops cast it).
    """
    if t.dtype == dtype:
        return
    if not t.is_floating_point():
        raise TypeError(f"{name} must be a floating tensor, got {t.dtype}")
    if dtype is None or torch.is_autocast_enabled(t.device.type):
        return
    got, want = dtype_name(t.dtype), dtype_name(dtype)
    raise TypeError(
        f"{name} is {got} but {owner}'s parameters are {want}; call "
        f"module.to({t.dtype}) or pass {want} inputs"
    )


def _layout(dims: tuple[str, ...], length: str | None = None) -> str:
    if length is not None and len(dims) >= 2:
        dims = dims[:-2] + (length, dims[-1])
    return f"({', '.join(dims)})"


def pair_values(
    t: Tensor, q_idx: Tensor, kv_idx: Tensor, b: Tensor | None = None, h: Tensor | None = None
) -> Tensor:
    """``t`` at query/key index pairs, for ``t`` broadcastable to ``(B, H, Lq, Lk)``.

    A size-1 dimension of ``t`` is read at index 0 and negative (padding) indices at 0.
    Without ``b`` and ``h`` the result keeps ``t``'s batch and head dims:
    ``(Bt, Ht, *broadcast(q_idx, kv_idx))``; with them, every index is looked up (as
    FlexAttention's ``mask_mod`` and ``score_mod`` do).
    """
    t4 = t.reshape((1,) * (4 - t.dim()) + tuple(t.shape))

    def pick(index: Tensor, size: int) -> Tensor:
        return index.clamp(min=0) if size != 1 else torch.zeros_like(index)

    rows, cols = pick(q_idx, t4.shape[2]), pick(kv_idx, t4.shape[3])
    if b is None or h is None:
        return t4[:, :, rows, cols]
    return t4[pick(b, t4.shape[0]), pick(h, t4.shape[1]), rows, cols]
