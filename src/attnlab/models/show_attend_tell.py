r"""Show, Attend and Tell (Xu et al. 2015): an LSTM captioner that attends over a CNN's grid.

From "Show, Attend and Tell: Neural Image Caption Generation with Visual Attention".
A CNN maps the image to ``L = h * w`` annotation vectors :math:`a_i \in R^D`; an LSTM
writes the caption one word at a time, and before each word its previous state
:math:`h_{t-1}` attends over the grid:

.. math::
    \alpha_t = \mathrm{attention}(a, h_{t-1}), \quad
    \hat z_t = \beta_t \sum_i \alpha_{ti} a_i, \quad
    \beta_t = \sigma(f_\beta(h_{t-1})),

    h_t, c_t = \mathrm{LSTM}([E y_{t-1}; \hat z_t], (h_{t-1}, c_{t-1})), \quad
    p(y_t) \propto \exp(L_o(E y_{t-1} + L_h h_t + L_z \hat z_t)),

with :math:`h_0 = \tanh(f_{init,h}(\bar a))`, :math:`c_0 = f_{init,c}(\bar a)` from the
mean annotation. The attention is injected: soft (:class:`~attnlab.nn.AdditiveAttention`,
the default), hard (:class:`~attnlab.nn.HardAttention`, sampled location trained by
REINFORCE) or none (:class:`~attnlab.nn.MeanAttention`, the mean-pooled grid); the
names people type resolve through :data:`CAPTION_ATTENTIONS`. Captions are decoded with
:func:`~attnlab.models.search.beam_search` through :meth:`ShowAttendTell.searchable`, or
with :func:`decode_captions`, which also folds each word's attention back into the grid.
"""

from __future__ import annotations

from dataclasses import replace

import torch
from torch import Tensor, nn

from attnlab.functional.hard import reinforce_loss
from attnlab.models._caption_decoder import (
    CAPTION_ATTENTIONS,
    CaptionLoss,
    CaptionMemory,
    CaptionState,
    EncodedImages,
    build_encoder,
    check_attention,
    coverage_penalty,
    grid_positions,
    image_size_of,
    soft_attention,
)
from attnlab.models._translation import StepOutput, sequence_loss
from attnlab.models.search import Hypothesis, beam_search
from attnlab.nn import HardAttention, MovingAverageBaseline
from attnlab.nn._checks import (
    as_positive,
    check_ids,
    check_token_id,
    factory_kwargs,
    probability,
    real,
)
from attnlab.vision._checks import check_image

__all__ = [
    "CAPTION_ATTENTIONS",
    "CaptionLoss",
    "ShowAttendTell",
    "coverage_penalty",
    "decode_captions",
]


class ShowAttendTell(nn.Module):
    """Xu et al. 2015's captioner around the attention it is given (see the module docstring).

    Args:
        vocab_size: ``V``, the caption vocabulary (``pad_id``, BOS and EOS included).
        in_channels: image channels.
        image_size: ``(H, W)`` (or one int) that every image must have; None accepts any.
        encoder: any module mapping ``(B, in_channels, H, W)`` to ``(B, feature_size, h, w)``;
            None: the stages of a :class:`~attnlab.models.ConvNet` of ``widths``.
        feature_size: ``D`` of the injected ``encoder`` (the default's is ``widths[-1]``).
        widths: the default trunk's stage widths, ``(32, 64, 128)`` if None; a 2x2 pool
            between stages gives ``h = H / 2 ** (len(widths) - 1)``.
        attention: the module ``attention(h_prev, keys, values, need_weights=,
            keys_prepared=True)`` with ``query_size = hidden_size`` and ``key_size =
            feature_size`` (any :class:`~attnlab.nn.SourceAttention`, keys prepared once
            per image); None: :class:`~attnlab.nn.AdditiveAttention`, the paper's soft
            attention. See :data:`CAPTION_ATTENTIONS`.
        baseline: REINFORCE baseline of a sampling attention; None builds a
            :class:`~attnlab.nn.MovingAverageBaseline` for a ``HardAttention`` whose
            estimator is ``"reinforce"`` (the only case that needs one).
        embedding_dim: ``m``, the word embedding and deep output size.
        hidden_size: ``n``, the LSTM size.
        attention_size: the tanh layer of the default attention.
        dropout: on the embeddings and before ``L_o``.
        doubly_stochastic: ``lambda`` of the penalty (the paper uses 1).
        reward_weight: ``lambda_r`` of the REINFORCE term.
        entropy_weight: ``lambda_e``, its entropy bonus.
        pad_id: padding id of the captions.

    Shapes:
        images ``(B, in_channels, H, W)``, tgt_in ``(B, T)`` -> logits ``(B, T, V)``,
        weights ``(B, T, L)`` over the grid in row-major order (``L = h * w``).

    Example:
        >>> model = ShowAttendTell(9, in_channels=1, widths=(4, 6), embedding_dim=5,
        ...                        hidden_size=7, attention_size=3)
        >>> images, tgt = torch.randn(2, 1, 8, 12), torch.randint(1, 9, (2, 4))
        >>> out = model(images, tgt, need_weights=True)
        >>> out.logits.shape, out.weights.shape
        (torch.Size([2, 4, 9]), torch.Size([2, 4, 24]))
        >>> terms = model.loss_terms(images, tgt[:, :-1], tgt[:, 1:])
        >>> terms.total.backward()
    """

    def __init__(
        self,
        vocab_size: int,
        *,
        in_channels: int = 3,
        image_size: int | tuple[int, int] | None = None,
        encoder: nn.Module | None = None,
        feature_size: int | None = None,
        widths: tuple[int, ...] | None = None,
        attention: nn.Module | None = None,
        baseline: MovingAverageBaseline | None = None,
        embedding_dim: int = 64,
        hidden_size: int = 128,
        attention_size: int = 64,
        dropout: float = 0.0,
        doubly_stochastic: float = 1.0,
        reward_weight: float = 1.0,
        entropy_weight: float = 0.01,
        pad_id: int = 0,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__()
        factory = factory_kwargs(device, dtype)
        self.tgt_vocab = vocab = as_positive("vocab_size", vocab_size)
        self.in_channels = as_positive("in_channels", in_channels)
        self.image_size = image_size_of(image_size)
        self.pad_id = check_token_id("pad_id", pad_id, vocab)
        self.hidden_size = hidden = as_positive("hidden_size", hidden_size)
        m = as_positive("embedding_dim", embedding_dim)
        self.doubly_stochastic = real("doubly_stochastic", doubly_stochastic)
        self.reward_weight = real("reward_weight", reward_weight)
        self.entropy_weight = real("entropy_weight", entropy_weight)
        self.encoder, self.feature_size, self.min_size = build_encoder(
            encoder, feature_size, widths, self.in_channels, factory
        )
        d = self.feature_size
        if attention is None:
            attention = soft_attention(
                hidden, d, as_positive("attention_size", attention_size), **factory
            )
        check_attention(attention, hidden, d)
        self.attention = attention
        if baseline is not None and not isinstance(baseline, nn.Module):
            raise TypeError(f"baseline must be an nn.Module or None, got {type(baseline).__name__}")
        if baseline is None and isinstance(attention, HardAttention):
            baseline = MovingAverageBaseline() if attention.estimator == "reinforce" else None
        self.baseline = baseline
        self.embed = nn.Embedding(vocab, m, padding_idx=self.pad_id, **factory)
        self.init_h = nn.Linear(d, hidden, **factory)
        self.init_c = nn.Linear(d, hidden, **factory)
        self.f_beta = nn.Linear(hidden, 1, **factory)
        self.lstm = nn.LSTMCell(m + d, hidden, **factory)
        self.out_h = nn.Linear(hidden, m, **factory)  # L_h
        self.out_z = nn.Linear(d, m, bias=False, **factory)  # L_z
        self.out = nn.Linear(m, vocab, **factory)  # L_o
        self.dropout = nn.Dropout(probability("dropout", dropout))

    # -- encoder ---------------------------------------------------------------------------
    def encode(self, images: Tensor) -> CaptionMemory:
        """Annotation grid, prepared keys and mean annotation of an image batch."""
        x = check_image(images, self.in_channels, "images", owner=self)
        h, w = x.shape[-2:]
        if self.image_size is not None and (h, w) != self.image_size:
            want = "x".join(map(str, self.image_size))
            raise ValueError(
                f"images must be {want} pixels (the model's image_size); got {h}x{w}: "
                f"resize them or build the model with image_size=({h}, {w})"
            )
        if min(h, w) < self.min_size:
            raise ValueError(
                f"images of {h}x{w} are too small for the encoder's pooling; give at least "
                f"{self.min_size}x{self.min_size} pixels"
            )
        features = self.encoder(x)
        if (
            not isinstance(features, Tensor)
            or features.dim() != 4
            or features.shape[1] != self.feature_size
        ):
            got = tuple(features.shape) if isinstance(features, Tensor) else type(features)
            raise ValueError(
                f"the encoder must map images to (B, {self.feature_size}, h, w) grids "
                f"(feature_size); got {got}"
            )
        values = features.flatten(2).transpose(1, 2)  # (B, L, D), cells in row-major order
        prepare = getattr(self.attention, "prepare_keys", None)
        keys = prepare(values) if prepare is not None else values  # once per image
        return CaptionMemory(values, keys, values.mean(1), (features.shape[2], features.shape[3]))

    def initial_state(self, memory: CaptionMemory) -> CaptionState:
        """``h_0 = tanh(f_init,h(mean a))``, ``c_0 = f_init,c(mean a)``."""
        return CaptionState(torch.tanh(self.init_h(memory.mean)), self.init_c(memory.mean))

    # -- decoder ---------------------------------------------------------------------------
    def step(
        self,
        memory: CaptionMemory,
        tokens: Tensor,
        state: CaptionState,
        feed: Tensor | None = None,
        t: int = 0,
        *,
        need_weights: bool = False,
    ) -> tuple[StepOutput, CaptionState, None]:
        """One word for tokens ``(B,)`` (``y_{t-1}``); ``feed`` and ``t`` are unused.

        Returns the step's :class:`StepOutput` (logits ``(B, 1, V)``, weights ``(B, 1, L)``
        when asked, hard attention's ``log_prob`` and ``entropy`` ``(B, 1)``), the new
        state and None (no input feeding), as :func:`~attnlab.models.search.beam_search`
        expects.
        """
        embedded = self.dropout(self.embed(tokens))
        out = self.attention(
            state.h,
            memory.keys,
            memory.values,
            need_weights=need_weights,
            keys_prepared=True,
        )
        z = torch.sigmoid(self.f_beta(state.h)) * out.context  # the gate beta_t
        h, c = self.lstm(torch.cat([embedded, z], dim=-1), (state.h, state.c))
        logits = self.out(self.dropout(embedded + self.out_h(h) + self.out_z(z)))
        log_prob, entropy = out.get("log_prob"), out.get("entropy")
        step = StepOutput(
            logits.unsqueeze(1),
            None if out.weights is None else out.weights.unsqueeze(1),
            None if log_prob is None else log_prob.unsqueeze(1),
            None if entropy is None else entropy.unsqueeze(1),
        )
        return step, CaptionState(h, c), None

    def _decode(self, memory: CaptionMemory, tgt_in: Tensor, need_weights: bool) -> StepOutput:
        state, steps = self.initial_state(memory), []
        for t in range(tgt_in.shape[1]):
            out, state, _ = self.step(memory, tgt_in[:, t], state, need_weights=need_weights)
            steps.append(out)
        return StepOutput(
            *(_cat([getattr(s, f) for s in steps]) for f in StepOutput.__annotations__)
        )

    def _check_target(self, name: str, ids: Tensor, batch: int) -> None:
        check_ids(name, ids, self.tgt_vocab, dims=2, layout="(B, T)")
        if ids.shape[0] != batch:
            raise ValueError(f"{name} has {ids.shape[0]} rows but images has {batch}; pair them")

    def forward(self, images: Tensor, tgt_in: Tensor, *, need_weights: bool = False) -> StepOutput:
        """Teacher-forced decoding of ``tgt_in`` (BOS + caption without its last token)."""
        memory = self.encode(images)
        self._check_target("tgt_in", tgt_in, memory.values.shape[0])
        return self._decode(memory, tgt_in, need_weights)

    # -- training --------------------------------------------------------------------------
    def loss_terms(
        self, images: Tensor, tgt_in: Tensor, tgt_out: Tensor, *, label_smoothing: float = 0.0
    ) -> CaptionLoss:
        r"""The training loss and its terms.

        Cross-entropy per real token, plus ``lambda`` times the mean over images of
        :func:`coverage_penalty` (padded steps excluded), plus, for an attention that
        samples (with a ``baseline``, in training mode), the REINFORCE term of the paper's
        eq. 12: reward :math:`r = \log p(y | a, s)` of the whole caption, since a sampled
        location feeds the LSTM and so affects every later word; the baseline is its
        moving average, and ``entropy_weight`` weighs the entropy bonus.
        """
        memory = self.encode(images)
        self._check_target("tgt_in", tgt_in, memory.values.shape[0])
        self._check_target("tgt_out", tgt_out, memory.values.shape[0])
        out = self._decode(memory, tgt_in, need_weights=True)
        ce, nll, count, token_ll = sequence_loss(
            out.logits, tgt_out, pad_id=self.pad_id, label_smoothing=label_smoothing
        )
        real_steps = tgt_out != self.pad_id
        weights = out.weights
        assert weights is not None
        penalty = self.doubly_stochastic * coverage_penalty(weights, real_steps).mean()
        reinforce = ce.new_zeros(())
        if self.baseline is not None and self.training and out.log_prob is not None:
            sentence = (token_ll.detach() * real_steps).sum(-1)  # log p(y | a, s) per image
            if not bool(self.baseline.started):  # first batch: its own mean, not zero
                self.baseline.update(sentence)
            reinforce = reinforce_loss(
                out.log_prob,
                sentence.unsqueeze(-1).expand_as(token_ll),
                self.baseline.value.clone(),
                out.entropy,
                real_steps,
                reward_weight=self.reward_weight,
                entropy_weight=self.entropy_weight,
            )
            self.baseline.update(sentence)
        with torch.no_grad():
            w = weights.float()
            entropy = -(w * w.clamp(min=torch.finfo(w.dtype).tiny).log()).sum(-1)
            entropy = (entropy * real_steps).sum() / count.clamp(min=1)
        return CaptionLoss(ce + penalty + reinforce, ce, penalty, reinforce, entropy, nll, count)

    def loss(
        self, images: Tensor, tgt_in: Tensor, tgt_out: Tensor, *, label_smoothing: float = 0.0
    ) -> tuple[Tensor, Tensor, Tensor]:
        """``(total loss, summed NLL, real-token count)``, as :meth:`Seq2Seq.loss` returns."""
        terms = self.loss_terms(images, tgt_in, tgt_out, label_smoothing=label_smoothing)
        return terms.total, terms.nll, terms.tokens

    # -- decoding --------------------------------------------------------------------------
    def searchable(self, images: Tensor) -> tuple[EncodedImages, Tensor, Tensor]:
        """``(model, src, src_lengths)`` to pass to :func:`~attnlab.models.search.beam_search`.

        The images are encoded once, in evaluation mode; ``src`` is the grid positions
        ``(B, L)`` so each hypothesis's weights have one column per cell (row-major).
        """
        was_training = self.training
        self.eval()
        try:
            with torch.no_grad():
                memory = self.encode(images)
        finally:
            self.train(was_training)
        return EncodedImages(self, memory), *grid_positions(memory)

    def extra_repr(self) -> str:
        """Sizes and loss weights shown by ``repr``."""
        return (
            f"vocab_size={self.tgt_vocab}, feature_size={self.feature_size}, "
            f"hidden_size={self.hidden_size}, doubly_stochastic={self.doubly_stochastic}"
        )


def decode_captions(
    model: ShowAttendTell,
    images: Tensor,
    *,
    bos_id: int,
    eos_id: int,
    beam_size: int = 3,
    max_len: int = 20,
    length_penalty: float = 1.0,
    need_weights: bool = True,
) -> list[Hypothesis]:
    """Caption images with beam search (``beam_size=1``: greedy); the attention per word.

    Returns one :class:`~attnlab.models.search.Hypothesis` per image whose ``weights`` are
    ``(n, h, w)``, one row per emitted token (``n = len(tokens) + 1`` with the final EOS,
    ``len(tokens)`` when ``max_len`` stopped it): row ``t`` is the attention over the grid
    while the ``t``-th word was chosen, the figure of the paper.

    Example:
        >>> model = ShowAttendTell(6, in_channels=1, widths=(4, 5), hidden_size=6)
        >>> hyps = decode_captions(model, torch.randn(2, 1, 6, 10), bos_id=1, eos_id=2,
        ...                        beam_size=2, max_len=4)
        >>> len(hyps), hyps[0].weights.shape[1:]
        (2, torch.Size([3, 5]))
    """
    beam_size = as_positive("beam_size", beam_size)  # before encoding
    source, src, src_lengths = model.searchable(images)
    hyps = beam_search(
        source,
        src,
        src_lengths,
        bos_id=bos_id,
        eos_id=eos_id,
        beam_size=beam_size,
        max_len=max_len,
        length_penalty=length_penalty,
        need_weights=need_weights,
    )
    h, w = source.memory.grid
    return [
        hyp if hyp.weights is None else replace(hyp, weights=hyp.weights.view(-1, h, w))
        for hyp in hyps
    ]


def _cat(parts: list[Tensor | None]) -> Tensor | None:
    return None if parts[0] is None else torch.cat(parts, dim=1)
