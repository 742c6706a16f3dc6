"""Claim C7: a Rademacher bias-variance bound on the LoRA rank, and a teacher-student check.

The class. F_r = {x -> (<G_k(x), Delta>)_k : rank Delta <= r, ||Delta||_F <= rho}: rank-r LoRA
updates (Delta = B A) of bounded Frobenius norm, the class Frobenius-bounded factors give
(||B A||_F <= ||B||_F ||A||_F). Since ||Delta||_* <= sqrt(r) ||Delta||_F, F_r lies inside the
nuclear-norm ball of radius sqrt(r) rho, and by trace duality
(sup_{||Delta||_* <= tau} <Delta, M> = tau ||M||_op)

    R_S(F_r) <= sqrt(r) rho E_sigma || (1/N) sum_{j,k} sigma_jk G_jk ||_op          (1)

with sigma_jk iid Rademacher signs: the "variance term grows like sqrt(r)" of the claim. The
expectation is estimated by Monte Carlo on the training features (``nuclear_ball_complexity``).
Sources: trace-norm classes, Kakade, Shalev-Shwartz & Tewari (JMLR 2012) and Srebro & Shraibman
(COLT 2005); ||.||_* <= sqrt(r) ||.||_F for rank r (linear algebra).

The bound. Cross-entropy is sqrt(2)-Lipschitz in the logit vector (its gradient softmax - e_y has
norm <= sqrt(2)); Maurer's vector contraction (ALT 2016) moves the complexity from loss to class
at a factor sqrt(2) * Lip = 2. With the standard template (Bartlett & Mendelson 2002; Mohri et al.,
Foundations of ML, Thm 3.3), for a loss bounded by b on the class, with probability >= 1 - delta

    test(r) <= bias(r) + 2 * 2 * R_S(F_r) + 3 b sqrt(log(2/delta) / (2N)).                   (2)

Assumptions: iid examples; features fixed by the (linearized) model; the loss bounded on the class
(true here: |<G, Delta>| <= ||G||_F rho, independent of r, so the last term does not move the
argmin and is reported separately). bias(r) is the best loss reachable in F_r; we estimate it by
training at rank r on a sample ``bias_factor`` times larger than the training set, so that the
training loss approximates the population optimum of the class (approximation error, not fit to
noise). The predicted optimal rank is the argmin over r of bias(r) + 4 R_S(F_r).
"""

from __future__ import annotations

import math

import numpy as np
import torch
from scipy import stats

from lora_claims.errors import InvalidArgument, require_int, require_positive_float
from lora_claims.methods.linearized.model import DTYPE, DenseFeatures, LinearizedProblem
from lora_claims.methods.linearized.training import TrainConfig, train

CONTRACTION = 2.0  # sqrt(2) (vector contraction) x sqrt(2) (Lipschitz constant of CE)


def nuclear_ball_complexity(
    features: DenseFeatures, draws: int = 64, seed: int = 0
) -> torch.Tensor:
    """E_sigma ||(1/N) sum_jk sigma_jk G_jk||_op per instance: the Rademacher complexity of the unit
    nuclear-norm ball on these features (Monte Carlo over ``draws`` sign vectors)."""
    draws = require_int("draws", draws)
    generator = torch.Generator().manual_seed(seed)
    count, n_ex, k = features.instances, features.n_examples, features.n_outputs
    total = torch.zeros(count, dtype=DTYPE)
    for _ in range(draws):
        signs = torch.randint(0, 2, (count, n_ex, k), generator=generator).to(DTYPE) * 2 - 1
        total += torch.linalg.matrix_norm(features.adjoint(signs / n_ex), ord=2)
    return total / draws


def rademacher_bound(ranks, rho: float, complexity: float) -> np.ndarray:
    """The variance term of (2): CONTRACTION * sqrt(r) * rho * complexity, one value per rank."""
    rho = require_positive_float("rho", rho)
    ranks = np.asarray([require_int("rank", int(r)) for r in ranks], dtype=float)
    return CONTRACTION * np.sqrt(ranks) * rho * float(complexity)


def predicted_rank(ranks, bias, variance) -> int:
    """argmin_r bias(r) + variance(r) (the smallest rank on ties)."""
    total = np.asarray(bias, dtype=float) + np.asarray(variance, dtype=float)
    return int(np.asarray(ranks)[int(np.argmin(total))])


def mean_interval(values: np.ndarray, confidence: float = 0.95) -> tuple[float, float, float]:
    """Mean and t-interval of a 1-d sample."""
    values = np.asarray(values, dtype=float)
    mean = float(values.mean())
    if len(values) < 2 or float(values.std()) == 0.0:
        return mean, mean, mean
    low, high = stats.t.interval(confidence, len(values) - 1, loc=mean, scale=stats.sem(values))
    return mean, float(low), float(high)


def best_rank_set(losses, ranks, alpha: float = 0.05) -> dict:
    """Selection-corrected confidence set for the rank of least expected loss (multiple comparison
    with the best, Hsu 1984): rank r leaves the set when some rank s has mean(loss_r - loss_s) > 0
    with its one-sided paired t lower bound at level 1 - alpha / (R - 1). The truly best rank leaves
    only if one of its own R - 1 comparisons errs, so the set holds it with probability >= 1 - alpha.

    ``power``: the plug-in chance (observed mean differences and spreads taken as true) that the set
    shrinks to the observed best rank alone: the product over the other ranks of the power of their
    comparison with the best (noncentral t).
    """
    losses = np.asarray(losses, dtype=float)
    count, trials = losses.shape
    critical = float(stats.t.ppf(1 - alpha / (count - 1), trials - 1))

    def lower_and_shift(i, j):
        diff = losses[i] - losses[j]
        se = float(diff.std(ddof=1)) / math.sqrt(trials)
        return diff.mean() - critical * se, (diff.mean() / se if se > 0
                                             else math.copysign(math.inf, diff.mean()))

    members = [ranks[i] for i in range(count)
               if not any(lower_and_shift(i, j)[0] > 0 for j in range(count) if j != i)]
    best = int(np.argmin(losses.mean(axis=1)))
    power = 1.0
    for i in range(count):
        if i != best:
            shift = lower_and_shift(i, best)[1]
            power *= (1.0 if math.isinf(shift) and shift > 0
                      else float(stats.nct.sf(critical, trials - 1, shift)))
    return {"set": members, "best": ranks[best], "alpha": alpha, "critical_t": critical, "power": power}


def grade_prediction(predicted: int, best_set: list[int]) -> str:
    """``correct`` if the confidence set is {predicted}, ``wrong`` if predicted lies outside it,
    ``undecided`` otherwise."""
    if predicted not in best_set:
        return "wrong"
    return "correct" if list(best_set) == [predicted] else "undecided"


def _teacher(trials, m, n, rank, rho, generator, decay=None):
    """A random rank-``rank`` teacher Delta* with ||Delta*||_F = rho: equal singular values, or
    singular values proportional to decay^i (i = 0..rank-1) when ``decay`` is given."""
    u = torch.linalg.qr(torch.randn(trials, m, rank, generator=generator, dtype=DTYPE)).Q
    v = torch.linalg.qr(torch.randn(trials, n, rank, generator=generator, dtype=DTYPE)).Q
    weights = torch.ones(rank, dtype=DTYPE) if decay is None else decay ** torch.arange(rank, dtype=DTYPE)
    weights = rho * weights / weights.square().sum().sqrt()
    return (u * weights) @ v.transpose(1, 2)


def _sample(delta, n_examples, n_outputs, generator):
    """Gaussian features and labels drawn from softmax(<G, Delta*>): a well-specified CE model."""
    trials, m, n = delta.shape
    features = DenseFeatures(
        torch.randn(trials, n_examples, n_outputs, m, n, generator=generator, dtype=DTYPE)
    )
    probs = torch.softmax(features.outputs_dense(delta), dim=-1)
    labels = torch.multinomial(probs.reshape(-1, n_outputs), 1, generator=generator).view(
        trials, n_examples
    )
    return features, labels


def _repeat_features(features: DenseFeatures, copies: int) -> DenseFeatures:
    return DenseFeatures(features.g.repeat(copies, 1, 1, 1, 1))


def _train_ranks(features, labels, ranks, rho, steps, seed):
    """Train each rank on the same instances (ranks stacked on the instance axis)."""
    trials = labels.shape[0]
    problem = LinearizedProblem(
        _repeat_features(features, len(ranks)), labels.repeat(len(ranks), 1)
    )
    rank_of = torch.tensor(ranks).repeat_interleave(trials)
    result = train(
        problem,
        TrainConfig(rank=max(ranks), steps=steps, max_norm=rho),
        ranks=rank_of,
        generator=torch.Generator().manual_seed(seed),
    )
    return result, problem


def teacher_student(
    n_outputs: int,
    teacher_rank: int,
    m: int,
    n: int,
    n_train: int,
    n_test: int,
    ranks: list[int],
    trials: int,
    steps: int,
    rho: float = 3.0,
    bias_factor: int = 10,
    bias_trials: int | None = None,
    decay: float | None = None,
    alpha: float = 0.05,
    seed: int = 0,
) -> dict:
    """Test CE by student rank, the bias/variance terms and the bound's predicted rank.

    Teacher: rank ``teacher_rank`` with ||Delta*||_F = rho (a flat spectrum, or one decaying like
    ``decay``^i); labels sampled from its softmax. The simulated optimum is ``best_rank_set`` of the
    held-out losses at level ``alpha``, and the bound's predicted rank is graded against it. Student:
    CE gradient descent (line search) from the LoRA initialization, constrained to ||B A||_F <= rho
    (the class F_r of the bound, with the teacher's norm). bias(r) is a population quantity, so it
    is estimated on the first ``bias_trials`` teachers only (default: all).
    """
    n_outputs = require_int("n_outputs (K)", n_outputs, minimum=2)
    teacher_rank = require_int("teacher_rank", teacher_rank, maximum=min(m, n))
    if max(ranks) > min(m, n):
        raise InvalidArgument(f"ranks must be <= min(m, n) = {min(m, n)}, got {ranks}")
    generator = torch.Generator().manual_seed(seed)
    delta = _teacher(trials, m, n, teacher_rank, rho, generator, decay)
    train_features, train_labels = _sample(delta, n_train, n_outputs, generator)
    test_features, test_labels = _sample(delta, n_test, n_outputs, generator)
    bias_trials = (
        trials if bias_trials is None else require_int("bias_trials", bias_trials, maximum=trials)
    )
    big_features, big_labels = _sample(
        delta[:bias_trials], n_train * bias_factor, n_outputs, generator
    )

    fitted, _ = _train_ranks(train_features, train_labels, ranks, rho, steps, seed + 1)
    test_problem = LinearizedProblem(
        _repeat_features(test_features, len(ranks)), test_labels.repeat(len(ranks), 1)
    )
    test_loss = test_problem.loss_at(test_problem.outputs(fitted.b, fitted.a)).loss.view(
        len(ranks), trials
    )
    biased, _ = _train_ranks(big_features, big_labels, ranks, rho, steps, seed + 2)
    bias = biased.objective.view(len(ranks), bias_trials).mean(dim=1).numpy()
    bayes = (
        LinearizedProblem(test_features, test_labels)
        .loss_at(test_features.outputs_dense(delta))
        .loss
    )

    complexity = float(nuclear_ball_complexity(train_features, seed=seed + 3).mean())
    variance = rademacher_bound(ranks, rho, complexity)
    predicted = predicted_rank(ranks, bias, variance)
    means = test_loss.mean(dim=1).numpy()
    best_index = int(np.argmin(means))
    best = ranks[best_index]
    difference = mean_interval((test_loss[0] - test_loss[best_index]).numpy())
    second = (
        mean_interval((test_loss[1] - test_loss[0]).numpy()) if len(ranks) > 1 else (0.0, 0.0, 0.0)
    )
    per_rank = []
    for index, rank in enumerate(ranks):
        mean, low, high = mean_interval(test_loss[index].numpy())
        per_rank.append(
            {
                "rank": rank,
                "test_loss": mean,
                "test_ci": [low, high],
                "train_loss": float(fitted.objective.view(len(ranks), trials)[index].mean()),
                "bias": float(bias[index]),
                "variance": float(variance[index]),
                "bound": float(bias[index] + variance[index]),
            }
        )
    best_set = best_rank_set(test_loss.numpy(), ranks, alpha)
    return {
        "K": n_outputs,
        "teacher_rank": teacher_rank,
        "teacher_decay": decay,
        "best_rank_set": best_set,
        "grade": grade_prediction(predicted, best_set["set"]),
        "m": m,
        "n": n,
        "N": n_train,
        "n_test": n_test,
        "trials": trials,
        "rho": rho,
        "steps": steps,
        "bias_factor": bias_factor,
        "bias_trials": bias_trials,
        "bayes_test_loss": float(bayes.mean()),
        "complexity_unit_ball": complexity,
        "per_rank": per_rank,
        "predicted_rank": predicted,
        "measured_rank": best,
        "test_loss_r1_minus_best": {"mean": difference[0], "ci": [difference[1], difference[2]]},
        "test_loss_second_rank_minus_r1": {"mean": second[0], "ci": [second[1], second[2]]},
        "bound_flip_N": _flip_sample_size(ranks, bias, variance, n_train),
    }


def _flip_sample_size(ranks, bias, variance, n_train) -> float | None:
    """Training-set size at which the bound would first prefer a rank above 1, taking the variance
    term ~ 1/sqrt(N) (it is, for iid features) and the bias fixed; None if no rank beats r = 1 in
    bias."""
    gains = [(bias[0] - bias[i], variance[i] - variance[0]) for i in range(1, len(ranks))]
    sizes = [n_train * (cost / gain) ** 2 for gain, cost in gains if gain > 0]
    return float(min(sizes)) if sizes else None
