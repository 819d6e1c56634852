"""The translation experiment's settings, one typed piece per concern.

:class:`TranslateConfig` inherits what the run trains (:class:`TranslateTask`), the RNN
encoder-decoder's settings (:class:`RNNSettings`), the Transformer's
(:class:`TransformerSettings`) and the budgeted training's (:class:`BudgetTraining`), so
its flags stay flat (``--hidden-size``, ``--d-model``) while each model builder is typed
against its own family's piece only.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from attnlab.experiments import _checks as checks
from attnlab.experiments._settings import Checked
from attnlab.models.seq2seq_attentions import SEQ2SEQ_ATTENTIONS

__all__ = [
    "MODELS",
    "TRANSFORMER",
    "BudgetTraining",
    "RNNSettings",
    "TransformerSettings",
    "TranslateConfig",
    "TranslateTask",
]

Language = Literal["de", "en", "fr"]
TRANSFORMER = "transformer"
ATTENTIONS = tuple(SEQ2SEQ_ATTENTIONS)  # the RNN's variants, as --attention names them
MODELS = (*ATTENTIONS, TRANSFORMER)


@dataclass(frozen=True)
class TranslateTask(Checked):
    """What a translation run trains: the languages and the variants.

    Attributes:
        src: source language.
        tgt: target language.
        model: rnn (an encoder-decoder RNN with the --attention variant) or transformer.
        attention: the RNN's attention variant (ignored with --compare).
        compare: train every variant in `variants` at the same budget.
        variants: the variants of --compare (RNN attentions, and "transformer").
    """

    src: Language = "de"
    tgt: Language = "en"
    model: Literal["rnn", "transformer"] = "rnn"
    attention: str = "luong-general"
    compare: bool = False
    variants: tuple[str, ...] = ATTENTIONS

    def __post_init__(self) -> None:
        super().__post_init__()
        checks.names(self, "attention", ATTENTIONS)
        checks.names(self, "variants", MODELS)
        if self.src == self.tgt:
            raise ValueError(f"--src and --tgt must differ; both are {self.src!r}")

    @property
    def models(self) -> tuple[str, ...]:
        """The variants this run trains."""
        if self.compare:
            return self.variants
        return (TRANSFORMER,) if self.model == TRANSFORMER else (self.attention,)


@dataclass(frozen=True)
class RNNSettings(Checked):
    """The RNN encoder-decoder's settings (:class:`~attnlab.models.Seq2Seq`).

    Attributes:
        rnn: gru or lstm.
        embedding_dim: token embedding size.
        hidden_size: decoder state size, even (encoder: half per direction).
        layers: RNN layers.
        input_feeding: Luong's input feeding (slower: one RNN call per word).
        half_width: window half-width D of local-m and local-p.
        hard_evaluation: hard attention at test time: the argmax position, or the
            expectation (the soft context).
    """

    rnn: Literal["gru", "lstm"] = "gru"
    embedding_dim: int = 256
    hidden_size: int = 256
    layers: int = 1
    input_feeding: bool = False
    half_width: int = 5
    hard_evaluation: Literal["argmax", "expectation"] = "argmax"

    def __post_init__(self) -> None:
        super().__post_init__()
        checks.at_least(self, 1, "embedding_dim", "layers")
        checks.at_least(self, 2, "hidden_size")
        checks.multiple_of(self, "hidden_size", 2, "half per encoder direction")
        # half_width's lower bound depends on the variants run: see TranslateConfig.


@dataclass(frozen=True)
class TransformerSettings(Checked):
    """The Transformer's settings (:class:`~attnlab.models.transformer.TransformerSeq2Seq`).

    Attributes:
        d_model: Transformer width, a multiple of heads (of 2 x heads with rotary positions).
        heads: Transformer attention heads.
        ff_dim: Transformer feed-forward size.
        transformer_layers: Transformer encoder and decoder layers (each).
        positions: Transformer positions: sinusoidal, learned or rotary.
    """

    d_model: int = 256
    heads: int = 4
    ff_dim: int = 1024
    transformer_layers: int = 3
    positions: Literal["sinusoidal", "learned", "rotary"] = "sinusoidal"

    def __post_init__(self) -> None:
        super().__post_init__()
        checks.at_least(self, 1, "d_model", "heads", "ff_dim", "transformer_layers")
        checks.multiple_of(self, "d_model", self.heads, "--heads")
        if self.positions != "learned":  # sin/cos pairs per model width; rotated pairs per head
            step = 2 * self.heads if self.positions == "rotary" else 2
            checks.multiple_of(self, "d_model", step, f"{self.positions} positions")


@dataclass(frozen=True)
class BudgetTraining(Checked):
    """Training under a wall-clock budget (:func:`~attnlab.train.budget.fit_budget`), one seed.

    Attributes:
        budget_minutes: training budget per model (training plus validation).
        max_epochs: most epochs per model.
        patience: epochs without validation improvement before stopping.
        batch_size: sentence pairs per batch (batches group similar lengths).
        lr: Adam learning rate (halved after an epoch without improvement).
        warmup_steps: linear learning-rate warm-up over the first steps (0 = none).
        label_smoothing: label smoothing of the training loss.
        seed: seed of initialisation and batch order.
    """

    budget_minutes: float = 60.0
    max_epochs: int = 30
    patience: int = 4
    batch_size: int = 128
    lr: float = 2e-3
    warmup_steps: int = 0
    label_smoothing: float = 0.1
    seed: int = 0

    def __post_init__(self) -> None:
        super().__post_init__()
        checks.positive(self, "budget_minutes", "lr")
        checks.at_least(self, 1, "max_epochs", "patience", "batch_size")
        checks.at_least(self, 0, "warmup_steps", "seed")
        checks.fraction(self, "label_smoothing")


# The bases are listed in reverse of the order their flags appear in (dataclass fields
# follow the reversed MRO): task, RNN, Transformer, training, then the fields below.
@dataclass(frozen=True)
class TranslateConfig(BudgetTraining, TransformerSettings, RNNSettings, TranslateTask):
    """Settings of the translation experiment.

    Attributes:
        dropout: dropout on embeddings and before the output layer (Transformer: also
            on sublayers and attention probabilities).
        vocab_size: subword pieces per language (SentencePiece BPE, one model each).
        max_len: pieces per sentence; longer ones are cut with a warning.
        beam_size: beam of the reported BLEU (greedy is reported beside it).
        length_penalty: alpha of the beam's length normalisation score / len^alpha.
        examples: test sentences drawn as alignment heatmaps per model (0: none).
        train_limit: use only the first N training pairs (0 = all), for quick runs.
        data_dir: folder with multi30k/ (default: $ATTNLAB_DATA_DIR, then the cache).
    """

    dropout: float = 0.3
    vocab_size: int = 8000
    max_len: int = 60
    beam_size: int = 5
    length_penalty: float = 1.0
    examples: int = 3
    train_limit: int = 0
    data_dir: str = ""

    def __post_init__(self) -> None:
        super().__post_init__()
        checks.at_least(self, 1, "beam_size")
        checks.at_least(self, 0, "length_penalty", "examples", "train_limit")
        checks.at_least(self, 5, "vocab_size")  # SentencePiece's 4 specials and a piece
        checks.at_least(self, 3, "max_len")  # BOS, a word, EOS
        checks.at_least(self, 1 if "local-p" in self.models else 0, "half_width")
        checks.fraction(self, "dropout")
        checks.folder(self, "data_dir")

    def explained_stack(self) -> tuple[int, int]:
        """(layers, heads) that ``attnlab explain --model RUN`` draws: the Transformer encoder's.

        Raises:
            ValueError: If this run trained no Transformer.
        """
        if TRANSFORMER not in self.models:
            raise ValueError(
                f"this translate run trained {', '.join(self.models)}: only a Transformer run "
                "has self-attention layers to explain (attnlab run translate --model transformer)"
            )
        return self.transformer_layers, self.heads
