r"""The Long Short-Term Memory-Network (LSTMN): an LSTM that attends over its own past.

From Cheng, Dong & Lapata 2016, "Long Short-Term Memory-Networks for Machine Reading"
(section 3.1). The LSTM keeps a hidden tape :math:`H = (h_0, \dots, h_{t-1})` and a memory
tape :math:`C = (c_0, \dots, c_{t-1})` instead of one state; before reading :math:`x_t`
it attends over the tapes (intra-attention) and uses the summary as its previous state:

.. math::
    a^t_i = v^\top \tanh(W_h h_i + W_x x_t + W_{\tilde h} \tilde h_{t-1}), \quad
    s^t = \mathrm{softmax}(a^t), \quad
    [\tilde h_t; \tilde c_t] = \sum_i s^t_i [h_i; c_i],

    [i_t; f_t; o_t; \hat c_t] = [\sigma; \sigma; \sigma; \tanh](W [\tilde h_t; x_t] + b),
    \quad c_t = f_t \odot \tilde c_t + i_t \odot \hat c_t, \quad
    h_t = o_t \odot \tanh(c_t).

The score is additive attention with the query :math:`[x_t; \tilde h_{t-1}]` over the keys
:math:`h_i` and the values :math:`[h_i; c_i]`, run by the injected attention module
(default :class:`~attnlab.nn.AdditiveAttention`) through the shared core. The tapes start
with :math:`h_0 = c_0 = 0`, so the first word attends over that start slot alone.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from attnlab.functional import AttentionOutput
from attnlab.nn._checks import as_positive, check_tensor, factory_kwargs
from attnlab.nn.additive import AdditiveAttention

__all__ = ["LSTMN"]


class LSTMN(nn.Module):
    """Cheng et al. 2016's LSTMN over a batch of sequences (see the module docstring).

    Args:
        input_size: ``D``, the size of each ``x_t``.
        hidden_size: ``H``, the LSTM size.
        attention_size: hidden width of the default additive score (default ``H``).
        attention: the intra-attention, called as ``attention(query, keys, values,
            need_weights=, keys_prepared=)`` with ``query_size = D + H`` and
            ``key_size = H`` (any :class:`~attnlab.nn.SourceAttention`); None builds
            :class:`~attnlab.nn.AdditiveAttention` (the paper's).
        device: where to create the parameters.
        dtype: their dtype.

    Shapes:
        x ``(B, T, D)``, lengths ``(B,)`` (optional) -> ``AttentionOutput(outputs (B, T, H),
        weights (B, T, T + 1) or None)``: row ``t`` of the weights is step ``t``'s
        attention over the tape, column 0 the start slot and column ``j + 1`` the state
        after word ``j``; columns after ``t`` are 0. Outputs past a sequence's length are
        0 (they never reach an earlier step: the tape only looks back).

    Example:
        >>> lstmn = LSTMN(5, 8)
        >>> out, weights = lstmn(torch.randn(2, 4, 5), need_weights=True)
        >>> out.shape, weights.shape
        (torch.Size([2, 4, 8]), torch.Size([2, 4, 5]))
        >>> weights[0, 0].tolist()  # the first word can only look at the start
        [1.0, 0.0, 0.0, 0.0, 0.0]
    """

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        *,
        attention_size: int | None = None,
        attention: nn.Module | None = None,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__()
        factory = factory_kwargs(device, dtype)
        self.input_size = d = as_positive("input_size", input_size)
        self.hidden_size = h = as_positive("hidden_size", hidden_size)
        if attention is None:
            size = h if attention_size is None else as_positive("attention_size", attention_size)
            attention = AdditiveAttention(d + h, h, size, **factory)
        elif not isinstance(attention, nn.Module):
            raise TypeError(f"attention must be an nn.Module or None, got {type(attention)}")
        for side, size in (("query_size", d + h), ("key_size", h)):
            got = getattr(attention, side, None)
            if isinstance(got, int) and got != size:
                raise ValueError(
                    f"the attention's {side} is {got} but an LSTMN of input_size {d} and "
                    f"hidden_size {h} needs {size} (query [x_t; h~_t-1], keys h_i)"
                )
        self.attention = attention
        self.gates = nn.Linear(h + d, 4 * h, **factory)

    def _check(self, x: object, lengths: object) -> tuple[Tensor, Tensor | None]:
        x = check_tensor("x", x)
        if x.dim() != 3 or x.shape[-1] != self.input_size:
            raise ValueError(
                f"x must be (B, T, {self.input_size}) (batch, steps, input_size); got "
                f"{tuple(x.shape)}"
            )
        if not x.is_floating_point():
            raise TypeError(f"x must be a float tensor, got {x.dtype}; embed token ids first")
        if lengths is None:
            return x, None
        lengths = check_tensor("lengths", lengths)
        if lengths.is_floating_point() or lengths.dtype == torch.bool:
            raise TypeError(f"lengths must be an integer tensor (B,), got {lengths.dtype}")
        if lengths.shape != x.shape[:1]:
            raise ValueError(f"lengths must be (B,) = ({x.shape[0]},), got {tuple(lengths.shape)}")
        if lengths.numel() and (lengths.min() < 1 or lengths.max() > x.shape[1]):
            raise ValueError(
                f"lengths must lie in 1..{x.shape[1]} (the steps of x), got "
                f"{lengths.min().item()}..{lengths.max().item()}"
            )
        return x, lengths.to(x.device)

    def forward(
        self, x: Tensor, lengths: Tensor | None = None, *, need_weights: bool = False
    ) -> AttentionOutput:
        """Read ``x`` step by step; the hidden state of every step (and the weights)."""
        x, lengths = self._check(x, lengths)
        b, steps, h = x.shape[0], x.shape[1], self.hidden_size
        start = x.new_zeros(b, 1, h)
        prepare = getattr(self.attention, "prepare_keys", None)

        def key(states: Tensor) -> Tensor:  # each state is projected once, when written
            return prepare(states) if prepare is not None else states

        keys, hidden, memory = [key(start)], [start], [start]
        summary = start[:, 0]  # h~_{t-1}; h~_0 = h_0 = 0
        outputs, rows = [], []
        for t in range(steps):
            x_t = x[:, t]
            out = self.attention(
                torch.cat([x_t, summary], -1),
                torch.cat(keys, 1),
                torch.cat([torch.cat(hidden, 1), torch.cat(memory, 1)], -1),
                need_weights=need_weights,
                keys_prepared=prepare is not None,
            )
            summary, carried = out.context.split(h, -1)
            i, f, o, g = self.gates(torch.cat([summary, x_t], -1)).chunk(4, -1)
            c = torch.sigmoid(f) * carried + torch.sigmoid(i) * torch.tanh(g)
            state = torch.sigmoid(o) * torch.tanh(c)
            keys.append(key(state[:, None]))
            hidden.append(state[:, None])
            memory.append(c[:, None])
            outputs.append(state)
            if need_weights:
                assert out.weights is not None
                rows.append(F.pad(out.weights, (0, steps - t)))
        if not steps:
            empty = x.new_zeros(b, 0, h)
            return AttentionOutput(empty, x.new_zeros(b, 0, 1) if need_weights else None)
        result = torch.stack(outputs, 1)
        weights = torch.stack(rows, 1) if need_weights else None
        if lengths is not None:
            real = torch.arange(steps, device=x.device) < lengths[:, None]  # (B, T)
            result = result * real[..., None]
            weights = None if weights is None else weights * real[..., None]
        return AttentionOutput(result, weights)

    def extra_repr(self) -> str:
        """Sizes shown by ``repr``."""
        return f"input_size={self.input_size}, hidden_size={self.hidden_size}"
