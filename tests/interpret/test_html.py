"""HTML highlight pages: escaped, one span per token with its weight, self-contained."""

from __future__ import annotations

import re
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from attnlab.interpret import TextAttentionExample, highlight_html, write_highlight_html


class TokenSpans(HTMLParser):
    """Collects (text, attributes) of every <span class="tok"> and all tag names."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.spans: list[tuple[str, dict[str, str | None]]] = []
        self.tags: list[str] = []
        self._open: dict[str, str | None] | None = None
        self._text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append(tag)
        if tag == "span" and dict(attrs).get("class") == "tok":
            self._open, self._text = dict(attrs), []

    def handle_data(self, data: str) -> None:
        if self._open is not None:
            self._text.append(data)

    def handle_endtag(self, tag: str) -> None:
        if tag == "span" and self._open is not None:
            self.spans.append(("".join(self._text), self._open))
            self._open = None


def parse(page: str) -> TokenSpans:
    parser = TokenSpans()
    parser.feed(page)
    parser.close()
    return parser


def alpha(attrs: dict[str, str | None]) -> float:
    match = re.search(r"rgba\([^)]*,\s*([0-9.]+)\)", attrs["style"] or "")
    assert match, attrs
    return float(match.group(1))


def test_one_span_per_token_with_weight_tooltip() -> None:
    ex = TextAttentionExample(["a", "gorgeous", "film"], [0.231, 0.5, 0.269], caption="pos")
    spans = parse(highlight_html([ex], title="t")).spans
    assert [text for text, _ in spans] == ["a", "gorgeous", "film"]
    assert [attrs["title"] for _, attrs in spans] == ["0.231", "0.500", "0.269"]


def test_intensity_is_weight_over_example_max() -> None:
    examples = [
        TextAttentionExample(["x", "y", "z"], [0.1, 0.4, 0.2]),
        TextAttentionExample(["p", "q"], [3.0, 1.5]),  # need not sum to 1
    ]
    spans = parse(highlight_html(examples, title="t")).spans
    np.testing.assert_allclose([alpha(a) for _, a in spans], [0.25, 1.0, 0.5, 1.0, 0.5])


def test_all_zero_weights_give_no_shading() -> None:
    spans = parse(highlight_html([TextAttentionExample(["a", "b"], [0.0, 0.0])], title="t")).spans
    assert [alpha(a) for _, a in spans] == [0.0, 0.0]


def test_text_is_escaped() -> None:
    ex = TextAttentionExample(
        ["<script>alert(1)</script>", "&", '"q"', "<b>"],
        [0.25, 0.25, 0.25, 0.25],
        caption="<img src=x onerror=alert(1)>",
        label="<i>",
    )
    page = highlight_html([ex], title="<title> & co")
    assert "<script>" not in page and "<img" not in page and "<i>" not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    parsed = parse(page)
    assert "script" not in parsed.tags and "img" not in parsed.tags and "b" not in parsed.tags
    assert [text for text, _ in parsed.spans] == ex.tokens


def test_page_is_self_contained() -> None:
    page = highlight_html([TextAttentionExample(["hi"], [1.0], caption="c")], title="t")
    assert page.startswith("<!DOCTYPE html>")
    assert "http://" not in page and "https://" not in page
    assert not re.search(r"\b(src|href)\s*=", page)
    tags = set(parse(page).tags)
    assert "style" in tags  # inline CSS
    assert not tags & {"script", "link", "img", "iframe"}


def test_caption_label_and_legend_come_before_tokens() -> None:
    ex = TextAttentionExample(
        ["fine"], [1.0], caption="true: positive, predicted: positive (0.93)", label="ok"
    )
    page = highlight_html([ex], title="Sentiment")
    first_token = page.index('class="tok"')
    assert page.index("true: positive, predicted: positive (0.93)") < first_token
    assert page.index(">ok<") < first_token
    assert page.index('class="legend"') < first_token
    assert "<title>Sentiment</title>" in page


def test_weights_from_tensors_and_arrays() -> None:
    examples = [
        TextAttentionExample(["a", "b"], torch.tensor([0.25, 0.75], dtype=torch.bfloat16)),
        TextAttentionExample(["c", "d"], np.array([0.5, 0.5])),
        TextAttentionExample(["e"], torch.tensor([1.0], requires_grad=True)),
    ]
    titles = [a["title"] for _, a in parse(highlight_html(examples, title="t")).spans]
    assert titles == ["0.250", "0.750", "0.500", "0.500", "1.000"]


def test_tiny_weights_are_not_shown_as_zero() -> None:
    spans = parse(highlight_html([TextAttentionExample(["a", "b"], [4e-5, 1.0])], title="t")).spans
    assert spans[0][1]["title"] == "4.0e-05"


@pytest.mark.parametrize(
    ("tokens", "weights", "match"),
    [
        (["a", "b"], [0.5, float("nan")], "NaN"),
        (["a", "b"], [0.5, float("inf")], "infinite"),
        (["a", "b"], [1.5, -0.5], "non-negative"),
        (["a", "b", "c"], [0.5, 0.5], "tokens has 3 tokens but the weights have 2"),
        (["a"], [[1.0]], "1 dimension"),
    ],
    ids=["nan", "inf", "negative", "mismatch", "2d"],
)
def test_bad_examples_raise_value_error(tokens: list[str], weights: list, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        TextAttentionExample(tokens, weights)


def test_wrong_types_raise_type_error() -> None:
    with pytest.raises(TypeError, match="list of strings"):
        TextAttentionExample("abc", [0.2, 0.3, 0.5])  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=r"examples\[0\]"):
        highlight_html([(["a"], [1.0])], title="t")  # type: ignore[list-item]


def test_example_is_frozen() -> None:
    ex = TextAttentionExample(["a"], [1.0])
    with pytest.raises(AttributeError):
        ex.caption = "changed"  # type: ignore[misc]


def test_no_examples_still_renders_a_page() -> None:
    page = highlight_html([], title="empty")
    assert "No examples" in page and page.rstrip().endswith("</html>")


def test_write_creates_utf8_file(tmp_path: Path) -> None:
    ex = TextAttentionExample(["économique", "européenne", "日本"], [0.2, 0.3, 0.5])
    out = write_highlight_html([ex], tmp_path / "run" / "attention.html", title="Zone")
    assert out == tmp_path / "run" / "attention.html"
    page = out.read_text(encoding="utf-8")
    assert page == highlight_html([ex], title="Zone")
    assert [text for text, _ in parse(page).spans] == ex.tokens


@settings(max_examples=40, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.text(st.characters(blacklist_categories=("Cs", "Cc")), min_size=1, max_size=8),
            st.floats(min_value=0.0, max_value=1e3, allow_nan=False),
        ),
        min_size=1,
        max_size=12,
    )
)
def test_any_text_round_trips_through_the_page(pairs: list[tuple[str, float]]) -> None:
    tokens = [t for t, _ in pairs]
    weights = [w for _, w in pairs]
    spans = parse(highlight_html([TextAttentionExample(tokens, weights)], title="t")).spans
    assert [text for text, _ in spans] == tokens
    alphas = [alpha(a) for _, a in spans]
    assert all(0.0 <= a <= 1.0 for a in alphas)
    if max(weights) > 0:
        assert alphas[int(np.argmax(weights))] == 1.0
