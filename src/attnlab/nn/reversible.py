r"""Reversible residual blocks (Gomez et al. 2017) and the Reformer's reversible encoder.

A reversible block splits the activations into two streams and couples them so that
its inputs can be recomputed exactly from its outputs:

.. math::
    y_1 = x_1 + F(x_2), \qquad y_2 = x_2 + G(y_1)
    \qquad\Longleftrightarrow\qquad
    x_2 = y_2 - G(y_1), \qquad x_1 = y_1 - F(x_2).

Training therefore needs no stored activations (Gomez et al. 2017, "The Reversible
Residual Network"; Kitaev et al. 2020, "Reformer: The Efficient Transformer"): the
forward pass of :class:`ReversibleSequence` keeps only the last block's outputs, and
its backward pass walks the blocks in reverse, rebuilding each block's inputs from its
outputs, re-running ``F`` and ``G`` with autograd on and back-propagating through that
one block. Activation memory stays that of a single block whatever the depth, for
the price of one more forward pass. Dropout draws are replayed exactly: the random
state before each ``F`` and ``G`` is saved and restored for the recomputation, as
:func:`torch.utils.checkpoint.checkpoint` does.

On CPU with glibc, freed buffers may stay resident under its adaptive malloc and
hide the saving from the process's RSS; ``MALLOC_MMAP_THRESHOLD_=131072`` avoids that
(see :mod:`attnlab.bench.reversible`).

In the Reformer encoder ``F`` is pre-norm self-attention and ``G`` a pre-norm
feed-forward; the input is duplicated, ``(x_1, x_2) = (x, x)``, and the two output
streams are averaged (the convention of the Reformer codebases, e.g. reformer-pytorch
and xFormers) before a final LayerNorm.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn
from torch.autograd.function import once_differentiable

from attnlab.nn._checks import (
    as_positive,
    check_heads,
    check_tensor,
    factory_kwargs,
    positive_float,
    probability,
)
from attnlab.nn._common import check_sequence
from attnlab.nn.feedforward import Activation, FeedForward
from attnlab.nn.multihead import MultiHeadAttention
from attnlab.nn.protocol import AttentionFactory, build_attention, call_attention

__all__ = ["ReversibleBlock", "ReversibleSequence", "ReversibleTransformerEncoder"]


class ReversibleBlock(nn.Module):
    r"""One reversible coupling, :math:`y_1 = x_1 + F(x_2)`, :math:`y_2 = x_2 + G(y_1)`.

    Args:
        f: ``F``, called as ``f(x2, *f_args)``; it must keep the shape of ``x2``.
        g: ``G``, called as ``g(y1)``; it must keep the shape of ``y1``.

    Shapes:
        x1, x2 ``(*, E)`` of one shape -> y1, y2 of the same shape.

    Example:
        >>> block = ReversibleBlock(nn.Linear(4, 4), nn.Linear(4, 4)).eval()
        >>> x1, x2 = torch.randn(2, 4), torch.randn(2, 4)
        >>> y1, y2 = block(x1, x2)
        >>> r1, r2 = block.inverse(y1, y2)
        >>> torch.allclose(r1, x1, atol=1e-6) and torch.allclose(r2, x2, atol=1e-6)
        True
    """

    def __init__(self, f: nn.Module, g: nn.Module) -> None:
        super().__init__()
        for name, sub in (("f", f), ("g", g)):
            if not isinstance(sub, nn.Module):
                raise TypeError(f"{name} must be an nn.Module, got {type(sub).__name__}")
        self.f, self.g = f, g

    def forward(self, x1: Tensor, x2: Tensor, *f_args: Any) -> tuple[Tensor, Tensor]:
        """``(x1, x2) -> (y1, y2)``; ``f_args`` go to ``f`` after ``x2``."""
        y1 = x1 + self.f(x2, *f_args)
        return y1, x2 + self.g(y1)

    def inverse(self, y1: Tensor, y2: Tensor, *f_args: Any) -> tuple[Tensor, Tensor]:
        """``(y1, y2) -> (x1, x2)``; exact up to rounding when ``f`` and ``g`` are deterministic."""
        x2 = y2 - self.g(y1)
        return y1 - self.f(x2, *f_args), x2


@dataclass
class _RngState:
    """The random state before one call of ``f`` or ``g``, to replay its dropout."""

    cpu: Tensor
    cuda: Tensor | None
    device: torch.device

    @classmethod
    def capture(cls, device: torch.device) -> _RngState:
        cuda = torch.cuda.get_rng_state(device) if device.type == "cuda" else None
        return cls(torch.get_rng_state(), cuda, device)

    @contextmanager
    def replay(self) -> Iterator[None]:
        # fork_rng puts the caller's state back afterwards, so replaying a block's draws
        # leaves the random stream of the surrounding program untouched.
        devices = [self.device] if self.cuda is not None else []
        with torch.random.fork_rng(devices=devices):
            torch.set_rng_state(self.cpu)
            if self.cuda is not None:
                torch.cuda.set_rng_state(self.cuda, self.device)
            yield


class _Plan:
    """What the backward pass needs besides tensors: the blocks and where things go."""

    def __init__(self, blocks: list[ReversibleBlock], params: list[nn.Parameter]) -> None:
        self.blocks = blocks
        self.index = {id(p): i for i, p in enumerate(params)}
        self.rng: list[tuple[_RngState, _RngState]] = []
        self.arg_is_tensor: list[bool] = []
        self.device_type = "cpu"
        self.autocast: tuple[bool, torch.dtype] = (False, torch.float32)


class _ReversibleFunction(torch.autograd.Function):
    """The whole stack as one autograd node that saves only its outputs (and masks)."""

    @staticmethod
    def forward(ctx: Any, x1: Tensor, x2: Tensor, plan: _Plan, n_args: int, *rest: Any) -> Any:
        f_args = rest[:n_args]
        plan.device_type = x1.device.type
        plan.autocast = (
            torch.is_autocast_enabled(plan.device_type),
            torch.get_autocast_dtype(plan.device_type),
        )
        plan.rng = []
        # autograd.Function.forward already runs without grad, so nothing is recorded.
        for block in plan.blocks:
            state_f = _RngState.capture(x1.device)
            x1 = x1 + block.f(x2, *f_args)
            state_g = _RngState.capture(x1.device)
            x2 = x2 + block.g(x1)
            plan.rng.append((state_f, state_g))
        plan.arg_is_tensor = [isinstance(a, Tensor) for a in f_args]
        ctx.plan, ctx.f_args = plan, [None if isinstance(a, Tensor) else a for a in f_args]
        ctx.save_for_backward(x1, x2, *(a for a in f_args if isinstance(a, Tensor)))
        return x1, x2

    @staticmethod
    @once_differentiable
    def backward(ctx: Any, dy1: Tensor, dy2: Tensor) -> tuple[Tensor | None, ...]:
        plan: _Plan = ctx.plan
        y1, y2, *tensor_args = ctx.saved_tensors
        supplied = iter(tensor_args)
        f_args = [next(supplied) if t else a for t, a in zip(plan.arg_is_tensor, ctx.f_args)]
        grads: list[Tensor | None] = [None] * len(plan.index)
        enabled, dtype = plan.autocast
        y1, y2 = y1.detach(), y2.detach()
        with torch.autocast(plan.device_type, dtype=dtype, enabled=enabled):
            for block, (state_f, state_g) in zip(reversed(plan.blocks), reversed(plan.rng)):
                # G first: y2 = x2 + G(y1), so dL/dy1 gains G's vector-Jacobian product.
                y1 = y1.requires_grad_(True)
                with torch.enable_grad(), state_g.replay():
                    gy1 = block.g(y1)
                vjp = _vjp(gy1, y1, block.g, dy2, plan, grads)
                dy1 = dy1 + vjp
                x2 = (y2 - gy1.detach()).requires_grad_(True)
                del gy1
                # Then F: y1 = x1 + F(x2); x1 only feeds y1, so dL/dx1 = dL/dy1.
                with torch.enable_grad(), state_f.replay():
                    fx2 = block.f(x2, *f_args)
                dx2 = dy2 + _vjp(fx2, x2, block.f, dy1, plan, grads)
                y1, y2 = (y1.detach() - fx2.detach()), x2.detach()
                del fx2
                dy2 = dx2
        return (dy1, dy2, None, None, *(None for _ in f_args), *grads)


def _vjp(
    out: Tensor,
    x: Tensor,
    module: nn.Module,
    grad_out: Tensor,
    plan: _Plan,
    grads: list[Tensor | None],
) -> Tensor:
    """``(d out / d x)^T grad_out``, adding the parameters' share into ``grads``."""
    params = [p for p in module.parameters() if id(p) in plan.index]
    found = torch.autograd.grad(out, (x, *params), grad_out, allow_unused=True)
    for p, g in zip(params, found[1:]):
        if g is not None:
            i = plan.index[id(p)]
            # A parameter shared between blocks collects its gradient from each of them.
            grads[i] = g if grads[i] is None else grads[i] + g
    return found[0] if found[0] is not None else torch.zeros_like(x)


class ReversibleSequence(nn.Module):
    """Reversible blocks run in sequence, trained without storing their activations.

    With ``reversible=True`` and autograd recording, the stack is a single autograd
    node that saves only its two outputs (and tensor ``f_args``); its backward
    rebuilds every block's inputs with :meth:`ReversibleBlock.inverse` and re-runs the
    block under autograd, replaying the saved random state. With ``reversible=False``
    the very same blocks run under ordinary autograd (the reference).

    Args:
        blocks: the :class:`ReversibleBlock` s, at least one.

    Shapes:
        x1, x2 ``(*, E)`` -> y1, y2 of the same shape.

    Example:
        >>> seq = ReversibleSequence(
        ...     ReversibleBlock(nn.Linear(4, 4), nn.Linear(4, 4)) for _ in range(3)
        ... )
        >>> x = torch.randn(2, 4, requires_grad=True)
        >>> y1, y2 = seq(x, x)
        >>> (y1 + y2).sum().backward()
        >>> x.grad.shape, seq[0].f.weight.grad.shape
        (torch.Size([2, 4]), torch.Size([4, 4]))
    """

    def __init__(self, blocks: Iterable[ReversibleBlock]) -> None:
        super().__init__()
        self.blocks = nn.ModuleList(blocks)
        if len(self.blocks) == 0:
            raise ValueError("ReversibleSequence needs at least one ReversibleBlock, got none")
        for i, block in enumerate(self.blocks):
            if not isinstance(block, ReversibleBlock):
                raise TypeError(f"block {i} must be a ReversibleBlock, got {type(block).__name__}")

    def __len__(self) -> int:
        return len(self.blocks)

    def __getitem__(self, i: int) -> ReversibleBlock:
        return self.blocks[i]  # type: ignore[return-value]

    def forward(
        self, x1: Tensor, x2: Tensor, *f_args: Any, reversible: bool = True
    ) -> tuple[Tensor, Tensor]:
        """Run every block.

        Args:
            x1: first stream.
            x2: second stream, of the shape of ``x1``.
            *f_args: extra inputs of every ``f`` (e.g. a mask); they are not
                differentiated, so none may require grad.
            reversible: the memory-saving backward (default) or ordinary autograd.

        Returns:
            ``(y1, y2)``, the last block's outputs.
        """
        check_tensor("x1", x1)
        check_tensor("x2", x2)
        for i, a in enumerate(f_args):
            if isinstance(a, Tensor) and a.requires_grad:
                raise ValueError(
                    f"f_args[{i}] requires grad, but extra inputs of f are not differentiated "
                    "by the reversible stack; pass it detached or make it a parameter of f"
                )
        if not (reversible and torch.is_grad_enabled()):
            # Without autograd recording nothing is stored anyway: run the plain loop.
            for block in self.blocks:
                x1, x2 = block(x1, x2, *f_args)
            return x1, x2
        params = [p for p in self.parameters() if p.requires_grad]
        plan = _Plan(list(self.blocks), params)  # type: ignore[arg-type]
        return _ReversibleFunction.apply(x1, x2, plan, len(f_args), *f_args, *params)

    def inverse(self, y1: Tensor, y2: Tensor, *f_args: Any) -> tuple[Tensor, Tensor]:
        """The stack's inputs from its outputs (exact with deterministic blocks: eval mode)."""
        for block in reversed(self.blocks):
            y1, y2 = block.inverse(y1, y2, *f_args)
        return y1, y2


class _AttentionSublayer(nn.Module):
    """``F``: pre-norm self-attention, ``dropout(Attn(LN(x)))``."""

    def __init__(
        self,
        d_model: int,
        num_heads: int,
        dropout: float,
        eps: float,
        attn_layer: AttentionFactory,
        **factory: Any,
    ) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(d_model, eps=eps, **factory)
        self.attn = build_attention(
            attn_layer, d_model, num_heads, dropout=dropout, bias=True, **factory
        )
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: Tensor, mask: Tensor | None = None) -> Tensor:
        return self.dropout(call_attention(self.attn, self.norm(x), mask=mask)[0])


class _FeedForwardSublayer(nn.Module):
    """``G``: pre-norm feed-forward, ``dropout(FF(LN(x)))``."""

    def __init__(
        self,
        d_model: int,
        ff_dim: int,
        dropout: float,
        activation: Activation,
        eps: float,
        **factory: Any,
    ) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(d_model, eps=eps, **factory)
        self.ff = FeedForward(d_model, ff_dim, activation=activation, dropout=dropout, **factory)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: Tensor) -> Tensor:
        return self.dropout(self.ff(self.norm(x)))


class ReversibleTransformerEncoder(nn.Module):
    r"""The Reformer's reversible Transformer encoder (Kitaev et al. 2020).

    Each layer is a :class:`ReversibleBlock` with ``F(x) = \mathrm{Attn}(\mathrm{LN}(x))``
    and ``G(x) = \mathrm{FF}(\mathrm{LN}(x))``:

    .. math::
        (x_1, x_2) = (x, x), \quad y_1 = x_1 + F(x_2), \quad y_2 = x_2 + G(y_1),
        \quad \mathrm{out} = \mathrm{LN}\!\left(\tfrac{y_1 + y_2}{2}\right)

    after the last layer; averaging the two streams is the Reformer codebases'
    convention. Training keeps the activations of one layer only (see
    :class:`ReversibleSequence`); ``reversible=False`` runs the same layers under
    ordinary autograd, which stores every layer's activations.

    Args:
        d_model: model width ``E``.
        num_heads: attention heads; ``E`` must divide by it.
        dim_feedforward: hidden size of the feed-forward.
        num_layers: reversible layers, at least 1.
        dropout: dropout on attention probabilities, inside the feed-forward and on
            both sublayers' outputs (replayed exactly in the backward recomputation).
        activation: feed-forward activation, ``"relu"``, ``"gelu"`` or ``"gelu_tanh"``.
        layer_norm_eps: epsilon of every LayerNorm.
        reversible: train with the memory-saving reversible backward (default) or
            ordinary autograd; an attribute, so it can be switched on a built model.
        attn_layer: builds each layer's self-attention, ``attn_layer(d_model,
            num_heads, *, dropout, bias, device, dtype)`` (see :mod:`attnlab.nn.protocol`);
            default :class:`~attnlab.nn.multihead.MultiHeadAttention`.
        device: device of the parameters.
        dtype: dtype of the parameters.

    Shapes:
        x ``(B, L, E)``; mask ``(B, L)`` key padding mask (or ``(B, L, L)``), boolean,
        True = may attend -> ``(B, L, E)``.

    Example:
        >>> enc = ReversibleTransformerEncoder(16, 4, 32, num_layers=2)
        >>> x = torch.randn(2, 5, 16, requires_grad=True)
        >>> out = enc(x, mask=torch.tensor([[True] * 5, [True] * 3 + [False] * 2]))
        >>> out.sum().backward()
        >>> out.shape, x.grad.shape
        (torch.Size([2, 5, 16]), torch.Size([2, 5, 16]))
    """

    def __init__(
        self,
        d_model: int,
        num_heads: int,
        dim_feedforward: int,
        num_layers: int,
        *,
        dropout: float = 0.0,
        activation: Activation = "gelu",
        layer_norm_eps: float = 1e-5,
        reversible: bool = True,
        attn_layer: AttentionFactory = MultiHeadAttention,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__()
        factory = factory_kwargs(device, dtype)
        num_layers = as_positive("num_layers", num_layers)
        d_model, num_heads = check_heads("d_model", d_model, num_heads)
        dropout = probability("dropout", dropout)
        layer_norm_eps = positive_float("layer_norm_eps", layer_norm_eps)
        self.d_model, self.reversible = d_model, reversible
        self.layers = ReversibleSequence(
            ReversibleBlock(
                _AttentionSublayer(
                    d_model, num_heads, dropout, layer_norm_eps, attn_layer, **factory
                ),
                _FeedForwardSublayer(
                    d_model, dim_feedforward, dropout, activation, layer_norm_eps, **factory
                ),
            )
            for _ in range(num_layers)
        )
        self.norm = nn.LayerNorm(d_model, eps=layer_norm_eps, **factory)

    def extra_repr(self) -> str:
        """Width, depth and path, shown by ``repr``."""
        return (
            f"d_model={self.d_model}, num_layers={len(self.layers)}, reversible={self.reversible}"
        )

    def forward(self, x: Tensor, mask: Tensor | None = None) -> Tensor:
        """Encode a batch of sequences.

        Args:
            x: ``(B, L, E)`` inputs.
            mask: boolean, True = may attend: ``(B, L)`` key padding mask or
                ``(B, L, L)``; None attends everywhere.

        Returns:
            ``(B, L, E)``, the averaged streams after the final LayerNorm.
        """
        check_sequence(self, "x", x, ("B", "L", "E"), self.d_model, prefix="batch-first ")
        y1, y2 = self.layers(x, x, mask, reversible=self.reversible)
        return self.norm((y1 + y2) / 2)

    def inverse(self, y1: Tensor, y2: Tensor, mask: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """The layers' input streams from their output streams (deterministic in eval mode)."""
        return self.layers.inverse(y1, y2, mask)
