"""Improvement rules: which epochs restart patience and which weights are kept."""

import json
import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from attnlab.train import Epochs, Patience, train_loop
from attnlab.train._fitstate import FitState
from attnlab.train.policies import AnyImproves, Improvement, Verdict

# (val_accuracy, val_loss) per epoch, where the GAT rule and plain patience disagree:
# epoch 2 improves accuracy only, epoch 3 ties accuracy and lowers the loss (both at
# their best), epoch 5 ties accuracy alone; 6 and 7 improve nothing.
SCRIPT = [(0.5, 1.0), (0.6, 1.1), (0.6, 0.9), (0.55, 0.95), (0.6, 1.2), (0.5, 1.3), (0.5, 1.3)]
GAT_RULE = AnyImproves(maximize=("accuracy",), minimize=("loss",))


def judged(rule, script, monitor="loss", mode="min"):
    """Feed a scripted history through a rule as the loop does; the verdicts and the state."""
    state, verdicts = FitState(monitor=monitor, mode=mode), []
    for epoch, (acc, loss) in enumerate(script, 1):
        record = {"epoch": epoch, "val_accuracy": acc, "val_loss": loss}
        verdicts.append(rule.judge(state, record))
        state.update(record, nn.Linear(1, 1), verdicts[-1])
    return verdicts, state


def test_the_gat_rule_on_a_history_where_plain_patience_disagrees():
    verdicts, state = judged(GAT_RULE, SCRIPT)
    assert [tuple(v) for v in verdicts] == [
        (True, True),
        (True, False),  # accuracy at its best: progress, but the weights stay epoch 1's
        (True, True),  # accuracy ties its best, loss at its lowest: the new best
        (False, False),
        (True, False),  # a tie on accuracy alone still counts as progress
        (False, False),
        (False, False),
    ]
    assert (state.best_epoch, state.best_value, state.bad_epochs) == (3, 0.9, 2)
    # Plain patience on the loss would have stopped two epochs earlier (epoch 5) ...
    plain, loss_state = judged(Improvement(), SCRIPT)
    assert [v.improved for v in plain] == [True, False, True, False, False, False, False]
    assert Patience(2).reached(judged(Improvement(), SCRIPT[:5])[1])
    assert loss_state.best_epoch == 3
    # ... and on accuracy, which ignores ties, it keeps epoch 2, not epoch 3.
    _, acc_state = judged(Improvement(), SCRIPT, monitor="accuracy", mode="max")
    assert acc_state.best_epoch == 2


def test_a_nan_is_never_at_its_best_and_does_not_move_the_running_best():
    script = [(0.5, math.nan), (0.4, 2.0), (0.5, 2.0), (0.6, math.nan)]
    verdicts, state = judged(GAT_RULE, script)
    assert verdicts == [
        Verdict(improved=True, best=False),  # loss NaN: accuracy alone at its best
        Verdict(improved=True, best=False),  # the first real loss is at its best
        Verdict(improved=True, best=True),
        Verdict(improved=True, best=False),
    ]
    assert state.best_epoch == 3


def run(script, directory=None, epochs=10, patience=2):
    """train_loop on a tiny model whose validation follows `script` epoch by epoch."""
    torch.manual_seed(0)
    x, y = torch.randn(8, 2), torch.randn(8)
    model, at, snapshots = nn.Linear(2, 1), {}, {}

    def batches(epoch):
        at["epoch"] = epoch
        return [(x, y)]

    def validate():
        snapshots[at["epoch"]] = {k: v.clone() for k, v in model.state_dict().items()}
        acc, loss = script[at["epoch"] - 1]
        return {"val_accuracy": acc, "val_loss": loss}

    state = train_loop(
        model,
        batches,
        step=lambda b: F.mse_loss(model(b[0]).squeeze(-1), b[1]),
        validate=validate,
        optimizer=torch.optim.SGD(model.parameters(), lr=0.1),
        stop=(Epochs(epochs), Patience(patience)),
        improvement=GAT_RULE,
        checkpoint_dir=directory,
        resume=directory is not None,
        progress=False,
    )
    return model, state, snapshots


def test_train_loop_stops_and_keeps_weights_by_the_rule(tmp_path):
    model, state, snapshots = run(SCRIPT, tmp_path)
    assert (state.stopped_by, len(state.history), state.best_epoch) == ("patience", 7, 3)
    assert state.best_value == 0.9  # val_<monitor> of the best epoch
    for name, tensor in model.state_dict().items():
        assert torch.equal(tensor, snapshots[3][name]), name
    extra = json.loads((tmp_path / "last" / "checkpoint.json").read_text())["extra"]
    assert extra["settings"]["improvement"] == {
        "rule": "AnyImproves",
        "maximize": ["accuracy"],
        "minimize": ["loss"],
    }


def test_a_resumed_run_judges_as_if_never_stopped(tmp_path):
    ref_model, ref, _ = run(SCRIPT)
    run(SCRIPT, tmp_path, epochs=4)  # interrupted after epoch 4, one bad epoch counted
    model, state, _ = run(SCRIPT, tmp_path)
    strip = [{k: v for k, v in r.items() if k != "seconds"} for r in state.history]
    assert strip == [{k: v for k, v in r.items() if k != "seconds"} for r in ref.history]
    assert (state.best_epoch, state.bad_epochs, state.stopped_by) == (3, 2, "patience")
    for name, tensor in model.state_dict().items():
        assert torch.equal(tensor, ref_model.state_dict()[name]), name


@pytest.mark.parametrize(
    ("build", "error", "words"),
    [
        (lambda: AnyImproves(), ValueError, "AnyImproves needs at least one metric"),
        (lambda: AnyImproves(("loss",), ("loss",)), ValueError, "not both"),
        (lambda: AnyImproves(maximize=("",)), TypeError, "maximize must be a tuple"),
        (lambda: AnyImproves(minimize=(1,)), TypeError, "minimize must be a tuple"),
    ],
)
def test_bad_rules_fail_in_one_line(build, error, words):
    with pytest.raises(error, match=words) as info:
        build()
    assert "\n" not in str(info.value)


def test_a_rule_needs_its_metrics_and_must_be_a_rule():
    model = nn.Linear(1, 1)
    arguments = {
        "step": lambda b: model(b).sum(),
        "validate": lambda: {"val_loss": 1.0},
        "optimizer": torch.optim.SGD(model.parameters(), lr=0.1),
        "stop": [Epochs(1)],
        "progress": False,
    }
    with pytest.raises(ValueError, match=r"it must return 'val_accuracy', the monitored") as info:
        train_loop(model, lambda e: [torch.ones(1)], improvement=GAT_RULE, **arguments)
    assert "\n" not in str(info.value)
    with pytest.raises(TypeError, match=r"improvement must be an Improvement rule .* got str"):
        train_loop(model, lambda e: [torch.ones(1)], improvement="gat", **arguments)
