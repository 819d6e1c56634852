import pytest
import sacrebleu

from attnlab.data.bleu import bleu_signature, corpus_bleu

HYPS = [
    "A man in an orange hat starring at something.",
    "A boston terrier is running on lush green grass.",
    "A girl in karate uniform breaking a stick.",
]
REFS = [
    "A man in an orange hat staring at something.",
    "A Boston Terrier is running on lush green grass in front of a white fence.",
    "A girl in karate uniform breaking a stick with a front kick.",
]


def test_identical_is_100():
    assert corpus_bleu(REFS, REFS) == pytest.approx(100.0)


def test_disjoint_is_0():
    assert corpus_bleu(["xyz qqq"], ["A dog runs."]) == 0.0


def test_matches_sacrebleu_directly():
    expected = sacrebleu.corpus_bleu(HYPS, [REFS]).score
    assert corpus_bleu(HYPS, REFS) == pytest.approx(expected, abs=1e-9)
    assert 0.0 < corpus_bleu(HYPS, REFS) < 100.0


def test_is_cased():
    lower = [r.lower() for r in REFS]
    assert corpus_bleu(lower, REFS) < 100.0


def test_signature():
    signature = bleu_signature()
    assert signature.startswith("nrefs:1|case:mixed|eff:no|tok:13a|smooth:exp|version:")
    assert signature.endswith(sacrebleu.__version__)


@pytest.mark.parametrize(
    ("hyps", "refs", "error", "message"),
    [
        (HYPS, REFS[:2], ValueError, "got 3 hypotheses but 2 references"),
        ([], [], ValueError, "empty"),
        ("a dog", ["a dog"], TypeError, "hypotheses must be a list of strings"),
        (["a dog"], [None], TypeError, r"references\[0\] is NoneType"),
    ],
)
def test_bad_input(hyps, refs, error, message):
    with pytest.raises(error, match=message) as info:
        corpus_bleu(hyps, refs)
    assert "\n" not in str(info.value)
