r"""Vision Transformer (Dosovitskiy et al., ICLR 2021) on attnlab's Transformer encoder.

"An Image is Worth 16x16 Words", eqs. 1-4: patches embedded linearly
(:class:`~attnlab.vision.patches.PatchEmbed`), a learned class token prepended,
position embeddings added, then pre-norm encoder layers with GELU feed-forwards:

.. math::
    z_0 = [x_{class};\ x_p^1 E;\ \dots;\ x_p^N E] + E_{pos}, \quad
    z'_l = \mathrm{MSA}(\mathrm{LN}(z_{l-1})) + z_{l-1}, \quad
    z_l = \mathrm{MLP}(\mathrm{LN}(z'_l)) + z'_l, \quad
    y = W_{head}\,\mathrm{LN}(\mathrm{pool}(z_L))

``pool`` takes the class token (the paper) or the mean of the patch tokens (the
paper's "global average pooling" variant; timm's ``global_pool='avg'``, which also
keeps the class token in the sequence and normalises after pooling). Positions are
learned (the paper) or the fixed 2-D sin-cos table of MAE.

The encoder is :class:`~attnlab.nn.transformer.TransformerEncoder`, so every layer's
attention is a :class:`~attnlab.nn.MultiHeadAttention` (or the ``attn_layer=`` given)
whose exact weights :func:`attnlab.interpret.capture` collects from outside.
:meth:`VisionTransformer.from_timm` loads timm's ``VisionTransformer`` weights.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Literal

import torch
from torch import Tensor, nn

from attnlab._validate import lookup
from attnlab.nn._checks import as_positive, check_heads, factory_kwargs, positive_float, probability
from attnlab.nn.multihead import MultiHeadAttention
from attnlab.nn.protocol import AttentionFactory
from attnlab.nn.transformer import EncoderOutput, TransformerEncoder
from attnlab.vision.patches import PatchEmbed, sincos_2d_table

__all__ = ["VisionTransformer", "timm_key_map"]

Pool = Literal["cls", "mean"]
Position = Literal["learned", "sincos"]
_POOLS: dict[str, Pool] = {"cls": "cls", "mean": "mean"}
_POSITIONS: dict[str, Position] = {"learned": "learned", "sincos": "sincos"}
# timm's LayerNorm epsilon (and the paper's JAX code's).
_EPS = 1e-6
# One timm block's tensors -> ours; attn.qkv is split into the three projections.
_BLOCK = {
    "norm1": "norm_attn",
    "attn.proj": "self_attn.out_proj",
    "norm2": "norm_ff",
    "mlp.fc1": "ff.linear1",
    "mlp.fc2": "ff.linear2",
}


class VisionTransformer(nn.Module):
    """ViT classifier: patch embedding, class token, positions, pre-norm encoder, head.

    Args:
        image_size: ``(H, W)`` of the images (an int for square images).
        patch_size: ``P`` (or ``(P_h, P_w)``); must divide ``image_size``.
        in_channels: ``C``.
        num_classes: outputs of the head.
        dim: width ``D``.
        depth: encoder layers.
        heads: attention heads; ``D`` must divide by it.
        mlp_ratio: feed-forward size over ``D``.
        pool: ``"cls"`` (class token) or ``"mean"`` (mean of the patch tokens).
        position: ``"learned"`` or ``"sincos"`` (fixed, MAE's 2-D table; ``D % 4 == 0``).
        dropout: after the position embedding and every dense layer but the q/k/v
            projections (the paper); none on attention probabilities.
        attn_layer: builds every layer's self-attention (default
            :class:`~attnlab.nn.MultiHeadAttention`; see :mod:`attnlab.nn.protocol`).
        device: where to create the parameters.
        dtype: their dtype.

    Shapes:
        images ``(B, C, H, W)`` -> logits ``(B, num_classes)``; the encoder runs on
        ``1 + N`` tokens, class token first, then the patches in row-major order, so
        each layer's attention weights are ``(B, heads, 1 + N, 1 + N)``.

    Example:
        >>> vit = VisionTransformer(16, 4, 3, 5, dim=32, depth=2, heads=4)
        >>> vit(torch.randn(2, 3, 16, 16)).shape
        torch.Size([2, 5])
    """

    pos_embed: Tensor

    def __init__(
        self,
        image_size: int | Sequence[int],
        patch_size: int | Sequence[int],
        in_channels: int,
        num_classes: int,
        *,
        dim: int,
        depth: int,
        heads: int,
        mlp_ratio: float = 4.0,
        pool: Pool = "cls",
        position: Position = "learned",
        dropout: float = 0.0,
        attn_layer: AttentionFactory = MultiHeadAttention,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__()
        factory = factory_kwargs(device, dtype)
        dim, heads = check_heads("dim", dim, heads)
        self.pool = lookup(_POOLS, pool, "pool")
        self.position = lookup(_POSITIONS, position, "position")
        self.num_classes = as_positive("num_classes", num_classes)
        self.mlp_ratio = positive_float("mlp_ratio", mlp_ratio)
        ff_dim = as_positive("dim * mlp_ratio", _hidden_size(dim, self.mlp_ratio))
        dropout = probability("dropout", dropout)
        self.patch_embed = PatchEmbed(image_size, patch_size, in_channels, dim, **factory)
        tokens = 1 + self.patch_embed.num_patches
        self.cls_token = nn.Parameter(torch.zeros(1, 1, dim, **factory))
        if self.position == "learned":
            self.pos_embed = nn.Parameter(torch.zeros(1, tokens, dim, **factory))
        else:
            # The class token has no place on the grid: its row is zero (MAE).
            table = sincos_2d_table(self.patch_embed.grid, dim, **factory)
            pos = torch.cat([table.new_zeros(1, dim), table]).unsqueeze(0)
            self.register_buffer("pos_embed", pos, persistent=False)
        self.pos_drop = nn.Dropout(dropout)
        self.encoder = TransformerEncoder(
            depth,
            dim,
            heads,
            ff_dim,
            dropout=dropout,
            attention_dropout=0.0,
            activation="gelu",
            norm_first=True,
            layer_norm_eps=_EPS,
            # The last LayerNorm is ours: for mean pooling it follows the pooling.
            final_norm=False,
            attn_layer=attn_layer,
            **factory,
        )
        self.norm = nn.LayerNorm(dim, eps=_EPS, **factory)
        self.head = nn.Linear(dim, self.num_classes, **factory)
        self._init_weights()

    @torch.no_grad()
    def _init_weights(self) -> None:
        # DeiT/timm's recipe for training from scratch: truncated normal(0.02) for the
        # positions and every linear layer, zero biases.
        if self.position == "learned":
            nn.init.trunc_normal_(self.pos_embed, std=0.02)
        nn.init.normal_(self.cls_token, std=1e-6)
        for module in self.modules():
            if isinstance(module, nn.Linear):
                nn.init.trunc_normal_(module.weight, std=0.02)
                if module.bias is not None:
                    nn.init.zeros_(module.bias)

    @property
    def grid(self) -> tuple[int, int]:
        """Patches per column and per row, ``(H / P_h, W / P_w)``."""
        return self.patch_embed.grid

    def extra_repr(self) -> str:
        """Options shown by ``repr``."""
        return f"pool={self.pool!r}, position={self.position!r}"

    def encode(
        self, images: Tensor, *, need_weights: bool = False, return_hidden: bool = False
    ) -> EncoderOutput:
        """The encoder's tokens ``(B, 1 + N, D)`` (before the final LayerNorm) and extras.

        Args:
            images: ``(B, C, H, W)``.
            need_weights: also return every layer's weights ``(B, heads, 1 + N, 1 + N)``.
            return_hidden: also return the input and output of every layer.
        """
        x = self.patch_embed(images)
        cls = self.cls_token.expand(x.shape[0], -1, -1)
        x = torch.cat([cls, x], dim=1) + self.pos_embed.to(x.dtype)
        return self.encoder(
            self.pos_drop(x), need_weights=need_weights, return_hidden=return_hidden
        )

    def forward(self, images: Tensor) -> Tensor:
        """Class logits ``(B, num_classes)`` of images ``(B, C, H, W)``."""
        tokens = self.encode(images).last_hidden
        pooled = tokens[:, 0] if self.pool == "cls" else tokens[:, 1:].mean(dim=1)
        return self.head(self.norm(pooled))

    # -- timm interoperability ---------------------------------------------------------
    @classmethod
    def from_timm(
        cls, source: nn.Module | Mapping[str, Tensor], **config: Any
    ) -> VisionTransformer:
        """A ViT computing what a timm ``VisionTransformer`` (or its state dict) computes.

        Supported: timm's standard ViT block (qkv bias, GELU MLP, LayerNorm 1e-6), a
        class token with a position for it, ``global_pool`` ``'token'`` (-> ``"cls"``)
        or ``'avg'`` (-> ``"mean"``, timm's ``fc_norm`` after pooling). Other timm
        options (register tokens, layer scale, q/k norm, ...) leave tensors ours has
        no place for, and fail with the names of those tensors.

        Args:
            source: a timm ``VisionTransformer`` (its sizes, heads and mode are read
                from it) or its ``state_dict()``.
            **config: :class:`VisionTransformer` arguments, overriding what is read or
                inferred. A state dict does not record ``heads``: pass it. Its image size
                is inferred for square grids (pass ``image_size`` otherwise), its pooling
                from its final LayerNorm (``fc_norm``: ``"mean"``, ``norm``: ``"cls"``).

        Returns:
            The model, in the timm model's train/eval mode (eval for a state dict), on
            the device and in the dtype of the tensors unless ``config`` says otherwise.

        Raises:
            ValueError: a tensor is missing, unexpected or misshapen (one line naming
                it), or a required size cannot be read.
            TypeError: ``source`` is neither a module nor a mapping of tensors.
        """
        if isinstance(source, nn.Module):
            state, training = source.state_dict(), source.training
            config = {**_config_of_timm_module(source), **config}
        elif isinstance(source, Mapping):
            state, training = dict(source), False
        else:
            raise TypeError(
                f"from_timm takes a timm VisionTransformer or its state_dict, got "
                f"{type(source).__name__}"
            )
        config = {**_config_of_timm_state(state, config), **config}
        if "heads" not in config:
            raise ValueError(
                "a state dict does not record the number of heads; pass heads=... to "
                "from_timm (or give it the timm model itself)"
            )
        model = cls(**config)
        model.load_state_dict(_convert_timm_state(state, model), strict=True)
        return model.train(training)


def _hidden_size(dim: int, ratio: float) -> int:
    # int(dim * ratio) as timm, but a ratio read back from a checkpoint (fc1 / dim) can
    # land one ulp below the integer it came from.
    size = dim * ratio
    return round(size) if abs(size - round(size)) < 1e-6 else int(size)


def timm_key_map(depth: int, pool: Pool = "cls") -> dict[str, str]:
    """Names of timm ``VisionTransformer`` tensors -> :class:`VisionTransformer` names.

    ``blocks.{i}.attn.qkv.*`` maps to ``encoder.layers.{i}.self_attn.qkv.*``, which
    :meth:`VisionTransformer.from_timm` splits into the q, k and v projections.

    Example:
        >>> timm_key_map(1)["blocks.0.mlp.fc1.weight"]
        'encoder.layers.0.ff.linear1.weight'
    """
    names = {"cls_token": "cls_token", "pos_embed": "pos_embed"}
    for name in ("patch_embed.proj", "fc_norm" if pool == "mean" else "norm", "head"):
        for p in ("weight", "bias"):
            names[f"{name}.{p}"] = f"{name.replace('fc_norm', 'norm')}.{p}"
    for i in range(depth):
        for p in ("weight", "bias"):
            names[f"blocks.{i}.attn.qkv.{p}"] = f"encoder.layers.{i}.self_attn.qkv.{p}"
            for theirs, ours in _BLOCK.items():
                names[f"blocks.{i}.{theirs}.{p}"] = f"encoder.layers.{i}.{ours}.{p}"
    return names


def _config_of_timm_module(model: nn.Module) -> dict[str, Any]:
    """What a timm VisionTransformer's state dict does not say: heads, image size, pools."""
    config: dict[str, Any] = {}
    blocks = getattr(model, "blocks", None)
    if blocks is not None and len(blocks) and hasattr(blocks[0], "attn"):
        config["heads"] = blocks[0].attn.num_heads
    embed = getattr(model, "patch_embed", None)
    if getattr(embed, "img_size", None) is not None:
        config["image_size"] = tuple(embed.img_size)
    pool = getattr(model, "global_pool", "token")
    if pool not in ("token", "avg"):
        raise ValueError(
            f"timm global_pool={pool!r} has no attnlab equivalent; use 'token' (pool='cls') "
            "or 'avg' (pool='mean')"
        )
    config["pool"] = "cls" if pool == "token" else "mean"
    return config


def _config_of_timm_state(state: Mapping[str, Tensor], given: Mapping[str, Any]) -> dict:
    """Sizes a timm ViT state dict fixes: width, patch, channels, classes, depth, MLP, pool."""
    needed = ("cls_token", "pos_embed", "patch_embed.proj.weight", "head.weight")
    missing = [k for k in needed if k not in state]
    if missing:
        raise ValueError(
            f"not a timm VisionTransformer state dict with a class token and a head: missing "
            f"{', '.join(missing)}"
        )
    dim, channels, ph, pw = state["patch_embed.proj.weight"].shape
    depth = 0
    while f"blocks.{depth}.attn.qkv.weight" in state:
        depth += 1
    if depth == 0:
        raise ValueError(
            "the state dict has no blocks.0.attn.qkv.weight: not a timm VisionTransformer "
            "with timm's attention blocks"
        )
    config: dict[str, Any] = {
        "patch_size": (ph, pw),
        "in_channels": channels,
        "num_classes": state["head.weight"].shape[0],
        "dim": dim,
        "depth": depth,
        "pool": "mean" if "fc_norm.weight" in state else "cls",
        "device": state["cls_token"].device,
        "dtype": state["cls_token"].dtype,
    }
    if "blocks.0.mlp.fc1.weight" in state:
        config["mlp_ratio"] = state["blocks.0.mlp.fc1.weight"].shape[0] / dim
    if "image_size" not in given:
        patches = state["pos_embed"].shape[1] - 1
        side = round(patches**0.5)
        if side * side != patches or ph != pw:
            raise ValueError(
                f"cannot infer the image size from pos_embed ({patches} patches of {ph}x{pw}); "
                "pass image_size=(H, W) to from_timm"
            )
        config["image_size"] = side * ph
    return config


def _convert_timm_state(state: Mapping[str, Tensor], model: VisionTransformer) -> dict:
    """The timm tensors renamed to ``model``'s, checked against its shapes, qkv split."""
    names = timm_key_map(len(model.encoder.layers), model.pool)
    missing = [k for k in names if k not in state]
    if missing:
        raise ValueError(
            f"the timm state dict lacks {len(missing)} tensor(s) this configuration needs: "
            f"{', '.join(missing[:6])}"
        )
    unexpected = [k for k in state if k not in names]
    if unexpected:
        raise ValueError(
            f"the timm state dict has {len(unexpected)} tensor(s) attnlab's ViT has no place "
            f"for (another timm option?): {', '.join(unexpected[:6])}"
        )
    expected = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    expected["pos_embed"] = tuple(model.pos_embed.shape)  # a buffer outside it with sincos
    dim = model.cls_token.shape[-1]
    for i in range(len(model.encoder.layers)):
        for p in ("weight", "bias"):
            if f"encoder.layers.{i}.self_attn.q_proj.{p}" not in expected:
                raise ValueError(
                    "from_timm loads into MultiHeadAttention layers (q, k and v projections with "
                    "biases); build it without another attn_layer"
                )
            shape = expected.pop(f"encoder.layers.{i}.self_attn.q_proj.{p}")
            expected[f"encoder.layers.{i}.self_attn.qkv.{p}"] = (3 * dim, *shape[1:])
    converted = {}
    for theirs, ours in names.items():
        tensor = state[theirs]
        if tuple(tensor.shape) != expected[ours]:
            raise ValueError(
                f"timm's {theirs} has shape {tuple(tensor.shape)} but this configuration needs "
                f"{expected[ours]}; check image_size, patch_size, dim and the other sizes"
            )
        if ours.endswith((".qkv.weight", ".qkv.bias")):
            prefix, p = ours.rsplit(".qkv.", 1)
            for part, chunk in zip("qkv", tensor.chunk(3)):
                converted[f"{prefix}.{part}_proj.{p}"] = chunk
        else:
            converted[ours] = tensor
    if model.position == "sincos":
        _check_sincos(converted.pop("pos_embed"), model.pos_embed)
    return converted


def _check_sincos(theirs: Tensor, ours: Tensor) -> None:
    gap = float((theirs.double() - ours.to(theirs.device).double()).abs().max())
    if gap > 1e-4:
        raise ValueError(
            f"timm's pos_embed is not the 2-D sin-cos table (max difference {gap:.3g}); load "
            "it with position='learned'"
        )
