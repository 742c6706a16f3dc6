"""The batched trainer, the convex solver and the C6 estimators on cases with known answers."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from lora_claims.errors import InvalidArgument
from lora_claims.methods.linearized import ce_experiments as ce
from lora_claims.methods.linearized.convex import solve_nuclear
from lora_claims.methods.linearized.instances import random_problem
from lora_claims.methods.linearized.training import TrainConfig, delta_frobenius, train


@settings(max_examples=15)
@given(
    st.sampled_from(["cross_entropy", "squared"]),
    st.sampled_from(["gaussian", "layer"]),
    st.sampled_from([0.0, 0.05]),
    st.integers(0, 2**16),
)
def test_line_search_never_increases_the_objective(loss, source, weight_decay, seed):
    problem = random_problem(source, 6, 10, 3, 5, 6, loss=loss, seed=seed)
    result = train(
        problem,
        TrainConfig(rank=2, steps=40, lr=50.0, weight_decay=weight_decay),
        generator=torch.Generator().manual_seed(seed),
    )
    history = result.history["objective"]
    assert (history[1:] <= history[:-1]).all()
    assert (history[-1] < history[0]).all()  # and it does move


def test_plain_gd_with_a_huge_step_can_increase_it():
    """Negative control for the monotonicity test: without the line search the same step diverges."""
    problem = random_problem("gaussian", 4, 10, 3, 5, 6, loss="squared", seed=1)
    result = train(
        problem,
        TrainConfig(rank=2, steps=10, lr=50.0, line_search=False),
        generator=torch.Generator().manual_seed(1),
    )
    history = result.history["objective"]
    assert (history[1:] > history[:-1]).any()


def test_per_instance_ranks_keep_padding_at_zero():
    problem = random_problem("gaussian", 3, 8, 2, 6, 6, seed=2)
    result = train(
        problem,
        TrainConfig(rank=3, steps=20),
        ranks=[1, 2, 3],
        generator=torch.Generator().manual_seed(0),
    )
    ranks = torch.linalg.matrix_rank(result.b @ result.a).tolist()
    assert ranks == [1, 2, 3]
    assert result.b[0, :, 1:].abs().max() == 0 and result.a[0, 1:].abs().max() == 0


def test_max_norm_is_respected_and_adam_decreases_loss():
    problem = random_problem("gaussian", 4, 12, 2, 5, 5, seed=3)
    result = train(
        problem,
        TrainConfig(rank=2, steps=100, method="adam", lr=0.05, max_norm=0.7),
        generator=torch.Generator().manual_seed(0),
    )
    assert (delta_frobenius(result.b, result.a) <= 0.7 + 1e-9).all()
    assert (result.objective < result.history["objective"][0]).all()


def test_init_is_jang_lora_initialization():
    problem = random_problem("gaussian", 200, 2, 2, 5, 50, seed=4)
    result = train(
        problem, TrainConfig(rank=4, steps=0), generator=torch.Generator().manual_seed(0)
    )
    assert result.b.abs().max() == 0
    assert result.a.std().item() == pytest.approx(1 / (2 * 50), rel=0.05)  # 1 / (sqrt(r) n)


def test_bad_training_arguments_are_named():
    with pytest.raises(InvalidArgument, match="method must be one of"):
        TrainConfig(method="sgd")
    with pytest.raises(InvalidArgument, match="rank must lie in 1..min"):
        train(random_problem("gaussian", 1, 2, 2, 3, 3), TrainConfig(rank=4))


@pytest.mark.slow  # about a minute on 2 busy cores
def test_convex_solver_is_optimal_and_bounds_lora_below():
    """KKT: ||grad L(Delta*)||_op <= lam; P* <= the regularized LoRA objective at any rank."""
    problem = random_problem("gaussian", 4, 12, 2, 5, 5, seed=5)
    lam = 0.05
    solution = solve_nuclear(problem, lam, steps=3000)
    grad = problem.features.adjoint(
        problem.loss_at(problem.f0 + problem.features.outputs_dense(solution.delta)).grad
    )
    assert (torch.linalg.matrix_norm(grad, ord=2) <= lam * (1 + 1e-3)).all()
    lora = train(
        problem,
        TrainConfig(rank=5, steps=300, weight_decay=lam),
        generator=torch.Generator().manual_seed(0),
    )
    assert (solution.value <= lora.objective + 1e-6).all()


@pytest.mark.slow  # about a minute on 2 busy cores
def test_capacity_estimator_matches_cover_on_last_layer_features():
    """Calibration: rank-1 CE on last-layer features with K = 2 and f0 = 0 separates exactly when the
    inputs are linearly separable through the origin, whose probability Cover (1965) gives."""
    result = ce.separability_capacity(
        "layer", 2, 2, 6, [4, 8, 12, 16, 20], trials=24, steps=400, f0_scale=0.0
    )
    for row in result["rows"]:
        cover = ce.cover_fraction(row["N"], 6)
        low, high = row["wilson"]
        assert low - 0.05 <= cover <= high + 0.05, (row, cover)
    assert result["N50"] == pytest.approx(12, abs=3)  # Cover: N50 = 2 d


def test_cover_and_transition_helpers():
    assert ce.cover_fraction(8, 4) == pytest.approx(0.5)  # N = 2 d
    assert ce.cover_fraction(3, 4) == 1.0
    assert ce.transition_point([1, 2, 3], [1.0, 0.6, 0.2]) == pytest.approx(2.25)
    assert ce.transition_point([1, 2], [1.0, 0.9]) is None


@pytest.mark.slow  # about a minute on 2 busy cores
def test_pl_ratio_decays_for_unregularized_ce_and_not_with_l2():
    """Positive and negative control of the slope statistic: ratio ~ gap^1 without l2, bounded with."""
    free = ce.pl_profile("gaussian", 2, 12, 6, 6, rank=1, trials=3, steps=800, seed=1)
    assert free["parameter"]["slope_small_gap"] > 0.7
    low, high = free["parameter"]["slope_interval"]
    assert low <= free["parameter"]["slope_small_gap"] <= high and low > 0.5  # decays, with its interval
    assert free["delta"]["slope_small_gap"] == pytest.approx(1.0, abs=0.15)
    regular = ce.pl_profile("gaussian", 2, 16, 8, 8, rank=4, trials=4, steps=750, weight_decay=0.01)
    assert abs(regular["parameter"]["slope_small_gap"]) < 0.25


def test_level_decision_reads_the_wilson_interval():
    assert ce.level_decision(ce.success_record(60, 60), 0.9) == "above"  # [0.94, 1]
    assert ce.level_decision(ce.success_record(12, 12), 0.9) == "straddles"  # [0.76, 1]
    assert ce.level_decision(ce.success_record(48, 60), 0.9) == "below"  # upper end 0.88


def test_level_power_is_the_binomial_chance_of_clearing_the_level():
    """n = 35 is the least n whose n/n clears 0.9, so the power is alternative^35; 12 trials never can."""
    assert ce.level_power(35, 0.9, 0.99)["successes_needed"] == 35
    assert ce.level_power(35, 0.9, 0.99)["power"] == pytest.approx(0.99**35)
    assert ce.level_power(34, 0.9, 1.0)["power"] == 0.0
    assert ce.level_power(12, 0.9, 1.0) == {"trials": 12, "level": 0.9, "alternative": 1.0,
                                            "successes_needed": None, "power": 0.0}


def _rows(sizes, successes, trials):
    return [{"N": n, **ce.success_record(k, trials)} for n, k in zip(sizes, successes, strict=True)]


def test_transition_interval_holds_the_estimate_and_widens_with_noise():
    sharp = ce.transition_interval(_rows([10, 20, 30], [40, 40, 0], 40))
    assert sharp["N50"] == sharp["interval"][0] == sharp["interval"][1] == 25.0  # fractions 1 and 0: no noise
    noisy = ce.transition_interval(_rows([10, 20, 30, 40], [16, 10, 6, 0], 16))
    low, high = noisy["interval"]
    assert low < noisy["N50"] < high and 10 <= low and high <= 40


def test_transition_not_in_the_sweep_has_an_open_interval():
    never = ce.transition_interval(_rows([10, 20], [20, 19], 20))
    assert never["N50"] is None and never["interval"][1] is None and never["not_found_share"] > 0.5
    edge = ce.transition_interval(_rows([10, 20, 30], [12, 9, 8], 16))  # 0.75, 0.56, 0.5
    assert edge["interval"][1] is None  # a redraw may stay above 1/2: the end lies beyond the sweep
