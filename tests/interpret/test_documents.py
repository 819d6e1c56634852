import math
import re

import numpy as np
import pytest
import torch

from attnlab.interpret.documents import (
    DocumentAttentionExample,
    document_html,
    write_document_html,
)


def _example(**kw):
    return DocumentAttentionExample(
        [["a", "<b>"], ["c"]],
        [torch.tensor([0.25, 0.75]), np.array([1.0])],
        torch.tensor([0.64, 0.36]),
        **kw,
    )


def _alphas(page):
    return [
        float(a)
        for a in re.findall(
            r'class="tok" style="background-color: rgba\(255, 127, 14, ([\d.]+)\)', page
        )
    ]


def test_page_is_self_contained_and_escaped(tmp_path):
    page = document_html([_example(caption="x & y", label="<ok>")], title="<t>")
    assert page.startswith("<!DOCTYPE html>") and "&lt;t&gt;" in page
    assert "&lt;b&gt;" in page and "<b>" not in page.split("<body>")[1]
    assert "x &amp; y" in page and "&lt;ok&gt;" in page
    assert "<script" not in page and "http" not in page
    out = write_document_html([_example()], tmp_path / "sub" / "doc.html", title="t")
    assert out.read_text(encoding="utf-8").count('class="sentence"') == 2


def test_sentence_bars_and_paper_word_scaling():
    page = document_html([_example()], title="t")
    widths = [float(w) for w in re.findall(r"width: ([\d.]+)%", page)]
    assert widths == [100.0, pytest.approx(100 * 0.36 / 0.64, abs=0.1)]
    assert 'title="sentence weight 0.640"' in page
    # Shade = sqrt(sentence weight) * word weight, relative to the document's largest.
    shades = [math.sqrt(0.64) * 0.25, math.sqrt(0.64) * 0.75, math.sqrt(0.36) * 1.0]
    expected = [s / max(shades) for s in shades]
    assert _alphas(page) == pytest.approx(expected, abs=1e-3)
    # Tooltips still give each word's own weight.
    assert re.findall(r'title="([\d.]+)" data-weight', page) == ["0.250", "0.750", "1.000"]
    plain = document_html([_example()], title="t", word_scale="none")
    assert _alphas(plain) == pytest.approx([0.25, 0.75, 1.0], abs=1e-3)


def test_zero_weights_draw_nothing():
    ex = DocumentAttentionExample([["a"], ["b"]], [[0.0], [1.0]], [0.0, 0.0])
    page = document_html([ex], title="t")
    assert _alphas(page) == [0.0, 0.0] and "width: 0.0%" in page
    assert "No examples" in document_html([], title="t")


def test_mismatched_shapes_are_one_clear_line():
    with pytest.raises(ValueError, match="2 sentences, 1 word-weight rows and 2 sentence"):
        DocumentAttentionExample([["a"], ["b"]], [[1.0]], [0.5, 0.5])
    with pytest.raises(ValueError, match=r"sentences\[1\] has 1 tokens but the weights have 2"):
        DocumentAttentionExample([["a"], ["b"]], [[1.0], [0.5, 0.5]], [0.5, 0.5])
    with pytest.raises(ValueError, match="sentence_weights must be non-negative"):
        DocumentAttentionExample([["a"]], [[1.0]], [-1.0])
    with pytest.raises(ValueError, match="NaN"):
        DocumentAttentionExample([["a"]], [[float("nan")]], [1.0])
    with pytest.raises(TypeError, match="single string"):
        DocumentAttentionExample("a b", [[1.0]], [1.0])
    with pytest.raises(TypeError, match="examples\\[0\\] must be a DocumentAttentionExample"):
        document_html(["x"], title="t")
    with pytest.raises(ValueError, match="word_scale"):
        document_html([_example()], title="t", word_scale="log")
