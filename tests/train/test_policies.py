"""Stopping policies: when each says stop, how they combine, their checks."""

import dataclasses

import pytest

from attnlab.train import Budget, Epochs, Patience, StopPolicy
from attnlab.train._fitstate import FitState
from attnlab.train.policies import check_policies, most_epochs, stop_reason


def state(epochs=0, bad=0, seconds=0.0):
    history = [{"epoch": n, "val_loss": 1.0} for n in range(1, epochs + 1)]
    return FitState(monitor="loss", mode="min", history=history, bad_epochs=bad, seconds=seconds)


def test_each_policy_and_its_reason():
    assert Epochs(3).reached(state(3)) and not Epochs(3).reached(state(2))
    assert Patience(2).reached(state(5, bad=2)) and not Patience(2).reached(state(5, bad=1))
    assert Budget(10.0).reached(state(1, seconds=10.0)) and not Budget(10).reached(state(1))
    assert Budget(10).interrupts(10.5) and not Budget(10).interrupts(9.9)
    assert not Epochs(3).interrupts(1e9) and not Patience(1).interrupts(1e9)
    assert [p.reason for p in (Epochs(1), Patience(1), Budget(1))] == [
        "epochs",
        "patience",
        "budget",
    ]


def test_the_first_policy_reached_in_the_order_given_wins():
    policies = check_policies([Budget(5.0), Epochs(4), Patience(2)])
    assert stop_reason(policies, state(2, bad=1, seconds=1.0)) is None
    assert stop_reason(policies, state(4, bad=2, seconds=1.0)) == "epochs"
    assert stop_reason(policies, state(4, bad=2, seconds=6.0)) == "budget"
    assert stop_reason(policies, state(3, bad=2, seconds=1.0)) == "patience"
    assert most_epochs(policies) == 4


def test_a_policy_of_ones_own():
    @dataclasses.dataclass(frozen=True)
    class Target(StopPolicy):
        value: float
        reason = "target"

        def reached(self, state):
            return state.history[-1]["val_loss"] <= self.value

    policies = check_policies([Epochs(10), Target(1.0)])
    assert stop_reason(policies, state(1)) == "target"
    assert policies[1].settings() == {"value": 1.0}


@pytest.mark.parametrize(
    ("build", "error", "words"),
    [
        (lambda: Epochs(0), ValueError, "epochs must be a positive int; got 0"),
        (lambda: Epochs(2.0), ValueError, "epochs must be a positive int; got 2.0"),
        (lambda: Patience(True), ValueError, "patience must be a positive int"),
        (lambda: Budget(0), ValueError, "budget_seconds must be a positive number"),
        (lambda: Budget(float("nan")), ValueError, "budget_seconds"),
        (lambda: check_policies([Patience(2)]), ValueError, "exactly one Epochs"),
        (lambda: check_policies([Epochs(2), Epochs(3)]), ValueError, "got 2"),
        (lambda: check_policies([Epochs(2), "patience"]), TypeError, "got str"),
    ],
)
def test_bad_policies_fail_in_one_line(build, error, words):
    with pytest.raises(error, match=words) as info:
        build()
    assert "\n" not in str(info.value)
