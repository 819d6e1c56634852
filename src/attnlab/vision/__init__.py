"""Image attention blocks: modules over feature maps ``(B, C, H, W)``.

What every block here does, so that one conformance suite
(``tests/vision/test_conformance.py``) checks them all:

- takes a feature map ``(B, C, H, W)`` in either memory format (a ``channels_last``
  input gives the same output as a contiguous one);
- returns its output map ``(B, C', H', W')``, or an
  :class:`~attnlab.functional.AttentionOutput` whose context is that map and whose
  weights are the attention map it applied;
- takes ``device=None, dtype=None`` and creates its parameters there; runs in
  bfloat16 and float16 without NaN.

:data:`IMAGE_BLOCKS` maps the name ``attnlab list`` shows to each block's class; a
new block is one entry here and one case in the conformance suite.
"""

from torch import nn

from attnlab.vision.attention_gate import AttentionGate
from attnlab.vision.cbam import CBAM, ChannelAttention, SpatialAttention
from attnlab.vision.draw_attention import DrawRead, DrawWrite, FullRead, FullWrite
from attnlab.vision.non_local import NonLocalBlock
from attnlab.vision.residual_attention import ResidualAttention
from attnlab.vision.squeeze_excite import SqueezeExcite

__all__ = [
    "CBAM",
    "IMAGE_BLOCKS",
    "AttentionGate",
    "ChannelAttention",
    "DrawRead",
    "DrawWrite",
    "FullRead",
    "FullWrite",
    "NonLocalBlock",
    "ResidualAttention",
    "SpatialAttention",
    "SqueezeExcite",
]

# Every image block of the library, for `attnlab list` and the conformance suite.
IMAGE_BLOCKS: dict[str, type[nn.Module]] = {
    "squeeze-excite": SqueezeExcite,
    "cbam": CBAM,
    "cbam-channel": ChannelAttention,
    "cbam-spatial": SpatialAttention,
    "attention-gate": AttentionGate,
    "residual-attention": ResidualAttention,
    "non-local": NonLocalBlock,
}
