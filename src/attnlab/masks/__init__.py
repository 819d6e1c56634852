"""Attention masks: builders, combinators, converters and checks.

One convention everywhere: a mask is a boolean tensor, True = may attend,
broadcastable to ``(B, H, Lq, Lk)``. Additive float biases are not masks; they
go through the attention function's separate ``bias=`` argument.

- Builders (:mod:`~attnlab.masks.builders`): :func:`lengths_to_mask`,
  :func:`key_padding_mask`, :func:`query_key_padding_mask`, :func:`causal_mask`
  (upper-left or lower-right aligned), :func:`sliding_window_mask`.
- Combinators (:mod:`~attnlab.masks.combine`): :func:`and_masks`,
  :func:`or_masks`, where ``None`` means "no restriction".
- Converters (:mod:`~attnlab.masks.convert`): torch ``key_padding_mask``
  (True = ignore), torch ``attn_mask`` (True = not allowed, or float), additive
  float masks (0 / ``-inf``).
- Predicates (:mod:`~attnlab.masks.predicates`): the same masks as FlexAttention
  ``mask_mod(b, h, q_idx, kv_idx)`` callables, and :func:`materialize_mask_mod`.
- :func:`check_mask`: the one check of a mask that every attention function and
  module runs (and users can run where they build one).
- Sparsity patterns (:mod:`~attnlab.masks.patterns`): an exact predicate plus the
  blocks worth computing, for the blockwise engines: :func:`sliding_window_pattern`
  (with dilation) and, in :mod:`~attnlab.masks.sparse`, Longformer, BigBird and the
  Sparse Transformer's strided and fixed patterns (in
  :mod:`~attnlab.masks.sparse_transformer`).

Example:
    >>> import torch
    >>> from attnlab.masks import and_masks, causal_mask, key_padding_mask
    >>> mask = and_masks(key_padding_mask(torch.tensor([3, 5])), causal_mask(5))
    >>> mask.shape
    torch.Size([2, 1, 5, 5])
"""

from attnlab.masks.builders import (
    causal_mask,
    key_padding_mask,
    lengths_to_mask,
    query_key_padding_mask,
    sliding_window_mask,
)
from attnlab.masks.check import check_mask
from attnlab.masks.combine import and_masks, or_masks
from attnlab.masks.convert import (
    from_additive_mask,
    from_key_padding_mask,
    from_torch_attn_mask,
    split_additive_mask,
    to_additive_mask,
    to_key_padding_mask,
)
from attnlab.masks.patterns import (
    BlockLayout,
    SlidingWindowPattern,
    SparsePattern,
    sliding_window_pattern,
)
from attnlab.masks.predicates import (
    MaskMod,
    and_mask_mods,
    causal_mask_mod,
    materialize_mask_mod,
    or_mask_mods,
    padding_mask_mod,
    sliding_window_mask_mod,
)
from attnlab.masks.sparse import (
    BigBirdPattern,
    LongformerPattern,
    bigbird_pattern,
    longformer_pattern,
)
from attnlab.masks.sparse_transformer import (
    FixedPattern,
    StridedPattern,
    fixed_pattern,
    strided_pattern,
)

# Every sparsity pattern, for `attnlab list`.
PATTERNS = {
    "sliding-window": SlidingWindowPattern,
    "longformer": LongformerPattern,
    "bigbird": BigBirdPattern,
    "strided": StridedPattern,
    "fixed": FixedPattern,
}

__all__ = [
    "PATTERNS",
    "BigBirdPattern",
    "BlockLayout",
    "FixedPattern",
    "LongformerPattern",
    "StridedPattern",
    "bigbird_pattern",
    "fixed_pattern",
    "longformer_pattern",
    "strided_pattern",
    "MaskMod",
    "SlidingWindowPattern",
    "SparsePattern",
    "sliding_window_pattern",
    "and_mask_mods",
    "and_masks",
    "causal_mask",
    "causal_mask_mod",
    "check_mask",
    "from_additive_mask",
    "from_key_padding_mask",
    "from_torch_attn_mask",
    "key_padding_mask",
    "lengths_to_mask",
    "materialize_mask_mod",
    "or_mask_mods",
    "or_masks",
    "padding_mask_mod",
    "query_key_padding_mask",
    "sliding_window_mask",
    "sliding_window_mask_mod",
    "split_additive_mask",
    "to_additive_mask",
    "to_key_padding_mask",
]
