"""An interactive, self-contained HTML page: hover a token to see what it attends to.

The page shows the input as text. Hovering a token (or tapping it, or focusing it with
the keyboard) shades every token by the weight the hovered token puts on it, for a
layer and head picked from two menus ("mean over heads" included), in the spirit of
the head views of Vig, "A Multiscale Visualization of Attention in the Transformer
Model" (ACL 2019 demos). Extra matrices (e.g. a rollout, Abnar & Zuidema 2020) become
more views; extra per-token scores become static shadings.

Everything is inline (CSS, script and weights as JSON): nothing is fetched, so the
page works offline and can be archived with a run's results.
"""

from __future__ import annotations

import html
import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from attnlab.interpret._common import (
    as_weights,
    check_indices,
    check_tokens,
    html_page,
    single_item_layers,
    truncation_note,
)
from attnlab.interpret._layout import check_max_tokens

__all__ = ["MAX_WEIGHTS", "attention_html", "attention_payload", "write_attention_html"]

MAX_WEIGHTS = 5_000_000
"""The most weights one page embeds (about 20 MB of JSON); more is an error."""

_CSS = """
body { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; margin: 2em auto;
       max-width: 60em; padding: 0 1em; color: #222; background: #fff; }
h1 { font-size: 1.4em; }
.controls { margin: 0 0 1em 0; }
.controls label { margin-right: 1em; }
.help, .note { font-size: 0.85em; color: #555; }
.note { color: #a33; }
#tokens { line-height: 2.1; border-top: 1px solid #e5e5e5; padding-top: 0.8em; }
.tok { padding: 0.1em 0.2em; border-radius: 0.2em; cursor: pointer; outline-offset: 1px; }
.tok.focus { outline: 2px solid #333; }
.tok.pinned { outline: 2px solid #d62728; }
#info { min-height: 1.5em; font-size: 0.9em; color: #333; margin-top: 1em; }
""".strip()

# Reads the JSON block, fills the menus and shades tokens; every text it inserts goes
# through textContent, never innerHTML, so token text cannot become markup.
_JS = """
(function () {
  "use strict";
  var data = JSON.parse(document.getElementById("attn-data").textContent);
  var toks = Array.prototype.slice.call(document.querySelectorAll("#tokens .tok"));
  var viewSel = document.getElementById("view"), headSel = document.getElementById("head");
  var info = document.getElementById("info");
  var pinned = null, shown = null;
  function option(sel, value, text) {
    var o = document.createElement("option"); o.value = value; o.textContent = text;
    sel.appendChild(o);
  }
  data.views.forEach(function (v, k) { option(viewSel, k, v.name); });
  function view() { return data.views[+viewSel.value]; }
  function fillHeads() {
    var v = view(); headSel.textContent = "";
    headSel.disabled = v.kind !== "layer";
    if (v.kind !== "layer") { option(headSel, "", "\\u2014"); return; }
    option(headSel, "mean", "mean over heads");
    v.heads.forEach(function (h, k) { option(headSel, k, "head " + h); });
  }
  function matrix() {
    var v = view();
    if (v.kind !== "layer") { return v.weights; }
    return headSel.value === "mean" ? v.mean : v.weights[+headSel.value];
  }
  function shade(el, value, peak) {
    var a = peak > 0 ? Math.abs(value) / peak : 0;
    el.style.backgroundColor = value < 0 ? "rgba(31, 119, 180, " + a.toFixed(3) + ")"
                                         : "rgba(255, 127, 14, " + a.toFixed(3) + ")";
  }
  function paint(i) {
    var v = view();
    shown = i;
    toks.forEach(function (el, j) {
      el.classList.toggle("focus", j === i);
      el.classList.toggle("pinned", j === pinned);
    });
    if (v.kind === "scores") {
      var peak = Math.max.apply(null, v.scores.map(Math.abs));
      toks.forEach(function (el, j) { shade(el, v.scores[j], peak); el.title = v.scores[j]; });
      info.textContent = v.name + ": one score per token.";
      return;
    }
    if (i === null) {
      toks.forEach(function (el) { el.style.backgroundColor = ""; el.title = ""; });
      info.textContent = "";
      return;
    }
    var row = matrix()[i], top = Math.max.apply(null, row);
    toks.forEach(function (el, j) {
      shade(el, row[j], top); el.title = (row[j] / 1000).toFixed(3);
    });
    var order = row.map(function (w, j) { return j; });
    order.sort(function (a, b) { return row[b] - row[a]; });
    info.textContent = "\\u201c" + data.tokens[i] + "\\u201d (#" + i + ") attends most to: " +
      order.slice(0, 5).map(function (j) {
        return "\\u201c" + data.tokens[j] + "\\u201d " + (row[j] / 1000).toFixed(3);
      }).join(", ");
  }
  toks.forEach(function (el, i) {
    el.addEventListener("mouseenter", function () { if (pinned === null) { paint(i); } });
    el.addEventListener("focus", function () { if (pinned === null) { paint(i); } });
    el.addEventListener("click", function () { pinned = pinned === i ? null : i; paint(i); });
    el.addEventListener("keydown", function (e) {
      if (e.key === "Enter" || e.key === " ") { e.preventDefault(); el.click(); }
    });
  });
  document.getElementById("tokens").addEventListener("mouseleave", function () {
    if (pinned === null) { paint(null); }
  });
  document.addEventListener("keydown", function (e) {
    if (e.key === "Escape") { pinned = null; paint(null); }
  });
  viewSel.addEventListener("change", function () { fillHeads(); paint(shown); });
  headSel.addEventListener("change", function () { paint(shown); });
  fillHeads(); paint(null);
})();
""".strip()


def _milli(weights: np.ndarray) -> list[Any]:
    """Weights in thousandths, as nested lists of ints: three decimals, compact JSON."""
    return np.rint(weights * 1000.0).astype(np.int64).tolist()


def _extras(
    extras: Mapping[str, Any] | None, length: int, ndim: int, kind: str
) -> list[tuple[str, np.ndarray]]:
    if extras is None:
        return []
    if not isinstance(extras, Mapping):
        raise TypeError(f"extra_{kind} must be a dict of name -> values, got {type(extras)}")
    out = []
    for name, values in extras.items():
        if not isinstance(name, str) or not name:
            raise ValueError(f"extra_{kind} names must be non-empty strings, got {name!r}")
        arr = as_weights(
            values, ndim=ndim, name=f"extra_{kind}[{name!r}]", allow_negative=ndim == 1
        )
        if arr.shape != (length,) * ndim:
            raise ValueError(
                f"extra_{kind}[{name!r}] has shape {arr.shape}, expected {(length,) * ndim}"
            )
        out.append((name, arr))
    return out


def attention_payload(
    attentions: Sequence[Any],
    tokens: Sequence[str],
    *,
    layers: Sequence[int] | None = None,
    heads: Sequence[int] | None = None,
    max_tokens: int = 256,
    extra_matrices: Mapping[str, Any] | None = None,
    extra_scores: Mapping[str, Sequence[float]] | None = None,
    max_weights: int = MAX_WEIGHTS,
) -> dict[str, Any]:
    """Check the inputs and build the JSON payload that :func:`attention_html` embeds.

    Matrix weights are stored as integers in thousandths (rounded to 3 decimals); a
    layer view holds its selected heads and ``mean``, the mean over *all* its heads.
    Scores keep 4 significant digits. Everything is cut to the first ``max_tokens``.

    Args:
        attentions: One (H, L, L) or (1, H, L, L) tensor or array per layer.
        tokens: The L tokens.
        layers: Layer indices to offer (negative allowed); None for all.
        heads: Head indices to offer; None for all.
        max_tokens: The most tokens shown.
        extra_matrices: Named (L, L) non-negative matrices shown like a layer, e.g.
            ``{"rollout": attention_rollout(attentions)}``.
        extra_scores: Named (L,) scores shown as a fixed shading, e.g.
            ``{"rollout from [CLS]": rollout[0]}``; negative scores are blue.
        max_weights: The most matrix entries embedded.

    Returns:
        ``{"tokens", "total", "shown", "note", "views"}``; each view has ``name``,
        ``kind`` ("layer", "matrix" or "scores") and its weights or scores.

    Raises:
        ValueError: On a token count or extra shape mismatch, a bad index, bad weights
            or more than ``max_weights`` entries.
        TypeError: If ``tokens`` is one string or an extra is not a dict.

    Example:
        >>> p = attention_payload([np.full((2, 3, 3), 1 / 3)], ["a", "b", "c"])
        >>> p["views"][0]["name"], p["views"][0]["mean"][0]
        ('layer 0', [333, 333, 333])
    """
    arr = single_item_layers(attentions)
    length = arr.shape[-1]
    toks = check_tokens(tokens, length, name="tokens", axis="positions")
    check_max_tokens(max_tokens)
    sel_layers = check_indices(layers, arr.shape[0], "layers")
    sel_heads = check_indices(heads, arr.shape[1], "heads")
    matrices = _extras(extra_matrices, length, 2, "matrices")
    scores = _extras(extra_scores, length, 1, "scores")
    m = min(length, max_tokens)
    count = (len(sel_layers) * (len(sel_heads) + 1) + len(matrices)) * m * m
    if count > max_weights:
        raise ValueError(
            f"the page would embed {count} weights (limit {max_weights}); choose fewer "
            "layers=/heads= or a smaller max_tokens"
        )
    views: list[dict[str, Any]] = []
    for layer in sel_layers:
        views.append(
            {
                "name": f"layer {layer}",
                "kind": "layer",
                "heads": list(sel_heads),
                "mean": _milli(arr[layer, :, :m, :m].mean(axis=0)),
                "weights": _milli(arr[layer, list(sel_heads), :m, :m]),
            }
        )
    views += [{"name": n, "kind": "matrix", "weights": _milli(w[:m, :m])} for n, w in matrices]
    views += [
        {"name": n, "kind": "scores", "scores": [float(f"{x:.4g}") for x in s[:m]]}
        for n, s in scores
    ]
    note = truncation_note(m, length)
    return {"tokens": toks[:m], "total": length, "shown": m, "note": note, "views": views}


def _script_json(payload: dict[str, Any]) -> str:
    # ASCII-only JSON, with <, > and & escaped: no "</script>" or "<!--" can appear.
    text = json.dumps(payload, ensure_ascii=True, separators=(",", ":"), allow_nan=False)
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def _token_text(token: str) -> str:
    return "\u2423" if not token.strip() else token  # whitespace: a visible open box


def attention_html(
    attentions: Sequence[Any],
    tokens: Sequence[str],
    *,
    layers: Sequence[int] | None = None,
    heads: Sequence[int] | None = None,
    max_tokens: int = 256,
    title: str | None = None,
    extra_matrices: Mapping[str, Any] | None = None,
    extra_scores: Mapping[str, Sequence[float]] | None = None,
    max_weights: int = MAX_WEIGHTS,
) -> str:
    """Render the interactive attention page as one HTML string.

    See :func:`write_attention_html` for the arguments and
    :func:`attention_payload` for the embedded data.

    Returns:
        The HTML document (inline CSS, script and JSON; no external resources).

    Raises:
        ValueError: See :func:`attention_payload`.
    """
    payload = attention_payload(
        attentions,
        tokens,
        layers=layers,
        heads=heads,
        max_tokens=max_tokens,
        extra_matrices=extra_matrices,
        extra_scores=extra_scores,
        max_weights=max_weights,
    )
    spans = " ".join(
        f'<span class="tok" tabindex="0" data-i="{i}">{html.escape(_token_text(t))}</span>'
        for i, t in enumerate(payload["tokens"])
    )
    note = f'<p class="note">{html.escape(payload["note"])}</p>\n' if payload["note"] else ""
    body = (
        '<div class="controls"><label>View <select id="view"></select></label>'
        '<label>Head <select id="head"></select></label></div>\n'
        '<p class="help">Hover, tap or tab to a token to shade what it attends to (weight '
        "divided by the largest weight in its row); click or press Enter to pin it, "
        "Esc to release.</p>\n"
        f'{note}<div id="tokens">{spans}</div>\n<p id="info"></p>\n'
        f'<script type="application/json" id="attn-data">{_script_json(payload)}</script>\n'
        f"<script>\n{_JS}\n</script>"
    )
    return html_page(title or "Attention", _CSS, body)


def write_attention_html(
    attentions: Sequence[Any],
    tokens: Sequence[str],
    path: str | Path,
    *,
    layers: Sequence[int] | None = None,
    heads: Sequence[int] | None = None,
    max_tokens: int = 256,
    title: str | None = None,
    extra_matrices: Mapping[str, Any] | None = None,
    extra_scores: Mapping[str, Sequence[float]] | None = None,
    max_weights: int = MAX_WEIGHTS,
) -> Path:
    r"""Write a self-contained page where hovering a token shades what it attends to.

    For the chosen view and head, hovering (or tapping, or focusing) query token ``i``
    shades each key token ``j`` by :math:`A[i, j] / \max_k A[i, k]`, with the weight
    itself in a tooltip and the five largest listed below the text. Views: each
    selected layer (with a head menu: "mean over heads" or one head), each extra
    matrix (e.g. a rollout), each extra score vector (a fixed shading). Tokens are
    HTML-escaped; the JSON cannot close its ``<script>`` element. Inputs longer than
    ``max_tokens`` are cut, with a visible note.

    Args:
        attentions: One (H, L, L) or (1, H, L, L) tensor or array per layer, bottom first.
        tokens: The L tokens.
        path: Output file; parent folders are created.
        layers: Layer indices to offer (negative allowed); None for all.
        heads: Head indices to offer; None for all.
        max_tokens: The most tokens shown.
        title: Page title and heading.
        extra_matrices: Named (L, L) non-negative matrices offered as views.
        extra_scores: Named (L,) score vectors offered as fixed shadings.
        max_weights: The most matrix entries embedded (page size guard).

    Returns:
        The path written.

    Raises:
        ValueError: See :func:`attention_payload`.

    Shapes:
        attentions[l]: (H, L, L) or (1, H, L, L); extra matrices (L, L); scores (L,).

    Example:
        >>> import tempfile, pathlib, torch
        >>> att = [torch.softmax(torch.randn(2, 3, 3), -1) for _ in range(2)]
        >>> out = pathlib.Path(tempfile.mkdtemp()) / "hover.html"
        >>> write_attention_html(att, ["a", "cat", "sat"], out).name
        'hover.html'
    """
    page = attention_html(
        attentions,
        tokens,
        layers=layers,
        heads=heads,
        max_tokens=max_tokens,
        title=title,
        extra_matrices=extra_matrices,
        extra_scores=extra_scores,
        max_weights=max_weights,
    )
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(page, encoding="utf-8")
    return out
