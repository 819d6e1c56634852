r"""BERT encoder (Devlin et al., NAACL 2019) on attnlab's transformer, and its checkpoints.

The network is BERT's: token + position + segment embeddings, LayerNorm and dropout,
then post-norm encoder layers with GELU feed-forwards,

.. math::
    h^{(0)} = \mathrm{LN}(E_{tok}[x] + E_{pos}[t] + E_{seg}[s]), \quad
    a = \mathrm{LN}(h + \mathrm{MHA}(h)), \quad h' = \mathrm{LN}(a + W_2\,\mathrm{gelu}(W_1 a))

Attention goes through :class:`~attnlab.nn.MultiHeadAttention` by default (fast
engines, exact per-head weights on request), or any attention given as ``attn_layer=``
(a sparsity pattern, linear attention; see :mod:`attnlab.nn.protocol`).
:meth:`BertEncoder.from_pretrained` reads a Hugging Face folder (``config.json`` +
``model.safetensors``, e.g. all-MiniLM-L6-v2 via
:func:`~attnlab.data.pretrained.locate_pretrained`) and renames its tensors with
:func:`hf_bert_key_map`; pooler and task heads are not part of the encoder.
"""

from __future__ import annotations

import dataclasses
import re
import warnings
from pathlib import Path

import torch
from safetensors.torch import load_file
from torch import Tensor, nn

from attnlab._validate import describe
from attnlab.data.pretrained import BertConfig, load_bert_config, locate_pretrained
from attnlab.masks.check import check_mask
from attnlab.nn._checks import as_positive, check_ids, check_tensor, factory_kwargs, probability
from attnlab.nn.multihead import MultiHeadAttention
from attnlab.nn.pooling import AttentionPooling
from attnlab.nn.protocol import AttentionFactory
from attnlab.nn.transformer import EncoderOutput, TransformerEncoder

__all__ = [
    "BertEmbeddings",
    "BertEncoder",
    "PooledClassifier",
    "convert_hf_bert",
    "hf_bert_key_map",
]

_PADDING = "a padding mask (B, L), True = real token"

# Hugging Face's activation names -> attnlab's.
_ACTIVATION = {
    "gelu": "gelu",
    "relu": "relu",
    "gelu_new": "gelu_tanh",
    "gelu_pytorch_tanh": "gelu_tanh",
}
# Checkpoint entries that are not encoder weights and are dropped without a word.
_IGNORED = re.compile(r"(pooler\..*|(.*\.)?position_ids)")
_LAYER = {
    "attention.self.query": "self_attn.q_proj",
    "attention.self.key": "self_attn.k_proj",
    "attention.self.value": "self_attn.v_proj",
    "attention.output.dense": "self_attn.out_proj",
    "attention.output.LayerNorm": "norm_attn",
    "intermediate.dense": "ff.linear1",
    "output.dense": "ff.linear2",
    "output.LayerNorm": "norm_ff",
}
_EMBEDDINGS = {
    "word_embeddings": "word",
    "position_embeddings": "position",
    "token_type_embeddings": "token_type",
    "LayerNorm": "norm",
}


class BertEmbeddings(nn.Module):
    """Token + absolute position + segment embeddings, then LayerNorm and dropout.

    Shapes:
        input_ids, token_type_ids ``(B, L)`` -> ``(B, L, E)``.

    Example:
        >>> cfg = BertConfig(50, 8, 1, 2, 16)
        >>> BertEmbeddings(cfg)(torch.tensor([[2, 5, 3]])).shape
        torch.Size([1, 3, 8])
    """

    def __init__(
        self,
        config: BertConfig,
        *,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__()
        _check_config(config)
        factory = factory_kwargs(device, dtype)
        e = config.hidden_size
        self.word = nn.Embedding(config.vocab_size, e, padding_idx=config.pad_token_id, **factory)
        self.position = nn.Embedding(config.max_position_embeddings, e, **factory)
        self.token_type = nn.Embedding(config.type_vocab_size, e, **factory)
        self.norm = nn.LayerNorm(e, eps=config.layer_norm_eps, **factory)
        self.dropout = nn.Dropout(config.hidden_dropout_prob)

    def forward(self, input_ids: Tensor, token_type_ids: Tensor | None = None) -> Tensor:
        """Embed ``(B, L)`` ids (segment 0 when ``token_type_ids`` is None)."""
        positions = torch.arange(input_ids.shape[1], device=input_ids.device)
        x = self.word(input_ids) + self.position(positions)
        if token_type_ids is None:
            x = x + self.token_type.weight[0]
        else:
            x = x + self.token_type(token_type_ids)
        return self.dropout(self.norm(x))


class BertEncoder(nn.Module):
    """BERT without its pooler: embeddings and a post-norm :class:`TransformerEncoder`.

    Args:
        config: sizes, activation, LayerNorm epsilon and dropouts.
        attn_layer: builds every layer's self-attention (default
            :class:`~attnlab.nn.MultiHeadAttention`; e.g. with a ``pattern=``).
        device: where to create the parameters.
        dtype: their dtype.

    Shapes:
        input_ids ``(B, L)`` int, mask ``(B, L)`` bool (True = real token),
        token_type_ids ``(B, L)`` -> ``last_hidden (B, L, E)``; with ``return_hidden``,
        ``layers + 1`` hidden states ``(B, L, E)``; with ``need_weights``, one
        ``(B, H, L, L)`` map per layer.

    Example:
        >>> model = BertEncoder(BertConfig(50, 8, 2, 2, 16)).eval()
        >>> ids, mask = torch.tensor([[2, 7, 3, 0]]), torch.tensor([[True, True, True, False]])
        >>> out = model(ids, mask, need_weights=True, return_hidden=True)
        >>> out.last_hidden.shape, len(out.hidden_states), out.attentions[1].shape
        (torch.Size([1, 4, 8]), 3, torch.Size([1, 2, 4, 4]))
    """

    def __init__(
        self,
        config: BertConfig,
        *,
        attn_layer: AttentionFactory = MultiHeadAttention,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__()
        _check_config(config)
        self.config = config
        self.embeddings = BertEmbeddings(config, device=device, dtype=dtype)
        self.encoder = TransformerEncoder(
            config.num_hidden_layers,
            config.hidden_size,
            config.num_attention_heads,
            config.intermediate_size,
            dropout=config.hidden_dropout_prob,
            attention_dropout=config.attention_probs_dropout_prob,
            ff_dropout=0.0,  # BERT has no dropout between its two feed-forward linears
            activation=_ACTIVATION[config.hidden_act],
            norm_first=False,
            layer_norm_eps=config.layer_norm_eps,
            attn_layer=attn_layer,
            device=device,
            dtype=dtype,
        )

    def forward(
        self,
        input_ids: Tensor,
        mask: Tensor | None = None,
        token_type_ids: Tensor | None = None,
        *,
        need_weights: bool = False,
        return_hidden: bool = False,
    ) -> EncoderOutput:
        """Encode a padded batch; padding keys are masked out of every attention.

        Args:
            input_ids: ``(B, L)`` token ids, ``L`` at most ``max_position_embeddings``.
            mask: ``(B, L)`` bool, True = real token; None treats every position as real.
            token_type_ids: ``(B, L)`` segment ids; None means all segment 0.
            need_weights: return each layer's exact attention probabilities.
            return_hidden: return the embeddings and every layer's output.

        Returns:
            An :class:`~attnlab.nn.transformer.EncoderOutput`.
        """
        self._check(input_ids, mask, token_type_ids)
        x = self.embeddings(input_ids, token_type_ids)
        return self.encoder(x, mask=mask, need_weights=need_weights, return_hidden=return_hidden)

    def _check(self, ids: Tensor, mask: Tensor | None, types: Tensor | None) -> None:
        cfg = self.config
        for name, t, vocab in (
            ("input_ids", ids, cfg.vocab_size),
            ("token_type_ids", types, cfg.type_vocab_size),
        ):
            if t is None:
                continue
            check_ids(name, t, vocab, dims=2, layout="(B, L)")
            if t.shape != ids.shape:
                raise ValueError(f"{name} must be (B, L) like input_ids, got {tuple(t.shape)}")
        if ids.shape[1] > self.config.max_position_embeddings:
            raise ValueError(
                f"input has {ids.shape[1]} tokens; this model takes at most "
                f"{self.config.max_position_embeddings} (truncate when tokenising)"
            )
        if mask is not None and check_mask(mask, ndim_max=2, expected=_PADDING).shape != ids.shape:
            raise ValueError(
                f"mask must have input_ids' shape {tuple(ids.shape)}, got {tuple(mask.shape)}"
            )

    @classmethod
    def from_pretrained(
        cls,
        folder_or_name: str | Path = "all-minilm-l6-v2",
        *,
        data_dir: str | Path | None = None,
        dropout: float | None = None,
        attention_dropout: float | None = None,
        attn_layer: AttentionFactory = MultiHeadAttention,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> BertEncoder:
        """Build the encoder from a Hugging Face BERT checkpoint folder, in eval mode.

        Args:
            folder_or_name: a checkpoint folder, or a name for
                :func:`~attnlab.data.pretrained.locate_pretrained`.
            data_dir: data directory searched for a named checkpoint.
            dropout: replaces the config's ``hidden_dropout_prob`` (for fine-tuning).
            attention_dropout: replaces its ``attention_probs_dropout_prob``.
            attn_layer: the self-attention factory, with MultiHeadAttention's projections.
            device: where to put the model.
            dtype: its dtype (the checkpoint's tensors are cast).

        Returns:
            The encoder holding the checkpoint's weights.

        Raises:
            FileNotFoundError: The folder or its ``model.safetensors`` is missing.
            ValueError: The config is not a BERT, or tensors are missing or misshapen.

        Example:
            >>> BertEncoder.from_pretrained().config.num_hidden_layers  # doctest: +SKIP
            6
        """
        folder = locate_pretrained(folder_or_name, data_dir=data_dir)
        config = load_bert_config(folder)
        changes = {
            "hidden_dropout_prob": dropout,
            "attention_probs_dropout_prob": attention_dropout,
        }
        config = dataclasses.replace(config, **{k: v for k, v in changes.items() if v is not None})
        weights = folder / "model.safetensors"
        if not weights.is_file():
            raise FileNotFoundError(f"no model.safetensors in {folder} (only safetensors load)")
        model = cls(config, attn_layer=attn_layer, device=device, dtype=dtype)
        state = convert_hf_bert(load_file(str(weights)), config, source=str(weights))
        model.load_state_dict(state, strict=True)
        return model.eval()


def hf_bert_key_map(num_layers: int) -> dict[str, str]:
    """Hugging Face ``BertModel`` tensor names -> :class:`BertEncoder` parameter names.

    Args:
        num_layers: encoder layers.

    Returns:
        One entry per parameter, e.g. ``encoder.layer.0.attention.self.query.weight``
        -> ``encoder.layers.0.self_attn.q_proj.weight``.

    Example:
        >>> hf_bert_key_map(1)["encoder.layer.0.output.LayerNorm.bias"]
        'encoder.layers.0.norm_ff.bias'
    """
    names = {}
    for hf, ours in _EMBEDDINGS.items():
        for p in ("weight",) if hf.endswith("embeddings") else ("weight", "bias"):
            names[f"embeddings.{hf}.{p}"] = f"embeddings.{ours}.{p}"
    for i in range(num_layers):
        for hf, ours in _LAYER.items():
            for p in ("weight", "bias"):
                names[f"encoder.layer.{i}.{hf}.{p}"] = f"encoder.layers.{i}.{ours}.{p}"
    return names


def convert_hf_bert(
    tensors: dict[str, Tensor], config: BertConfig, *, source: str = "checkpoint"
) -> dict[str, Tensor]:
    """Rename a Hugging Face BERT state dict to :class:`BertEncoder`'s, checking shapes.

    Accepts an optional ``bert.`` prefix and old ``LayerNorm.gamma``/``beta`` names;
    drops ``pooler.*`` and ``position_ids`` silently and warns about other extra
    tensors outside the encoder (task heads such as ``cls.*``).

    Args:
        tensors: name -> tensor, as read from ``model.safetensors``.
        config: the checkpoint's config, which fixes every expected shape.
        source: names the file in error messages.

    Returns:
        The state dict for ``BertEncoder(config).load_state_dict``.

    Raises:
        ValueError: A tensor is missing (the HF names are listed), has the wrong shape,
            or is an embedding/encoder tensor the config does not describe.
    """
    if any(k.startswith("bert.") for k in tensors):
        tensors = {k.removeprefix("bert."): v for k, v in tensors.items()}
    tensors = {re.sub(r"LayerNorm\.gamma$", "LayerNorm.weight", k): v for k, v in tensors.items()}
    tensors = {re.sub(r"LayerNorm\.beta$", "LayerNorm.bias", k): v for k, v in tensors.items()}
    names = hf_bert_key_map(config.num_hidden_layers)
    missing = [k for k in names if k not in tensors]
    if missing:
        raise ValueError(f"{source} lacks {len(missing)} tensor(s): {', '.join(missing[:8])}")
    extra = [k for k in tensors if k not in names and not _IGNORED.fullmatch(k)]
    inside = [k for k in extra if k.startswith(("embeddings.", "encoder."))]
    if inside:
        raise ValueError(
            f"{source} has tensors config.json does not describe: {', '.join(inside[:5])}"
        )
    if extra:
        warnings.warn(
            f"{source}: ignoring {len(extra)} tensor(s) outside the encoder: "
            f"{', '.join(extra[:5])}",
            stacklevel=3,
        )
    expected = {
        k: tuple(v.shape) for k, v in BertEncoder(config, device="meta").state_dict().items()
    }
    state = {}
    for hf, ours in names.items():
        if tuple(tensors[hf].shape) != expected[ours]:
            raise ValueError(
                f"{source}: {hf} has shape {tuple(tensors[hf].shape)}, "
                f"expected {expected[ours]} from the config"
            )
        state[ours] = tensors[hf]
    return state


def _check_config(config: BertConfig) -> None:
    if not isinstance(config, BertConfig):
        raise TypeError(f"config must be a BertConfig, got {type(config).__name__}")
    for name in ("hidden_dropout_prob", "attention_probs_dropout_prob"):
        probability(name, getattr(config, name))


class PooledClassifier(nn.Module):
    """[BERT encoder ->] attention pooling over token states -> dropout -> linear classifier.

    With an ``encoder``, ``x`` holds token ids; without one, hidden states (a frozen
    encoder's, computed once). Columns that are padding in every row are dropped first.

    Shapes:
        x ``(B, L)`` ids or ``(B, L, E)`` states, mask ``(B, L)`` bool (True = token) ->
        logits ``(B, C)``; pooling weights ``(B, L)``.
    """

    def __init__(
        self,
        hidden_size: int,
        num_classes: int,
        *,
        encoder: BertEncoder | None = None,
        dropout: float = 0.1,
    ) -> None:
        super().__init__()
        if encoder is not None and not isinstance(encoder, BertEncoder):
            raise TypeError(f"encoder must be a BertEncoder or None, got {type(encoder).__name__}")
        hidden_size = as_positive("hidden_size", hidden_size)
        num_classes = as_positive("num_classes", num_classes)
        self.encoder = encoder
        self.pool = AttentionPooling(hidden_size)
        self.dropout = nn.Dropout(probability("dropout", dropout))
        self.out = nn.Linear(hidden_size, num_classes)

    def forward_with_weights(self, x: Tensor, mask: Tensor) -> tuple[Tensor, Tensor]:
        """Logits and the pooling weights."""
        check_tensor("x", x)
        if check_mask(mask, ndim_max=2, expected=_PADDING).shape != x.shape[:2]:
            raise ValueError(
                f"mask must be (B, L) = {tuple(x.shape[:2])}, True = token; got {describe(mask)}"
            )
        n = int(mask.sum(1).max())
        x, kept = x[:, :n], mask[:, :n]
        hidden = x if self.encoder is None else self.encoder(x, kept).last_hidden
        context, weights = self.pool(hidden, mask=kept, need_weights=True)
        return self.out(self.dropout(context)), nn.functional.pad(weights, (0, mask.shape[1] - n))

    def forward(self, x: Tensor, mask: Tensor) -> Tensor:
        """Logits ``(B, C)``."""
        return self.forward_with_weights(x, mask)[0]
