"""A self-contained HTML page of test images, each with tabs of attention overlays.

Every image is a card: the image, and beside it one :func:`~attnlab.interpret.images.overlay`
per named map (e.g. "CBAM stage 2", "rollout"), switched by tabs. The tabs are radio
buttons styled with CSS: no script, the first overlay shows by default, and they work
with the keyboard. Images are inline PNGs (base64 ``data:`` URIs), and the page reuses
the styles of :mod:`attnlab.interpret.html`: it fetches nothing, so it opens offline and
can be archived with a run's results.
"""

from __future__ import annotations

import base64
import html
import io
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib import colormaps
from matplotlib.image import imsave

from attnlab.interpret._common import html_page
from attnlab.interpret.html import _CSS
from attnlab.interpret.images import _items, _path, _range_note, as_rgb, overlay

__all__ = ["MAX_MAPS", "image_attention_html", "image_attention_page", "png_data_uri"]

# Up to this many named maps, each gets a CSS rule that shows its overlay when its tab
# is checked (pure CSS has no loops); more names than this is an error.
MAX_MAPS = 24

_IMAGE_CSS = """
.cards { display: flex; flex-wrap: wrap; gap: 1.2em 2em; }
.card { border-top: none; padding: 0; position: relative; }
.label.correct { background: #dff0d8; }
.label.wrong { background: #f8d7da; }
.card input { position: absolute; opacity: 0; width: 1px; height: 1px; }
.tabs { display: flex; flex-wrap: wrap; gap: 0.25em; margin: 0.3em 0; max-width: 20em; }
.tabs label { font-size: 0.8em; padding: 0.1em 0.5em; border: 1px solid #ccc;
              border-radius: 0.3em; cursor: pointer; color: #444; }
.views { display: flex; gap: 0.5em; }
.views figure { margin: 0; }
.views img { width: 9em; height: auto; image-rendering: pixelated; display: block; }
.views figcaption { font-size: 0.75em; color: #555; max-width: 12em; }
.ovs figure { display: none; }
.colourbar { display: inline-block; width: 8em; height: 0.8em; vertical-align: middle;
             border: 1px solid #ccc; }
""".strip()


def png_data_uri(rgb: np.ndarray) -> str:
    """Encode an RGB picture as a ``data:image/png;base64,...`` URI for an ``<img>``.

    Args:
        rgb: uint8 (or float in [0, 1]) picture of shape (H, W, 3).

    Returns:
        The URI (ASCII).

    Example:
        >>> png_data_uri(np.zeros((2, 2, 3), np.uint8))[:22]
        'data:image/png;base64,'
    """
    buffer = io.BytesIO()
    imsave(buffer, rgb, format="png")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def _tab_css(count: int) -> str:
    # Tab k shows overlay k: nth-of-type pairs the k-th radio with the k-th figure.
    rules = []
    for k in range(1, count + 1):
        checked = f".card input:nth-of-type({k}):checked"
        rules.append(f"{checked} ~ .views .ovs figure:nth-of-type({k}) {{ display: block; }}")
        rules.append(
            f"{checked} ~ .tabs label:nth-of-type({k}) "
            "{ background: #333; color: #fff; border-color: #333; }"
        )
    rules.append(".card input:focus-visible ~ .tabs { outline: 2px solid #d62728; }")
    return "\n".join(rules)


def _figure(uri: str, caption: str, alt: str) -> str:
    return (
        f'<figure><img src="{uri}" alt="{html.escape(alt)}">'
        f"<figcaption>{html.escape(caption)}</figcaption></figure>"
    )


def _caption(label: Any, prediction: Any) -> str:
    parts, badge = [], ""
    if label is not None:
        parts.append(f"true: {label}")
    if prediction is not None:
        parts.append(f"predicted: {prediction}")
    if label is not None and prediction is not None:
        verdict = "correct" if str(label) == str(prediction) else "wrong"
        badge = f'<span class="label {verdict}">{verdict}</span>'
    return f'<p class="caption">{badge}{html.escape(", ".join(parts))}</p>' if parts else ""


def _card(index: int, image: Any, maps: list[tuple[str, Any]], caption: str, **style: Any) -> str:
    group = f"img{index}"
    radios = "".join(
        f'<input type="radio" name="{group}" id="{group}-{k}"{" checked" if k == 0 else ""}>'
        for k in range(len(maps))
    )
    tabs = "".join(
        f'<label for="{group}-{k}">{html.escape(name)}</label>' for k, (name, _) in enumerate(maps)
    )
    overlays = "".join(
        _figure(png_data_uri(overlay(image, m, **style)), f"{name}: {_range_note(m)}", name)
        for name, m in maps
    )
    base = _figure(png_data_uri(as_rgb(image)), f"image #{index}", f"image {index}")
    return (
        f'<div class="example card">{caption}{radios}<div class="tabs">{tabs}</div>'
        f'<div class="views">{base}<div class="ovs">{overlays}</div></div></div>'
    )


def _legend(cmap: str, alpha: float) -> str:
    stops = ", ".join(
        "rgb({}, {}, {})".format(*(round(255 * c) for c in colormaps[cmap](t / 8)[:3]))
        for t in range(9)
    )
    return (
        '<p class="legend">Each overlay is its attention map upsampled (bilinear) to the '
        f'image and scaled from its own minimum <span class="colourbar" style="background: '
        f'linear-gradient(to right, {stops})"></span> to its own maximum (the raw range is '
        f"under each), blended over the image at {alpha:g} opacity. Pick a map with the "
        "tabs above each image.</p>"
    )


def image_attention_html(
    images: Any,
    maps_by_name: Mapping[str, Sequence[Any]],
    labels: Sequence[Any] | None = None,
    *,
    predictions: Sequence[Any] | None = None,
    title: str = "Attention over images",
    alpha: float = 0.5,
    cmap: str = "viridis",
) -> str:
    """Render :func:`image_attention_page`'s page as one HTML string.

    See :func:`image_attention_page` for the arguments.

    Returns:
        The HTML document (inline CSS and images; no script, nothing fetched).
    """
    images = _items(images, "images")
    if not maps_by_name:
        raise ValueError("maps_by_name is empty; give at least one name -> list of maps")
    if len(maps_by_name) > MAX_MAPS:
        raise ValueError(f"maps_by_name has {len(maps_by_name)} names; at most {MAX_MAPS}")
    columns = {
        str(name): _items(maps, f"maps_by_name[{name!r}]") for name, maps in maps_by_name.items()
    }
    counts = {"images": len(images)} | {f"maps_by_name[{n!r}]": len(m) for n, m in columns.items()}
    for what, values in (("labels", labels), ("predictions", predictions)):
        if values is not None:
            counts[what] = len(values)
    if len(set(counts.values())) != 1:
        raise ValueError(
            "one entry per image is needed, got "
            + ", ".join(f"{k}: {v}" for k, v in counts.items())
        )
    cards = [
        _card(
            i,
            image,
            [(name, maps[i]) for name, maps in columns.items()],
            _caption(
                None if labels is None else labels[i],
                None if predictions is None else predictions[i],
            ),
            alpha=alpha,
            cmap=cmap,
        )
        for i, image in enumerate(images)
    ]
    css = f"{_CSS}\n{_IMAGE_CSS}\n{_tab_css(len(columns))}"
    cards_html = '<div class="cards">\n' + "\n".join(cards) + "\n</div>"
    return html_page(title, css, f"{_legend(cmap, alpha)}\n{cards_html}")


def image_attention_page(
    images: Any,
    maps_by_name: Mapping[str, Sequence[Any]],
    labels: Sequence[Any] | None = None,
    path: str | Path | None = None,
    *,
    predictions: Sequence[Any] | None = None,
    title: str = "Attention over images",
    alpha: float = 0.5,
    cmap: str = "viridis",
) -> Path:
    """Write a self-contained page: each test image with tabs of attention overlays.

    One card per image: a caption ("correct" or "wrong", true and predicted label),
    the image, and the overlay of the map picked with the tabs (the first by default),
    with the map's raw range under it. Every text is escaped.

    Args:
        images: N images (a list, or a batch tensor (N, H, W) / (N, C, H, W)).
        maps_by_name: Name -> N maps of shape (h, w), one per image (a list or a
            tensor (N, h, w)); at most :data:`MAX_MAPS` names.
        labels: True label (e.g. class name) of each image, or None.
        path: Output file (required; positional or keyword); parent folders are created.
        predictions: Predicted label of each image, or None.
        title: Page title and heading.
        alpha: Weight of the colour map in each overlay.
        cmap: A matplotlib colour map name.

    Returns:
        The path written.

    Raises:
        ValueError: Mismatched counts, no maps, too many names, a malformed image or map.
        TypeError: No path.

    Example:
        >>> import tempfile, pathlib, torch
        >>> out = pathlib.Path(tempfile.mkdtemp()) / "images.html"
        >>> maps = {"CBAM": torch.rand(2, 4, 4), "rollout": torch.rand(2, 2, 2)}
        >>> image_attention_page(torch.rand(2, 8, 8), maps, ["Bag", "Coat"], out).name
        'images.html'
    """
    out = _path(path)
    page = image_attention_html(
        images, maps_by_name, labels, predictions=predictions, title=title, alpha=alpha, cmap=cmap
    )
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(page, encoding="utf-8")
    return out
