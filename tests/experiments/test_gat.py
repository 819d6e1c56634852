import json

import pytest
import torch
import torch.nn.functional as F

import attnlab.experiments.gat as gat
from attnlab.data.planetoid import PlanetoidGraph
from attnlab.experiments import run_experiment
from attnlab.models import GAT_LAYERS
from attnlab.train import seed_everything


def _toy_graph(name="cora", data_dir=None):
    """60 nodes in 3 classes, features that carry the class, edges mostly within class."""
    g = torch.Generator().manual_seed(0)
    n, f, c = 60, 12, 3
    y = torch.arange(n) % c
    x = (torch.rand(n, f, generator=g) < 0.2).float()
    x[torch.arange(n), y] = 1.0
    x = x / x.sum(1, keepdim=True)
    src = torch.randint(0, n, (150,), generator=g)
    dst = (src + c * torch.randint(1, 5, (150,), generator=g)) % n  # same class
    both = torch.cat([torch.stack([src, dst]), torch.stack([dst, src])], 1)
    both = both[:, both[0] != both[1]].unique(dim=1)
    masks = [torch.zeros(n, dtype=torch.bool) for _ in range(3)]
    masks[0][:15], masks[1][15:30], masks[2][30:] = True, True, True
    return PlanetoidGraph("cora", x, y, both, *masks, classes=c)


@pytest.fixture
def toy(monkeypatch):
    monkeypatch.setattr(gat, "load_planetoid", _toy_graph)


def test_smoke_run_writes_results_report_and_picture(toy, tmp_path):
    cfg = gat.GATConfig(runs=2, epochs=6, patience=3, models=gat.MODELS, hidden=4, heads=2)
    out = run_experiment("gat", cfg, out=tmp_path / "run")
    results = json.loads((out / "results.json").read_text())
    assert results["experiment"] == "gat" and results["dataset"] == "cora"
    assert [r["model"] for r in results["results"]] == list(gat.MODELS)
    for r in results["results"]:
        runs = r["metrics"]["test_accuracy"]["runs"]
        assert len(runs) == 2 and all(0.0 <= a <= 1.0 for a in runs)
        assert r["parameters"] > 0 and len(r["seconds_runs"]) == 2
        assert all(1 <= e <= 6 for e in r["best_epoch_runs"])
    picture = out / "tsne_attention_gat.png"
    assert picture.read_bytes()[:4] == b"\x89PNG"
    report = (out / "report.md").read_text()
    assert "gat-uniform" in report and "attnlab run gat" in report and picture.name in report
    # Resuming a finished seed reads it back instead of training again.
    again = json.loads((out / "checkpoints" / "gat" / "seed1.json").read_text())
    assert (
        again["metrics"]["test_accuracy"]
        == results["results"][0]["metrics"]["test_accuracy"]["runs"][1]
    )


def test_same_seed_same_result_and_uniform_attention():
    graph = _toy_graph()
    cfg = gat.GATConfig(epochs=5, patience=5, hidden=4, heads=2)
    _, a = gat.train_one(cfg, graph, "gat", 3)
    _, b = gat.train_one(cfg, graph, "gat", 3)
    assert a["test_accuracy"] == b["test_accuracy"] and a["best_epoch"] == b["best_epoch"]
    model, _ = gat.train_one(cfg, graph, "gat-uniform", 0)
    model.eval()
    with torch.no_grad():
        _, (edges, alpha) = model.hidden(graph.x, graph.edge_index)
    degree = torch.bincount(edges[1], minlength=60).float()
    torch.testing.assert_close(alpha, (1 / degree[edges[1]]).unsqueeze(1).expand(-1, 2))


def test_sparse_input_dropout_matches_dense_in_eval_and_keeps_zeros():
    graph = _toy_graph()
    torch.manual_seed(0)
    model = gat.GAT(12, 3, hidden=4, heads=2)
    model.eval()
    sparse = graph.x.to_sparse()
    torch.testing.assert_close(model(sparse, graph.edge_index), model(graph.x, graph.edge_index))
    model.train()
    h_sparse, _ = model.hidden(sparse, graph.edge_index)  # runs; zeros stay zeros
    assert h_sparse.shape == (60, 8)


def test_undirected_merges_directions_and_drops_self_loops():
    edges = torch.tensor([[0, 1, 1, 2, 2], [1, 0, 1, 0, 2]])
    pairs, weights = gat._undirected(edges, torch.tensor([0.2, 0.6, 1.0, 0.5, 1.0]), 3)
    assert pairs.tolist() == [[0, 0], [1, 2]]
    assert weights.tolist() == pytest.approx([0.4, 0.5])


def test_bad_config_is_one_clear_line():
    with pytest.raises(ValueError, match="--models gcn is unknown; choose from gat, "):
        gat.GATConfig(models=("gcn",))
    with pytest.raises(ValueError, match="--runs must be at least 1, got 0"):
        gat.GATConfig(runs=0)
    with pytest.raises(ValueError, match=r"--dropout must be in \[0, 1\), got 1.0"):
        gat.GATConfig(dropout=1.0)
    with pytest.raises(ValueError, match="--models is empty"):
        gat.GATConfig(models=())


def _paper_loop(cfg, g, kind, seed):
    """The GAT experiment's own loop before it ran on train_loop: the reference."""
    seed_everything(seed)
    model = gat.GAT(
        g.x.shape[1],
        g.classes,
        hidden=cfg.hidden,
        heads=cfg.heads,
        output_heads=cfg.output_heads,
        dropout=cfg.dropout,
        conv=GAT_LAYERS[kind],
    )
    optimizer = torch.optim.Adam(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    best_acc, best_loss, waited, best_epoch = 0.0, float("inf"), 0, 0
    best_state = {k: v.clone() for k, v in model.state_dict().items()}
    for epoch in range(1, cfg.epochs + 1):
        model.train()
        optimizer.zero_grad(set_to_none=True)
        logits = model(g.x, g.edge_index)
        F.cross_entropy(logits[g.train_mask], g.y[g.train_mask]).backward()
        optimizer.step()
        val_loss, val_acc = gat._evaluate(model, g, g.val_mask)
        if val_acc >= best_acc or val_loss <= best_loss:
            if val_acc >= best_acc and val_loss <= best_loss:
                best_state = {k: v.clone() for k, v in model.state_dict().items()}
                best_epoch = epoch
            best_acc, best_loss = max(best_acc, val_acc), min(best_loss, val_loss)
            waited = 0
        else:
            waited += 1
            if waited >= cfg.patience:
                break
    model.load_state_dict(best_state)
    return model, best_epoch, epoch


@pytest.mark.parametrize("kind", ["gat", "gatv2"])
def test_train_one_is_the_papers_early_stopping_on_the_one_loop(kind):
    graph = _toy_graph()
    cfg = gat.GATConfig(epochs=40, patience=4, hidden=4, heads=2, lr=0.2)
    ref, best_epoch, epochs = _paper_loop(cfg, graph, kind, 1)
    model, stats = gat.train_one(cfg, graph, kind, 1)
    assert (stats["best_epoch"], stats["epochs"]) == (best_epoch, epochs)
    assert epochs < 40  # patience ended it (for gatv2 after a partial improvement)
    for name, tensor in ref.state_dict().items():
        assert torch.equal(model.state_dict()[name], tensor), name
