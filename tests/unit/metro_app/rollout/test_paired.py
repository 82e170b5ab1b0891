"""The shadow rule: McNemar's exact test on labelled disagreements, its four decisions, its thresholds."""

from __future__ import annotations

import doctest

import pytest
from scipy.stats import binomtest

from edgemnist.errors import ConfigError
from metro_app.rollout import paired
from metro_app.rollout.paired import Agreement, PairedPolicy, Pairs, decide, p_serving_better

POLICY = PairedPolicy(labels=20, alpha=0.05, windows=5, timeout=600)


def test_the_module_doctests_show_each_decision() -> None:
    result = doctest.testmod(paired)
    assert result.attempted >= 5
    assert result.failed == 0


@pytest.mark.parametrize(
    ("candidate_right", "serving_right"),
    [(0, 1), (0, 5), (1, 12), (3, 3), (7, 13), (12, 8), (20, 0), (40, 55), (0, 300)],
)
def test_the_p_value_is_scipys_exact_one_sided_binomial(candidate_right: int, serving_right: int) -> None:
    n = candidate_right + serving_right
    expected = binomtest(serving_right, n, 0.5, alternative="greater").pvalue
    got = p_serving_better(Pairs(candidate_right, serving_right))
    assert got == pytest.approx(expected, rel=1e-12, abs=0)
    # the same figure by hand: P(X >= serving_right) for X ~ Binomial(n, 1/2)
    from math import comb

    assert got == pytest.approx(sum(comb(n, k) for k in range(serving_right, n + 1)) / 2**n, rel=1e-9)


def test_no_labelled_disagreement_gives_no_p_value_and_waits() -> None:
    d = decide(Pairs(), Agreement(windows=1, images=250, agree=240), POLICY, elapsed=1.0)
    assert (d.action, d.p_value) == ("wait", None)
    assert "needs 20 more labelled disagreements" in d.reason


def test_a_confidently_wrong_candidate_is_rolled_back_with_its_counts() -> None:
    d = decide(Pairs(candidate_right=2, serving_right=14), Agreement(), POLICY, elapsed=10.0)
    assert d.action == "rollback"
    assert d.p_value == pytest.approx(binomtest(14, 16, 0.5, alternative="greater").pvalue)
    assert d.p_value < 0.05
    assert "serving right 14, candidate right 2" in d.reason


def test_rollback_needs_no_minimum_of_labels_but_significance() -> None:
    assert decide(Pairs(0, 5), Agreement(), POLICY, elapsed=1.0).action == "rollback"  # p = 1/32
    assert decide(Pairs(0, 4), Agreement(), POLICY, elapsed=1.0).action == "wait"  # p = 1/16


def test_promotion_needs_the_labels_and_a_candidate_not_worse() -> None:
    assert decide(Pairs(10, 9), Agreement(), POLICY, elapsed=1.0).action == "wait"  # 19 of 20
    assert decide(Pairs(10, 10), Agreement(), POLICY, elapsed=1.0).action == "promote"
    d = decide(Pairs(15, 5), Agreement(), POLICY, elapsed=1.0)
    assert d.action == "promote"
    assert "candidate right 15, serving right 5" in d.reason


def test_a_serving_lead_that_is_not_significant_waits_then_times_out_never_promotes() -> None:
    pairs = Pairs(candidate_right=9, serving_right=13)  # p = 0.26
    assert decide(pairs, Agreement(), POLICY, elapsed=100.0).action == "wait"
    d = decide(pairs, Agreement(), POLICY, elapsed=601.0)
    assert d.action == "timeout"
    assert "not significantly" in d.reason


def test_a_timeout_with_too_few_labels_says_how_many_are_missing() -> None:
    d = decide(Pairs(4, 3), Agreement(windows=9, images=2000, agree=1990), POLICY, elapsed=600.5)
    assert d.action == "timeout"
    assert "needs 13 more labelled disagreements" in d.reason


def test_full_agreement_for_the_windows_promotes_as_identical_in_effect() -> None:
    assert decide(Pairs(), Agreement(windows=5, images=1250, agree=1250), POLICY, 1.0).action == "promote"
    assert decide(Pairs(), Agreement(windows=4, images=1000, agree=1000), POLICY, 1.0).action == "wait"
    assert decide(Pairs(), Agreement(windows=5, images=1250, agree=1249), POLICY, 1.0).action == "wait"
    assert decide(Pairs(), Agreement(windows=5, images=0, agree=0), POLICY, 1.0).action == "wait"


def test_a_significant_rollback_wins_over_full_agreement_elsewhere() -> None:
    d = decide(Pairs(0, 6), Agreement(windows=5, images=1250, agree=1250), POLICY, 1.0)
    assert d.action == "rollback"


def test_thresholds_are_configurable() -> None:
    strict = PairedPolicy(labels=5, alpha=0.2, windows=2, timeout=30)
    assert decide(Pairs(3, 2), Agreement(), strict, 1.0).action == "promote"
    assert decide(Pairs(0, 3), Agreement(), strict, 1.0).action == "rollback"  # p = 1/8 < 0.2
    assert decide(Pairs(1, 3), Agreement(), strict, 1.0).action == "wait"  # p = 5/16
    assert decide(Pairs(), Agreement(windows=2, images=10, agree=10), strict, 1.0).action == "promote"
    assert decide(Pairs(), Agreement(), strict, 31.0).action == "timeout"


@pytest.mark.parametrize(
    ("field", "value"), [("labels", 0), ("alpha", 0.0), ("alpha", 1.0), ("windows", 0), ("timeout", 0.0)]
)
def test_bad_thresholds_are_refused_by_name(field: str, value: float) -> None:
    with pytest.raises(ConfigError, match=field):
        PairedPolicy(**{field: value})
