"""Boolean mask builders: padding from lengths, causal, sliding window.

Every mask is boolean, True = may attend, and broadcasts to ``(B, H, Lq, Lk)``.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from attnlab.masks._validate import (
    Alignment,
    DeviceLike,
    as_lengths,
    as_size,
    check_alignment,
    diagonal_offset,
    resolve_max_len,
    window_sides,
)
from attnlab.masks.predicates import band_predicate, causal_predicate

__all__ = [
    "causal_mask",
    "key_padding_mask",
    "lengths_to_mask",
    "query_key_padding_mask",
    "sliding_window_mask",
]


def lengths_to_mask(
    lengths: Tensor | Sequence[int], max_len: int | None = None, *, device: DeviceLike = None
) -> Tensor:
    """Mark the first ``lengths[b]`` positions of each sequence as valid.

    Args:
        lengths: Valid length of each sequence, integers in ``[0, max_len]``.
        max_len: Padded length L; defaults to ``max(lengths)`` (0 for an empty batch).
        device: Device of the result; defaults to the device of ``lengths``.

    Returns:
        Boolean tensor, True at valid positions (``position < lengths[b]``).

    Raises:
        TypeError: ``lengths`` is not an integer tensor or sequence of ints.
        ValueError: ``lengths`` is not 1-D, has a negative entry, or exceeds ``max_len``.

    Shapes:
        lengths: ``(B,)``; output: ``(B, L)``.

    Example:
        >>> lengths_to_mask(torch.tensor([1, 3]), 4).int().tolist()
        [[1, 0, 0, 0], [1, 1, 1, 0]]
    """
    lengths = as_lengths("lengths", lengths, device)
    length = resolve_max_len("max_len", lengths, max_len)
    positions = torch.arange(length, device=lengths.device)
    return positions[None, :] < lengths[:, None]


def key_padding_mask(
    lengths: Tensor | Sequence[int], max_len: int | None = None, *, device: DeviceLike = None
) -> Tensor:
    """Padding mask over keys, shaped to pass straight to attention as ``mask=``.

    Args:
        lengths: Valid key count per batch element, integers in ``[0, max_len]``.
        max_len: Padded key length Lk; defaults to ``max(lengths)``.
        device: Device of the result; defaults to the device of ``lengths``.

    Returns:
        Boolean mask, True where key ``j < lengths[b]``. A length of 0 masks every
        key, so the rows have nothing to attend to (attnlab returns zeros there).

    Shapes:
        lengths: ``(B,)``; output: ``(B, 1, 1, Lk)``.

    Example:
        >>> key_padding_mask(torch.tensor([2, 3])).shape
        torch.Size([2, 1, 1, 3])
    """
    return lengths_to_mask(lengths, max_len, device=device)[:, None, None, :]


def query_key_padding_mask(
    q_lengths: Tensor | Sequence[int],
    k_lengths: Tensor | Sequence[int],
    lq: int | None = None,
    lk: int | None = None,
    *,
    device: DeviceLike = None,
) -> Tensor:
    """Padding mask over queries and keys: valid query rows may attend valid keys.

    Padded query rows are all False: they have nothing to attend to, and
    attnlab's attention returns zero output and zero weights for them.

    Args:
        q_lengths: Valid query count per batch element.
        k_lengths: Valid key count per batch element.
        lq: Padded query length Lq; defaults to ``max(q_lengths)``.
        lk: Padded key length Lk; defaults to ``max(k_lengths)``.
        device: Device of the result; defaults to the device of ``k_lengths``.

    Returns:
        Boolean mask, True where ``i < q_lengths[b]`` and ``j < k_lengths[b]``.

    Shapes:
        q_lengths, k_lengths: ``(B,)``; output: ``(B, 1, Lq, Lk)``.

    Example:
        >>> query_key_padding_mask([1], [2], 2, 3).int().tolist()
        [[[[1, 1, 0], [0, 0, 0]]]]
    """
    k_valid = lengths_to_mask(k_lengths, lk, device=device)
    q_valid = lengths_to_mask(q_lengths, lq, device=k_valid.device)
    if q_valid.shape[0] != k_valid.shape[0]:
        raise ValueError(
            f"q_lengths and k_lengths must have the same batch size; "
            f"got {q_valid.shape[0]} and {k_valid.shape[0]}"
        )
    return q_valid[:, None, :, None] & k_valid[:, None, None, :]


def causal_mask(
    lq: int,
    lk: int | None = None,
    *,
    alignment: Alignment = "upper_left",
    device: DeviceLike = None,
) -> Tensor:
    """Causal mask: a query may attend keys up to its own (aligned) position.

    When Lq != Lk the diagonal must be placed somewhere; as in
    ``torch/nn/attention/bias.py`` there are two choices. For Lq = 2, Lk = 4
    (1 = may attend)::

        upper_left: query i sees keys j <= i
            [[1, 0, 0, 0],
             [1, 1, 0, 0]]

        lower_right: query i sees keys j <= i + (Lk - Lq)
            [[1, 1, 1, 0],
             [1, 1, 1, 1]]

    Upper-left equals SDPA's ``is_causal=True``. Lower-right puts the queries at
    the end of the keys, so the last query sees every key: the usual choice when
    decoding with a KV cache (new queries come after the cached keys). The two
    agree when Lq == Lk. With lower-right and Lq > Lk, the first ``Lq - Lk`` rows
    have nothing to attend to; attnlab's attention returns zeros for such rows
    (torch's SDPA returns NaN). For Lq = 4, Lk = 2, lower-right::

        [[0, 0],
         [0, 0],
         [1, 0],
         [1, 1]]

    Args:
        lq: Query length Lq.
        lk: Key length Lk; defaults to ``lq``.
        alignment: ``"upper_left"`` or ``"lower_right"``.
        device: Device of the result.

    Returns:
        Boolean mask, True where query i may attend key j.

    Raises:
        ValueError: A length is negative or ``alignment`` is unknown.

    Shapes:
        output: ``(Lq, Lk)``.

    Example:
        >>> causal_mask(2, 4, alignment="lower_right").int().tolist()
        [[1, 1, 1, 0], [1, 1, 1, 1]]
    """
    lq = as_size("lq", lq)
    lk = lq if lk is None else as_size("lk", lk)
    offset = diagonal_offset(lq, lk, check_alignment(alignment))
    q_idx, kv_idx = _index_grids(lq, lk, device)
    return causal_predicate(q_idx, kv_idx, offset)


def sliding_window_mask(
    lq: int,
    lk: int | None = None,
    *,
    window: int | tuple[int, int],
    causal: bool = False,
    alignment: Alignment = "upper_left",
    device: DeviceLike = None,
) -> Tensor:
    """Sliding-window (local, banded) mask around the aligned diagonal.

    Query i may attend key j when ``-left <= j - i' <= right``, where
    ``i' = i`` (upper-left) or ``i' = i + Lk - Lq`` (lower-right), as in
    :func:`causal_mask`. So each query sees at most ``left + right + 1`` keys.
    For Lq = Lk = 5, ``window=(2, 1)``, ``window=1`` and ``window=2, causal=True``::

        (2, 1)               1                    2, causal
        [[1, 1, 0, 0, 0],    [[1, 1, 0, 0, 0],    [[1, 0, 0, 0, 0],
         [1, 1, 1, 0, 0],     [1, 1, 1, 0, 0],     [1, 1, 0, 0, 0],
         [1, 1, 1, 1, 0],     [0, 1, 1, 1, 0],     [1, 1, 1, 0, 0],
         [0, 1, 1, 1, 1],     [0, 0, 1, 1, 1],     [0, 1, 1, 1, 0],
         [0, 0, 1, 1, 1]]     [0, 0, 0, 1, 1]]     [0, 0, 1, 1, 1]]

    ``causal=True`` with window ``w`` equals ``and_masks(causal_mask(...),
    sliding_window_mask(..., window=w))``. Rows whose band falls outside the keys
    (possible when Lq != Lk) have nothing to attend to; attnlab returns zeros there.

    Args:
        lq: Query length Lq.
        lk: Key length Lk; defaults to ``lq``.
        window: ``w`` (``w`` keys on each side, i.e. ``(w, w)``) or
            ``(left, right)``; all >= 0, and 0 keeps only the aligned diagonal.
        causal: If True, no keys after the aligned diagonal (right = 0); an int
            window then means ``(w, 0)``, and a pair must have right = 0.
        alignment: ``"upper_left"`` or ``"lower_right"``.
        device: Device of the result.

    Returns:
        Boolean mask, True where query i may attend key j.

    Raises:
        ValueError: A length or window side is negative, the window is not an
            int or pair, ``causal=True`` with right > 0, or ``alignment`` is unknown.

    Shapes:
        output: ``(Lq, Lk)``.

    Example:
        >>> sliding_window_mask(3, window=(1, 0)).int().tolist()
        [[1, 0, 0], [1, 1, 0], [0, 1, 1]]
    """
    lq = as_size("lq", lq)
    lk = lq if lk is None else as_size("lk", lk)
    offset = diagonal_offset(lq, lk, check_alignment(alignment))
    left, right = window_sides(window, causal)
    q_idx, kv_idx = _index_grids(lq, lk, device)
    return band_predicate(q_idx, kv_idx, offset, left, right)


def _index_grids(lq: int, lk: int, device: DeviceLike) -> tuple[Tensor, Tensor]:
    q_idx = torch.arange(lq, device=device)[:, None]
    kv_idx = torch.arange(lk, device=device)[None, :]
    return q_idx, kv_idx
