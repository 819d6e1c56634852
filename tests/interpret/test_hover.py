"""Interactive attention page: self-contained, escaped, JSON round trip, guards, behaviour."""

from __future__ import annotations

import json
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest
import torch

from attnlab.interpret.hover import attention_html, attention_payload, write_attention_html

INJECTION = "</script><script>alert(1)</script>"


def model(n_layers: int, n_heads: int, length: int, seed: int = 0) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    shape = (n_heads, length, length)
    return [torch.softmax(2 * torch.randn(shape, generator=g), -1) for _ in range(n_layers)]


class Page(HTMLParser):
    """Collects token span texts, script bodies and every tag's src/href."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.tokens: list[str] = []
        self.scripts: list[tuple[dict[str, str | None], str]] = []
        self.links: list[str | None] = []
        self._tok: list[str] | None = None
        self._script: dict[str, str | None] | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        self.links += [a[k] for k in ("src", "href") if k in a]
        if tag == "span" and a.get("class") == "tok":
            self._tok = []
        if tag == "script":
            self._script = a

    def handle_data(self, data: str) -> None:
        if self._tok is not None:
            self._tok.append(data)
        if self._script is not None:
            self.scripts.append((self._script, data))

    def handle_endtag(self, tag: str) -> None:
        if tag == "span" and self._tok is not None:
            self.tokens.append("".join(self._tok))
            self._tok = None
        if tag == "script":
            self._script = None


def parse(page: str) -> Page:
    p = Page()
    p.feed(page)
    p.close()
    return p


def payload_of(page: str) -> dict:
    (body,) = [text for attrs, text in parse(page).scripts if attrs.get("id") == "attn-data"]
    return json.loads(body)


def test_writes_one_self_contained_file(tmp_path: Path) -> None:
    out = write_attention_html(model(2, 3, 4), list("abcd"), tmp_path / "x" / "a.html", title="t")
    assert out == tmp_path / "x" / "a.html"
    page = out.read_text(encoding="utf-8")
    assert page.startswith("<!DOCTYPE html>")
    parsed = parse(page)
    assert parsed.links == []  # no src= or href=: nothing is fetched
    assert "http" not in page and "@import" not in page
    assert [attrs.get("type") for attrs, _ in parsed.scripts] == ["application/json", None]


def test_tokens_are_escaped_and_shown_in_order() -> None:
    tokens = ["<b>", "a&b", '"q"', " "]
    page = attention_html(model(1, 2, 4), tokens)
    assert "&lt;b&gt;" in page and "a&amp;b" in page and "<b>" not in page
    assert parse(page).tokens == ["<b>", "a&b", '"q"', "\u2423"]  # whitespace made visible


def test_json_payload_round_trips_with_the_right_shape() -> None:
    att = model(3, 4, 5)
    page = attention_html(att, list("abcde"), layers=[2, 0], heads=[3, 1])
    data = payload_of(page)
    assert data["tokens"] == list("abcde") and (data["shown"], data["total"]) == (5, 5)
    assert [v["name"] for v in data["views"]] == ["layer 2", "layer 0"]
    view = data["views"][0]
    assert view["kind"] == "layer" and view["heads"] == [3, 1]
    weights = np.array(view["weights"])
    assert weights.shape == (2, 5, 5) and weights.dtype.kind == "i"  # thousandths
    np.testing.assert_array_equal(weights[0], np.rint(att[2][3].numpy() * 1000))
    np.testing.assert_allclose(np.array(view["mean"]) / 1000, att[2].mean(0).numpy(), atol=5e-4)


def test_script_injection_token_is_neutralised() -> None:
    tokens = [INJECTION, "<!--", "\u2028", "ok"]
    page = attention_html(model(1, 1, 4), tokens, title=INJECTION)
    assert page.count("<script") == 2 and page.count("</script>") == 2
    assert "<!--" not in page
    data = payload_of(page)
    assert data["tokens"] == tokens  # JSON escapes decode back to the exact strings
    assert parse(page).tokens[:2] == [INJECTION, "<!--"]


def test_truncation_note_is_visible_and_data_is_cut() -> None:
    page = attention_html(model(1, 2, 30), [f"t{i}" for i in range(30)], max_tokens=12)
    assert '<p class="note">first 12 of 30 tokens shown</p>' in page
    data = payload_of(page)
    assert (data["shown"], data["total"]) == (12, 30)
    assert np.array(data["views"][0]["weights"]).shape == (2, 12, 12)
    assert len(parse(page).tokens) == 12
    assert 'class="note"' not in attention_html(model(1, 2, 3), list("abc"))


def test_extra_matrices_and_scores_become_views() -> None:
    att = model(2, 2, 4)
    rollout = torch.linalg.matrix_power(att[0].mean(0), 2)
    data = attention_payload(
        att,
        list("abcd"),
        layers=[1],
        extra_matrices={"rollout": rollout},
        extra_scores={"saliency": [0.5, -0.25, 0.125, 1e-5]},
    )
    kinds = [(v["name"], v["kind"]) for v in data["views"]]
    assert kinds == [("layer 1", "layer"), ("rollout", "matrix"), ("saliency", "scores")]
    assert np.array(data["views"][1]["weights"]).shape == (4, 4)
    assert data["views"][2]["scores"] == [0.5, -0.25, 0.125, 1e-5]


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"tokens": list("abc")}, ValueError, "tokens has 3 tokens"),
        ({"heads": [2]}, ValueError, "heads index 2"),
        ({"layers": [-3]}, ValueError, "layers index -3"),
        ({"extra_matrices": {"r": np.eye(3)}}, ValueError, "expected \\(4, 4\\)"),
        ({"extra_matrices": {"r": -np.eye(4)}}, ValueError, "non-negative"),
        ({"extra_scores": {"s": [1.0, 2.0]}}, ValueError, "expected \\(4,\\)"),
        ({"extra_scores": {"": [1.0] * 4}}, ValueError, "non-empty"),
        ({"extra_scores": [1.0] * 4}, TypeError, "dict"),
        ({"max_weights": 10}, ValueError, "embed 96 weights"),
        ({"max_tokens": 0}, ValueError, "max_tokens"),
    ],
)
def test_bad_input(kwargs: dict, error: type[Exception], match: str, tmp_path: Path) -> None:
    args = {"tokens": list("abcd"), **kwargs}
    with pytest.raises(error, match=match) as exc:
        write_attention_html(model(2, 2, 4), path=tmp_path / "bad.html", **args)
    assert "\n" not in str(exc.value)
    assert not (tmp_path / "bad.html").exists()


# --- behaviour: run the page's script in node against a tiny DOM stand-in ----------------

DOM_STUB = """
function El() {
  var self = this;
  this.children = []; this.listeners = {}; this.style = {}; this.title = "";
  this.classes = {}; this.disabled = false; this._value = null; this._text = "";
  this.classList = { toggle: function (c, on) { self.classes[c] = !!on; } };
}
El.prototype.addEventListener = function (t, f) {
  (this.listeners[t] = this.listeners[t] || []).push(f);
};
El.prototype.fire = function (t) {
  var event = { key: "", preventDefault: function () {} };
  (this.listeners[t] || []).forEach(function (f) { f(event); });
};
El.prototype.click = function () { this.fire("click"); };
El.prototype.appendChild = function (c) { this.children.push(c); };
Object.defineProperty(El.prototype, "textContent", {
  get: function () { return this._text; },
  set: function (v) { this._text = v; this.children = []; this._value = null; }
});
Object.defineProperty(El.prototype, "value", {  // a <select>: the first option by default
  get: function () {
    if (this._value !== null) { return this._value; }
    return this.children.length ? String(this.children[0].value) : "";
  },
  set: function (v) { this._value = String(v); }
});
var els = {};
["view", "head", "info", "tokens", "attn-data"].forEach(function (k) { els[k] = new El(); });
els["attn-data"]._text = DATA;
var toks = [];
for (var i = 0; i < N; i++) { toks.push(new El()); }
var doc = new El();
global.document = {
  getElementById: function (k) { return els[k]; },
  querySelectorAll: function () { return toks; },
  createElement: function () { return { value: "", textContent: "" }; },
  addEventListener: function (t, f) { doc.addEventListener(t, f); }
};
function alphas() {
  return toks.map(function (t) {
    var m = /, ([0-9.]+)\\)$/.exec(t.style.backgroundColor || "");
    return m ? +m[1] : 0;
  });
}
var log = {};
"""

SCENARIO = """
toks[1].fire("mouseenter"); log.hover = alphas(); log.info = els.info.textContent;
log.heads = els.head.children.map(function (o) { return o.textContent; });
els.head.value = "0"; els.head.fire("change"); log.head0 = alphas();
toks[2].click(); toks[0].fire("mouseenter"); log.pinned = alphas();
log.focus = toks.map(function (t) { return !!t.classes.focus; });
els.view.value = "1"; els.view.fire("change"); log.scores = alphas();
log.headDisabled = els.head.disabled;
console.log(JSON.stringify(log));
"""


@pytest.mark.skipif(shutil.which("node") is None, reason="node is not installed")
def test_hover_click_and_menus_shade_tokens_by_their_row(tmp_path: Path) -> None:
    att = model(1, 2, 4, seed=7)
    page = attention_html(att, ["[CLS]", "cat", "sat", "."], extra_scores={"s": [1, -2, 0, 4]})
    scripts = [text for _, text in parse(page).scripts]
    program = (
        f"var DATA = {json.dumps(scripts[0])}; var N = 4;\n{DOM_STUB}\n{scripts[1]}\n{SCENARIO}"
    )
    (tmp_path / "run.js").write_text(program, encoding="utf-8")
    result = subprocess.run(
        ["node", str(tmp_path / "run.js")], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    log = json.loads(result.stdout)

    def expected(row: np.ndarray) -> list[float]:
        milli = np.rint(row * 1000)
        return list(np.round(milli / milli.max(), 3))

    assert log["heads"] == ["mean over heads", "head 0", "head 1"]
    np.testing.assert_allclose(log["hover"], expected(att[0].mean(0)[1].numpy()), atol=1e-3)
    assert log["info"].startswith("\u201ccat\u201d (#1) attends most to:")
    np.testing.assert_allclose(log["head0"], expected(att[0][0][1].numpy()), atol=1e-3)
    # Clicking token 2 pins it: hovering token 0 afterwards changes nothing.
    np.testing.assert_allclose(log["pinned"], expected(att[0][0][2].numpy()), atol=1e-3)
    assert log["focus"] == [False, False, True, False]
    np.testing.assert_allclose(log["scores"], [0.25, 0.5, 0.0, 1.0])
    assert log["headDisabled"] is True
