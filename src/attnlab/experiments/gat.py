"""Graph attention networks on Cora: the transductive setup of Velickovic et al. (2018).

"Graph Attention Networks" (ICLR 2018), section 3.3: two layers, the first
``GATConv(F, 8, heads=8)`` with concatenated heads and ELU (64 features), the second
``GATConv(64, C, heads=1)`` giving the class scores; dropout 0.6 on both layers'
inputs and on the normalised attention coefficients; L2 weight decay 5e-4; Adam with
learning rate 0.005; full-batch training on the 140 labelled nodes, up to 1000 epochs,
stopping when neither validation loss nor validation accuracy improved for 100 epochs
and keeping the weights of the last epoch that improved both (the authors' code).

Compared models, same network and recipe:

- ``gat``: learned attention (the paper; 83.0 ± 0.7 % on Cora over 100 runs).
- ``gat-uniform``: every neighbour (self included) weighs 1/degree, no attention
  parameters used; how much of GAT's accuracy is the attention.
- ``gatv2``: dynamic attention (Brody et al. 2022), optional.

A picture shows the t-SNE of the seed-0 GAT's first-layer output (64-d, after ELU,
eval mode) with edges drawn by that layer's attention averaged over heads (fig. 2).

Run: ``attnlab run gat [--dataset cora] [--runs N] [--models gat gat-uniform gatv2]``.
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from attnlab._validate import lookup
from attnlab.data.planetoid import PlanetoidGraph, load_planetoid
from attnlab.experiments import (
    ExperimentSpec,
    ModelResult,
    Outcome,
    RunDir,
    SeedResult,
    count_parameters,
    register,
    run_models,
)
from attnlab.experiments import _checks as checks
from attnlab.interpret.graph import plot_graph_attention
from attnlab.models.gat import GAT, GAT_LAYERS
from attnlab.train import AnyImproves, Epochs, Patience, seed_everything, train_loop

MODELS = tuple(GAT_LAYERS)
# The authors' early stopping: progress while validation accuracy or loss is at its best
# so far (ties count); the weights kept are the last ones at which both were.
PAPER_STOPPING = AnyImproves(maximize=("accuracy",), minimize=("loss",))
_PICTURE = "tsne_attention_gat.png"
CORA_CLASSES = [
    "Case_Based",
    "Genetic_Algorithms",
    "Neural_Networks",
    "Probabilistic_Methods",
    "Reinforcement_Learning",
    "Rule_Learning",
    "Theory",
]  # Cora's label order (as in Kipf's and PyG's loaders)


@dataclass(frozen=True)
class GATConfig:
    """Settings of the GAT experiment (defaults: the paper's Cora recipe).

    Attributes:
        dataset: Planetoid graph with the public split: cora or citeseer (pinned, fetched
            and verified, or a verified copy in the data folder's planetoid/); pubmed is
            not ready (its checksums are not pinned).
        runs: training runs per model (seeds 0..N-1).
        models: gat (learned attention), gat-uniform (1/degree weights), gatv2.
        hidden: features per head of the first layer (paper: 8).
        heads: heads of the first layer, concatenated (paper: 8).
        output_heads: heads of the output layer, averaged (paper, Cora: 1).
        dropout: dropout on each layer's input and on the attention coefficients.
        lr: Adam learning rate.
        weight_decay: L2 penalty (Adam's weight_decay).
        epochs: maximum epochs per run.
        patience: epochs without improvement of validation loss or accuracy.
        picture: draw the t-SNE + attention picture for the seed-0 gat model.
        device: cpu, cuda or cuda:N.
        data_dir: folder with planetoid/ (default: $ATTNLAB_DATA_DIR, then the cache).
    """

    dataset: Literal["cora", "citeseer", "pubmed"] = "cora"
    runs: int = 20
    models: tuple[str, ...] = ("gat", "gat-uniform")
    hidden: int = 8
    heads: int = 8
    output_heads: int = 1
    dropout: float = 0.6
    lr: float = 0.005
    weight_decay: float = 5e-4
    epochs: int = 1000
    patience: int = 100
    picture: bool = True
    device: str = "cpu"
    data_dir: str = ""

    def __post_init__(self) -> None:
        checks.field_types(self)
        checks.names(self, "models", MODELS)
        checks.at_least(self, 1, "runs", "hidden", "heads", "output_heads", "epochs", "patience")
        checks.at_least(self, 0, "weight_decay")
        checks.fraction(self, "dropout")
        checks.positive(self, "lr")
        checks.device(self, auto=False)
        checks.folder(self, "data_dir")


def _evaluate(model: GAT, g: PlanetoidGraph, mask: Tensor) -> tuple[float, float]:
    model.eval()
    with torch.no_grad():
        logits = model(g.x, g.edge_index)
    loss = F.cross_entropy(logits[mask], g.y[mask]).item()
    acc = (logits[mask].argmax(-1) == g.y[mask]).float().mean().item()
    return loss, acc


def train_one(cfg: GATConfig, g: PlanetoidGraph, kind: str, seed: int) -> tuple[GAT, dict]:
    """Train one model with the paper's early stopping; return it (best weights) and stats.

    Full-batch epochs on the one training loop (:func:`attnlab.train.train_loop`) with
    :data:`PAPER_STOPPING`: the best weights are those of the last epoch at which
    validation accuracy was at least its best so far and validation loss at most its
    lowest so far; training stops after ``patience`` epochs in which neither was.
    """
    seed_everything(seed)
    model = GAT(
        g.x.shape[1],
        g.classes,
        hidden=cfg.hidden,
        heads=cfg.heads,
        output_heads=cfg.output_heads,
        dropout=cfg.dropout,
        conv=lookup(GAT_LAYERS, kind, "GAT layer"),
    ).to(g.x.device)
    optimizer = torch.optim.Adam(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)

    def step(_: object) -> Tensor:
        logits = model(g.x, g.edge_index)
        return F.cross_entropy(logits[g.train_mask], g.y[g.train_mask])

    def validate() -> dict[str, float]:
        loss, acc = _evaluate(model, g, g.val_mask)
        return {"val_loss": loss, "val_accuracy": acc}

    start = time.perf_counter()
    state = train_loop(
        model,
        lambda epoch: (None,),  # one full-batch step per epoch
        step=step,
        validate=validate,
        optimizer=optimizer,
        stop=(Epochs(cfg.epochs), Patience(cfg.patience)),
        monitor="loss",
        improvement=PAPER_STOPPING,
        progress=False,
    )
    _, test_acc = _evaluate(model, g, g.test_mask)
    stats = {
        "test_accuracy": test_acc,
        "val_accuracy": _evaluate(model, g, g.val_mask)[1],
        "seconds": time.perf_counter() - start,
        "best_epoch": state.best_epoch,
        "epochs": len(state.history),
    }
    return model, stats


def _undirected(edge_index: Tensor, weights: Tensor, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Drop self-loops and merge the two directions of each edge (mean weight)."""
    src, dst = edge_index.cpu().numpy()
    w = weights.detach().float().cpu().numpy()
    keep = src != dst
    src, dst, w = src[keep], dst[keep], w[keep]
    keys, inverse = np.unique(np.minimum(src, dst) * n + np.maximum(src, dst), return_inverse=True)
    mean = np.bincount(inverse, w) / np.bincount(inverse)
    return np.stack([keys // n, keys % n]), mean


def draw(g: PlanetoidGraph, model: GAT, path: Path) -> None:
    """t-SNE of the first layer's output, edges by its head-averaged attention."""
    from sklearn.manifold import TSNE

    model.eval()
    with torch.no_grad():
        h, (edges, alpha) = model.hidden(g.x, g.edge_index)
    coords = TSNE(2, init="pca", random_state=0, perplexity=30.0).fit_transform(h.cpu().numpy())
    pairs, weights = _undirected(edges, alpha.mean(1), g.num_nodes)
    names = CORA_CLASSES if g.name == "cora" else None
    plot_graph_attention(
        coords,
        pairs,
        weights,
        g.y.cpu(),
        path,
        title=f"GAT on {g.name}: t-SNE of layer-1 features, edges by mean attention (seed 0)",
        class_names=names,
    )


def _train_seed(cfg: GATConfig, g: PlanetoidGraph, kind: str, seed: int, out: Path) -> SeedResult:
    """:func:`train_one` for the experiment loop; the seed-0 gat model is drawn."""
    model, stats = train_one(cfg, g, kind, seed)
    pictures = []
    if cfg.picture and kind == "gat" and seed == 0:
        draw(g, model, out / _PICTURE)
        pictures = [_PICTURE]
    return SeedResult(
        metrics={"test_accuracy": stats["test_accuracy"]},
        parameters=count_parameters(model),
        seconds=stats["seconds"],
        pictures=pictures,
        extra={key: stats[key] for key in ("val_accuracy", "best_epoch", "epochs")},
        note=f"best epoch {stats['best_epoch']}/{stats['epochs']}",
    )


def _summary(kind: str, runs: list[SeedResult]) -> dict[str, list]:
    return {
        "val_accuracy_runs": [r.extra["val_accuracy"] for r in runs],
        "best_epoch_runs": [r.extra["best_epoch"] for r in runs],
        "epochs_runs": [r.extra["epochs"] for r in runs],
        "seconds_runs": [round(r.seconds or 0.0, 2) for r in runs],
    }


def run(cfg: GATConfig, run_dir: RunDir) -> list[ModelResult]:
    """Train every model over every seed; finished seeds are read back on --resume."""
    g = load_planetoid(cfg.dataset, data_dir=cfg.data_dir or None)
    device = torch.device(cfg.device)
    tensors = ("x", "y", "edge_index", "train_mask", "val_mask", "test_mask")
    g = PlanetoidGraph(
        name=g.name, classes=g.classes, **{k: getattr(g, k).to(device) for k in tensors}
    )
    g = dataclasses.replace(g, x=g.x.to_sparse().coalesce())  # cheap input dropout
    return run_models(
        cfg.models,
        range(cfg.runs),
        lambda kind, seed: _train_seed(cfg, g, kind, seed, run_dir.path),
        records=run_dir,
        summary=_summary,
    )


def _report(cfg: GATConfig, outcome: Outcome, run_dir: RunDir) -> str:
    lines = [
        "",
        f"Dataset: {cfg.dataset}, Planetoid public split (20 labelled nodes per class, "
        "500 validation, 1000 test), features normalised by row, symmetric graph with "
        "self-loops.",
        "",
        f"Recipe (Velickovic et al. 2018): GATConv(F, {cfg.hidden}, heads={cfg.heads}) + ELU, "
        f"GATConv({cfg.hidden * cfg.heads}, C, heads={cfg.output_heads}); dropout "
        f"{cfg.dropout} on inputs and attention; Adam lr {cfg.lr}, weight decay "
        f"{cfg.weight_decay}; full batch, at most {cfg.epochs} epochs, patience {cfg.patience} "
        "on validation loss and accuracy, test accuracy of the best validation epoch. "
        "`gat-uniform` weighs every neighbour 1/degree.",
        "",
        "Paper: 83.0 ± 0.7 % (GAT, Cora, 100 runs).",
        "",
    ]
    for r in outcome.results:
        epochs = r.extra["best_epoch_runs"]
        lines.append(
            f"- {r.model}: best epoch {np.mean(epochs):.0f} on average "
            f"(range {min(epochs)}–{max(epochs)}), {r.seconds:.1f} s per run."
        )
        for picture in r.extra.get("pictures", []):
            lines.append(f"- [{r.model}: t-SNE of layer-1 features, edges by attention]({picture})")
    return "\n".join(lines) + "\n"


register(
    ExperimentSpec(
        name="gat",
        description="Graph attention networks vs uniform neighbour weights on Cora",
        config=GATConfig,
        run=run,
        dataset=lambda cfg: cfg.dataset,
        report=_report,
    )
)
