"""Collect attention weights from chosen layers of a model, from the outside.

:func:`capture` hooks the attention modules of a model (every attnlab module that
takes ``need_weights``, and ``torch.nn.MultiheadAttention``), asks the chosen ones for
their exact weights while the context is open, and hands the caller what it would
have got anyway: a layer whose caller did not ask for weights still returns None, so
the model runs unchanged. Layers that were not chosen keep their fast engines; nothing
is stored on the modules, and the hooks are removed on exit.
"""

from __future__ import annotations

import fnmatch
import inspect
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field

from torch import Tensor, nn

from attnlab.functional import AttentionOutput

__all__ = ["Captured", "attention_modules", "capture"]

# The keyword that averages heads, per module family; forced off while capturing so the
# per-head weights are recorded, then applied for the caller if it asked for it.
_AVERAGE_KEYWORDS = ("average_weights", "average_attn_weights")


def _takes_weights(module: nn.Module) -> bool:
    if isinstance(module, nn.MultiheadAttention):
        return True
    if not type(module).__module__.startswith("attnlab."):
        return False
    try:
        return "need_weights" in inspect.signature(module.forward).parameters
    except (TypeError, ValueError):
        return False


def attention_modules(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """The attention modules of ``model`` in registration order: ``(name, module)``.

    Only leaves count: a Transformer layer forwards ``need_weights`` to its attention,
    so the attention module is listed, not the layer.

    Example:
        >>> from attnlab.nn.transformer import TransformerEncoder
        >>> [name for name, _ in attention_modules(TransformerEncoder(2, 8, 2, 16))]
        ['layers.0.self_attn', 'layers.1.self_attn']
    """
    found = [(name or "model", m) for name, m in model.named_modules() if _takes_weights(m)]
    ids = {id(m) for _, m in found}
    return [(n, m) for n, m in found if not any(id(s) in ids for s in m.modules() if s is not m)]


@dataclass
class Captured:
    """Weights recorded while a :func:`capture` context was open.

    Attributes:
        names: the captured modules' names, in model order.
        calls: name -> the weights of every call (detached), e.g. one per decoding step.
    """

    names: list[str]
    calls: dict[str, list[Tensor]] = field(default_factory=dict)

    def __getitem__(self, key: str | int) -> Tensor:
        """The last call's weights of a module, by name or by position in ``names``."""
        name = self.names[key] if isinstance(key, int) else key
        if not self.calls.get(name):
            raise KeyError(f"{name!r} recorded no weights; it did not run inside the context")
        return self.calls[name][-1]

    @property
    def attentions(self) -> tuple[Tensor, ...]:
        """The last call of every module that ran, in model order (input of rollout)."""
        return tuple(self.calls[n][-1] for n in self.names if self.calls.get(n))

    def clear(self) -> None:
        """Forget what was recorded (the hooks stay while the context is open)."""
        self.calls.clear()


def _select(
    found: list[tuple[str, nn.Module]], layers: Sequence[int | str] | str | int | None
) -> list[tuple[str, nn.Module]]:
    if layers is None:
        return found
    wanted = [layers] if isinstance(layers, (str, int)) else list(layers)
    names = [name for name, _ in found]
    chosen: set[str] = set()
    for item in wanted:
        if isinstance(item, int):
            if not -len(found) <= item < len(found):
                raise IndexError(
                    f"layer {item} is out of range: the model has {len(found)} attention "
                    f"modules ({', '.join(names[:4])}{', ...' if len(names) > 4 else ''})"
                )
            chosen.add(names[item])
        else:
            matched = fnmatch.filter(names, item)
            if not matched:
                raise KeyError(
                    f"no attention module matches {item!r}; the model has: {', '.join(names)}"
                )
            chosen.update(matched)
    return [(name, m) for name, m in found if name in chosen]


@contextmanager
def capture(
    model: nn.Module, layers: Sequence[int | str] | str | int | None = None
) -> Iterator[Captured]:
    """Record the exact attention weights of chosen layers while the context is open.

    Args:
        model: any module containing attnlab attention modules or
            ``torch.nn.MultiheadAttention``.
        layers: which attention modules: None (all), indices into
            :func:`attention_modules` (negative allowed), or glob patterns on their
            names (``"encoder.layers.*.self_attn"``).

    Yields:
        A :class:`Captured`, filled as the model runs. Multi-head modules record
        ``(B, H, Lq, Lk)`` pre-dropout probabilities (torch's own module returns its
        weights after dropout while training: capture it in eval mode).

    Raises:
        ValueError: the model has no attention module.

    Example:
        >>> import torch
        >>> from attnlab.nn.transformer import TransformerEncoder
        >>> enc = TransformerEncoder(2, 8, 2, 16).eval()
        >>> with capture(enc, layers=[-1]) as seen:
        ...     out = enc(torch.randn(1, 5, 8))
        >>> seen.names, seen[0].shape, out.attentions is None
        (['layers.1.self_attn'], torch.Size([1, 2, 5, 5]), True)
    """
    found = attention_modules(model)
    if not found:
        raise ValueError(
            f"{type(model).__name__} has no attention module (attnlab attention or "
            "torch.nn.MultiheadAttention) to capture"
        )
    chosen = _select(found, layers)
    seen = Captured([name for name, _ in chosen])
    handles = []
    for name, module in chosen:
        handles += _hook(module, name, seen)
    try:
        yield seen
    finally:
        for handle in handles:
            handle.remove()


def _hook(module: nn.Module, name: str, seen: Captured) -> list:
    signature = inspect.signature(module.forward)
    average_key = next((k for k in _AVERAGE_KEYWORDS if k in signature.parameters), None)
    pending: list[tuple[bool, bool]] = []

    def before(mod: nn.Module, args: tuple, kwargs: dict) -> tuple[tuple, dict]:
        bound = signature.bind(*args, **kwargs)
        bound.apply_defaults()
        arguments = bound.arguments
        average = bool(arguments[average_key]) if average_key else False
        pending.append((bool(arguments["need_weights"]), average))
        arguments["need_weights"] = True
        if average_key:
            arguments[average_key] = False
        return bound.args, bound.kwargs

    def after(mod: nn.Module, args: tuple, kwargs: dict, output: tuple) -> tuple:
        wanted, average = pending.pop()
        weights = output[1]
        if weights is not None:
            seen.calls.setdefault(name, []).append(weights.detach())
        if not wanted:
            weights = None
        elif average and weights is not None:
            weights = weights.mean(dim=1)
        if isinstance(output, AttentionOutput):  # every attnlab module; extras kept
            return output.replace(weights=weights)
        return (output[0], weights, *output[2:])  # torch.nn.MultiheadAttention

    return [
        module.register_forward_pre_hook(before, with_kwargs=True),
        module.register_forward_hook(after, with_kwargs=True),
    ]
