"""See what a model attends to: pictures (PNG) and HTML pages of attention weights.

Text for now:

- :func:`plot_alignment`: query x key alignment heatmap (e.g. translation).
- :func:`plot_token_weights`: one strip per sentence for an attention-pooling classifier.
- :func:`write_document_html`: sentences shaded by sentence weight, words by word weight.
- :func:`plot_alignment_grid`: several alignments side by side (one per model).
- :func:`merge_subword_alignment`: subword-piece alignments folded into word alignments.
- :func:`highlight_html` / :func:`write_highlight_html`: a self-contained page in which
  each word is shaded by its weight, from a list of :class:`TextAttentionExample`.

Inside a model:

- :func:`capture`: a context manager collecting the exact weights of chosen attention
  layers (attnlab modules and ``torch.nn.MultiheadAttention``) from the outside.
- :func:`attention_rollout` / :func:`attention_flow`: Abnar & Zuidema 2020, how much
  each input token reaches each output token through the layers.
- :func:`plot_head_grid` (layer x head heatmaps), :func:`plot_token_attribution` (bars),
  :func:`write_attention_html` (hover a token to see what it attends to).
- :func:`plot_graph_attention`: a graph's nodes (e.g. t-SNE coordinates) with edges
  drawn by their attention.

Images (``(C, H, W)`` or ``(H, W)``, float in [0, 1] or uint8):

- :func:`overlay`: a map upsampled onto its image and blended with a colour map;
  :func:`plot_image_maps` (one image, named maps), :func:`plot_attention_grid` (many
  images, one map each), :func:`plot_query_attention` (non-local query pixels).
- :func:`plot_channel_excitations` (SE, per class and stage) and
  :func:`plot_attention_distance` (ViT, per head and layer), with their statistics.
- :func:`image_attention_page`: test images with tabs of overlays, one HTML file.
- :func:`explain_image`: one image through a model, every picture of its attention.

Weights may be torch tensors (any dtype or device) or numpy arrays. The module draws
with matplotlib's object API and the Agg backend: no display, no global pyplot state.
"""

from attnlab.interpret.capture import Captured, attention_modules, capture
from attnlab.interpret.documents import (
    DocumentAttentionExample,
    document_html,
    write_document_html,
)
from attnlab.interpret.explain_image import explain_image, image_attention_maps
from attnlab.interpret.graph import graph_attention_figure, plot_graph_attention
from attnlab.interpret.grid import AlignmentPanel, plot_alignment_grid
from attnlab.interpret.heads import (
    MAX_PANELS,
    HeadGridSelection,
    head_grid_figure,
    plot_head_grid,
    plot_token_attribution,
    select_heads,
    token_attribution_figure,
)
from attnlab.interpret.heatmap import (
    alignment_figure,
    plot_alignment,
    plot_token_weights,
    token_weights_figure,
)
from attnlab.interpret.hover import attention_html, attention_payload, write_attention_html
from attnlab.interpret.html import TextAttentionExample, highlight_html, write_highlight_html
from attnlab.interpret.image_charts import (
    mean_excitation_by_class,
    plot_attention_distance,
    plot_channel_excitations,
)
from attnlab.interpret.image_page import image_attention_html, image_attention_page
from attnlab.interpret.images import (
    overlay,
    plot_attention_grid,
    plot_image_maps,
    plot_query_attention,
)
from attnlab.interpret.rollout import HeadFusion, attention_flow, attention_rollout, fuse_layers
from attnlab.interpret.subwords import group_pieces, merge_subword_alignment

__all__ = [
    "graph_attention_figure",
    "plot_graph_attention",
    "MAX_PANELS",
    "HeadFusion",
    "HeadGridSelection",
    "attention_flow",
    "attention_html",
    "attention_payload",
    "attention_rollout",
    "fuse_layers",
    "head_grid_figure",
    "plot_head_grid",
    "plot_token_attribution",
    "select_heads",
    "token_attribution_figure",
    "write_attention_html",
    "Captured",
    "attention_modules",
    "capture",
    "DocumentAttentionExample",
    "document_html",
    "write_document_html",
    "AlignmentPanel",
    "TextAttentionExample",
    "group_pieces",
    "merge_subword_alignment",
    "plot_alignment_grid",
    "alignment_figure",
    "highlight_html",
    "plot_alignment",
    "plot_token_weights",
    "token_weights_figure",
    "write_highlight_html",
    "overlay",
    "plot_attention_grid",
    "plot_image_maps",
    "plot_query_attention",
    "mean_excitation_by_class",
    "plot_attention_distance",
    "plot_channel_excitations",
    "image_attention_html",
    "image_attention_page",
    "explain_image",
    "image_attention_maps",
]
