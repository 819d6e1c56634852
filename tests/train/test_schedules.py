"""Learning-rate schedules: exact rates, torch scheduler semantics, checks."""

import json

import pytest
import torch
from torch import nn

from attnlab.train import BudgetDecay, LinearWarmup, PlateauDecay, Scheduled, fit_budget
from attnlab.train.schedules import as_schedules

# The rates of every optimizer step that fit_budget gave before its warm-up and decay
# became torch schedulers (when it wrote `peak_lr` into the param groups), recorded
# from that code: 4 steps per epoch, peak 0.1, plateaus scripted by the validation metric.
BEFORE = {
    "warmup 10, decay 0.3, plateau inside the warm-up": (
        10,
        0.3,
        [1.0, 1.1, 0.9, 0.95, 0.8, 0.81],
        [0.010000000000000002, 0.020000000000000004, 0.03, 0.04000000000000001, 0.05, 0.06]
        + [0.06999999999999999, 0.08000000000000002, 0.027, 0.03]
        + [0.03] * 6
        + [0.009] * 8,
    ),
    "warmup 14, decay 0.7, two plateaus inside the warm-up": (
        14,
        0.7,
        [1.0, 1.1, 1.2, 0.95, 0.8, 0.81],
        [0.007142857142857143, 0.014285714285714285, 0.02142857142857143, 0.02857142857142857]
        + [0.03571428571428572, 0.04285714285714286, 0.05, 0.05714285714285714, 0.045]
        + [0.049999999999999996, 0.05499999999999999, 0.05999999999999999, 0.0455]
        + [0.048999999999999995] * 11,
    ),
    "warmup 3, no decay": (
        3,
        1.0,
        [1.0] * 4,
        [0.03333333333333333, 0.06666666666666667] + [0.1] * 14,
    ),
}


def _scripted_budget_run(warmup, decay, metrics):
    torch.manual_seed(0)
    x, y = torch.randn(64, 3), torch.randn(64)
    model = nn.Linear(3, 1)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    rates = []
    opt.register_step_pre_hook(lambda o, args, kwargs: rates.append(o.param_groups[0]["lr"]))

    def step(batch):
        err = (model(batch[0]).squeeze(-1) - batch[1]) ** 2
        return err.mean(), err.sum().detach(), torch.tensor(len(batch[1]))

    calls = iter(metrics)
    result = fit_budget(
        model,
        lambda epoch: [(x[i : i + 16], y[i : i + 16]) for i in range(0, 64, 16)],
        step=step,
        validate=lambda: next(calls),
        optimizer=opt,
        budget_seconds=600,
        max_epochs=len(metrics),
        warmup_steps=warmup,
        decay=decay,
        progress=False,
    )
    return rates, result


@pytest.mark.parametrize("case", list(BEFORE), ids=list(BEFORE))
def test_fit_budget_rates_equal_those_before_the_schedulers(case):
    warmup, decay, metrics, before = BEFORE[case]
    rates, result = _scripted_budget_run(warmup, decay, metrics)
    assert rates == before  # bit for bit
    assert [r["lr"] for r in result.history] == before[3::4]  # each epoch's last step


def test_linear_warmup_then_linear_decay_is_berts_schedule():
    opt = torch.optim.SGD(nn.Linear(2, 2).parameters(), lr=0.5)
    warmup, total = 3, 10
    schedule = LinearWarmup(opt, warmup, total_steps=total)
    rates = []
    for _ in range(12):
        rates.append(opt.param_groups[0]["lr"])
        opt.step()
        schedule.step()
    # step n (1-based): 0.5 * n / warmup, then 0.5 * (total - n) / (total - warmup), floor 0
    expected = [0.5 * (n / 3) if n <= 3 else 0.5 * max(0.0, (10 - n) / 7) for n in range(1, 13)]
    assert rates == expected
    assert schedule.interval == "step"


def test_plateau_decay_in_max_mode_decays_on_ties_and_drops():
    opt = torch.optim.SGD(nn.Linear(2, 2).parameters(), lr=1.0)
    decay = PlateauDecay(opt, 0.5, mode="max")
    rates = []
    for metric in [0.5, 0.6, 0.6, 0.4, 0.7, float("nan")]:
        decay.step(metric)
        rates.append(opt.param_groups[0]["lr"])
    assert rates == [1.0, 1.0, 0.5, 0.25, 0.25, 0.125]


def test_plateau_decay_rescales_the_warmup_and_saves_without_it():
    opt = torch.optim.SGD(nn.Linear(2, 2).parameters(), lr=0.4)
    warmup = LinearWarmup(opt, 4)
    decay = PlateauDecay(opt, 0.5, warmup=warmup)
    opt.step()
    warmup.step()  # the next step is step 2: 0.4 * 2 / 4
    decay.step(1.0)
    decay.step(2.0)  # a plateau: the peak halves, and the next rate with it
    assert warmup.base_lrs == [0.2] and opt.param_groups[0]["lr"] == 0.2 * (2 / 4)
    state = decay.state_dict()
    assert "_warmup" not in state
    json.dumps(state)  # goes into checkpoint.json as it is
    other = PlateauDecay(opt, 0.5, warmup=warmup)
    other.load_state_dict(state)
    assert other.best == 1.0 and other._warmup is warmup


@pytest.mark.parametrize(
    ("build", "error", "words"),
    [
        (lambda opt: LinearWarmup(opt, -1), ValueError, "warmup_steps must be an int >= 0"),
        (lambda opt: LinearWarmup(opt, 5, total_steps=3), ValueError, "total_steps must be"),
        (lambda opt: PlateauDecay(opt, 1.0), ValueError, r"factor must be in \[0, 1\)"),
        (lambda opt: Scheduled(LinearWarmup(opt, 2), "often"), ValueError, "interval must be"),
        (
            lambda opt: Scheduled(PlateauDecay(opt), "step"),
            ValueError,
            "needs the validation metric",
        ),
        (lambda opt: as_schedules("cosine", opt), TypeError, "got str"),
        (
            lambda opt: as_schedules(
                LinearWarmup(torch.optim.SGD(nn.Linear(1, 1).parameters(), lr=0.1), 2), opt
            ),
            ValueError,
            "drives another optimizer",
        ),
    ],
)
def test_bad_schedules_fail_in_one_line(build, error, words):
    opt = torch.optim.SGD(nn.Linear(2, 2).parameters(), lr=0.1)
    with pytest.raises(error, match=words) as info:
        build(opt)
    assert "\n" not in str(info.value)


def test_as_schedules_reads_the_declared_interval():
    opt = torch.optim.SGD(nn.Linear(2, 2).parameters(), lr=0.1)
    warmup, decay = LinearWarmup(opt, 2), PlateauDecay(opt)
    step_lr = torch.optim.lr_scheduler.StepLR(opt, 3)
    schedules = as_schedules([warmup, decay, step_lr, Scheduled(step_lr, "step")], opt)
    assert [s.interval for s in schedules] == ["step", "epoch", "epoch", "step"]
    assert as_schedules(None, opt) == []


def test_budget_decay_follows_steps_or_time_whichever_is_further():
    now = [0.0]
    model = nn.Linear(2, 1)
    opt = torch.optim.SGD(model.parameters(), lr=1.0)
    schedule = BudgetDecay(
        opt, total_steps=10, budget_seconds=100.0, warmup=0.2, clock=lambda: now[0]
    )
    rates = [opt.param_groups[0]["lr"]]  # the rate of step 1
    for _ in range(9):
        opt.step()
        schedule.step()
        rates.append(opt.param_groups[0]["lr"])
    expected = [0.5, 1.0, 0.875, 0.75, 0.625, 0.5, 0.375, 0.25, 0.125, 0.0]
    assert rates == pytest.approx(expected)
    # Time: half the budget gone after one step puts the rate half-way down.
    opt = torch.optim.SGD(model.parameters(), lr=1.0)
    now[0] = 0.0
    schedule = BudgetDecay(opt, total_steps=1000, budget_seconds=100.0, clock=lambda: now[0])
    now[0] = 50.0
    opt.step()
    schedule.step()
    assert opt.param_groups[0]["lr"] == pytest.approx(0.5)
    # Saved as JSON without the clock; a resumed schedule continues from the elapsed time.
    state = json.loads(json.dumps(schedule.state_dict()))
    assert state["elapsed"] == 50.0 and "_clock" not in state
    now[0] = 1000.0  # another process: its clock starts elsewhere
    opt2 = torch.optim.SGD(model.parameters(), lr=1.0)
    resumed = BudgetDecay(opt2, total_steps=1000, budget_seconds=100.0, clock=lambda: now[0])
    resumed.load_state_dict(state)
    now[0] = 1025.0
    opt2.step()
    resumed.step()
    assert opt2.param_groups[0]["lr"] == pytest.approx(0.25)
