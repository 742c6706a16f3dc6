"""C7: Rademacher bound: rank one is variance-optimal when the bias is saturated."""

from __future__ import annotations

import numpy as np

from lora_claims.harness.cache import CacheKind
from lora_claims.harness.environment import on_one_torch_thread
from lora_claims.harness.plotting import new_figure, save_figure
from lora_claims.harness.spec import ClaimSpec, Decision, Needs, Outcome, Verdict
from lora_claims.methods.linearized.generalization import grade_prediction, teacher_student

C7_RUNS = CacheKind("c7", 3)  # bump the schema when the teacher-student experiment changes
# (K, teacher rank, spectrum decay): the claim's own cases (teacher rank K - 1, which builds the
# answer in), then teacher ranks varied independently of K, and a full-rank decaying teacher.
CASES = {
    "K2_teacher1": (2, 1, None), "K3_teacher2": (3, 2, None), "K4_teacher3": (4, 3, None),
    "K2_teacher2": (2, 2, None), "K4_teacher1": (4, 1, None), "K2_fullrank_decay": (2, "full", 0.5),
}

SPEC = ClaimSpec(
    id="C7",
    title="Rademacher bound: rank one is variance-optimal when the bias is saturated",
    statement=(
        "A Rademacher bound on the rank-r class predicts the optimal LoRA rank: rank 1 for binary "
        "classification (bias saturated at r = 1) but not for K > 2."
    ),
    formalization=(
        "Bound: test(r) <= bias(r) + 4 sqrt(r) rho E||(1/N) sum sigma_jk G_jk||_op (rank-r class "
        "with ||Delta||_F <= rho inside the nuclear ball of radius sqrt(r) rho; CE contraction "
        "factor 2), bias(r) = CE of rank-r training on a sample bias_factor times larger; the "
        "bound's predicted rank = its argmin. Ground truth: teacher-student simulations in the "
        "linearized model (Gaussian features, labels from the teacher's softmax, student CE GD "
        "from the LoRA initialization constrained to the teacher's norm), held-out test CE by "
        "student rank over trials; the simulated optimum is a selection-corrected confidence set "
        "of ranks at level 1 - alpha (multiple comparison with the best, Bonferroni over the other "
        "R - 1 ranks). Cases vary the teacher rank independently of K: K = 2, 3, 4 with teacher "
        "rank K - 1; K = 2 with a rank-2 teacher; K = 4 with a rank-1 teacher; K = 2 with a "
        "full-rank teacher whose singular values decay like 0.5^i."
    ),
    rule=(
        "Per case, the bound's predicted rank is correct if the simulated optimum's confidence set is "
        "exactly {predicted}, wrong if predicted lies outside the set, undecided otherwise. Not "
        "supported if the prediction is wrong in any case; inconclusive if it is undecided in any case "
        "(labelled underpowered when such a case's plug-in power to single out its best rank is below "
        "min_power); otherwise supported if the predicted rank is 1 in exactly the K = 2 cases, and "
        "supported with caveats if the predictions are correct but do not follow K that way."
    ),
    version="2.0",
    reading="teacher-student simulations in the linearized model, six (K, teacher rank) cases",
    evaluation=("Bound plus linearized teacher-student simulation "
                "(lora_claims.methods.linearized.generalization)."),
    tolerances={"teacher_norm": 3.0, "alpha": 0.05, "min_power": 0.8},
    sizes={
        "smoke": {"trials": 4, "steps": 60, "m": 4, "per_class": 10, "n_test": 100, "ranks": [1, 2, 4],
                  "bias_factor": 4, "bias_trials": 2},
        "ci": {"trials": 12, "steps": 150, "m": 6, "per_class": 30, "n_test": 400, "ranks": [1, 2, 3, 4, 6],
               "bias_factor": 8, "bias_trials": 4},
        "thorough": {"trials": 40, "steps": 400, "m": 8, "per_class": 40, "n_test": 1000,
                     "ranks": [1, 2, 3, 4, 6, 8], "bias_factor": 10, "bias_trials": 10},
    },
    needs=Needs(device="cpu"),
)


@on_one_torch_thread
def _experiments(cache, sizes: dict, tolerances: dict, seed: int) -> dict:
    """One teacher-student run per case, cached by its configuration."""
    results = {}
    for name, (k, teacher_rank, decay) in CASES.items():
        config = {"n_outputs": k, "teacher_rank": sizes["m"] if teacher_rank == "full" else teacher_rank,
                  "m": sizes["m"], "n": sizes["m"], "n_train": sizes["per_class"] * k,
                  "n_test": sizes["n_test"], "ranks": sizes["ranks"], "trials": sizes["trials"],
                  "steps": sizes["steps"], "rho": tolerances["teacher_norm"],
                  "bias_factor": sizes["bias_factor"], "bias_trials": sizes["bias_trials"], "decay": decay,
                  "alpha": tolerances["alpha"], "seed": seed}
        key = {"function": teacher_student.__name__, **config}
        results[name] = cache.get_or_compute(C7_RUNS, key, lambda config=config: teacher_student(**config))
    return results


def evaluate(spec: ClaimSpec, ctx) -> Outcome:
    results = _experiments(ctx.cache, spec.sizes_for(ctx.profile), spec.tolerances, ctx.seed)
    inputs = {name: _headline(run) for name, run in results.items()}
    evidence = {"profile": ctx.profile, "seed": ctx.seed, "experiments": results}
    return Outcome(inputs, evidence, [_figure(ctx, results)])


def _headline(run: dict) -> dict:
    """What the rule reads of one case, and the figures its summary quotes."""
    keys = ("K", "teacher_rank", "teacher_decay", "predicted_rank", "test_loss_r1_minus_best", "bound_flip_N",
            "N")
    return {**{key: run[key] for key in keys}, "best_rank_set": run["best_rank_set"]}


def decide(outcome: Outcome, spec: ClaimSpec) -> Decision:
    inputs, tol = outcome.decision, spec.tolerances
    grades = {name: grade_prediction(case["predicted_rank"], case["best_rank_set"]["set"])
              for name, case in inputs.items()}
    undecided = [name for name, grade in grades.items() if grade == "undecided"]
    underpowered = any(inputs[name]["best_rank_set"]["power"] < tol["min_power"] for name in undecided)
    follows_k = all((case["predicted_rank"] == 1) == (case["K"] == 2) for case in inputs.values())
    wrong = [name for name, grade in grades.items() if grade == "wrong"]
    if wrong:
        verdict = Verdict.NOT_SUPPORTED
        reason = ("the bound's predicted rank is significantly worse than the simulated optimum in "
                  f"{', '.join(wrong)}")
    elif undecided:
        verdict = Verdict.INCONCLUSIVE
        reason = ("underpowered: " if underpowered else "") + (
            f"the simulated optimum is not singled out in {', '.join(undecided)}")
    elif follows_k:
        verdict, reason = (Verdict.SUPPORTED,
                           "the bound predicts the simulated optimum, rank 1 exactly for K = 2")
    else:
        verdict = Verdict.SUPPORTED_WITH_CAVEATS
        reason = "the bound predicts the simulated optimum, but rank 1 is not tied to K = 2"

    def case_text(name, case):
        found = case["best_rank_set"]
        teacher = f"teacher rank {case['teacher_rank']}" + (
            f", spectrum {case['teacher_decay']}^i" if case["teacher_decay"] is not None else "")
        return (f"{name} (K = {case['K']}, {teacher}, N = {case['N']}): bound predicts r = "
                f"{case['predicted_rank']}, simulated optimum {_set(found)} (power {found['power']:.2f}): "
                f"{grades[name]}")

    flips = ", ".join(f"{name} N >= {case['bound_flip_N']:.0f}" for name, case in inputs.items()
                      if case["bound_flip_N"] is not None and name in wrong)
    summary = (
        f"{verdict.value}: {reason}. Teacher-student in the linearized model (Gaussian features, student "
        f"constrained to the teacher's Frobenius norm; optimum = {1 - tol['alpha']:.0%} multiple-comparison-"
        f"with-the-best set of ranks by held-out CE): "
        + "; ".join(case_text(n, c) for n, c in inputs.items())
        + "." + (f" With its constants the bound's sqrt(r) variance term outweighs the bias gain of a "
                 f"higher rank until {flips}." if flips else "")
    )
    key = "predicted vs simulated optimum: " + ", ".join(
        f"{name} {case['predicted_rank']} vs {_set(case['best_rank_set'])}" for name, case in inputs.items())
    return Decision(verdict, summary, key)


def _set(found: dict) -> str:
    return "{" + ", ".join(str(rank) for rank in found["set"]) + "}"


def _figure(ctx, results: dict) -> str:
    fig, axes = new_figure(2)
    for index, (name, run) in enumerate(results.items()):
        ranks = [row["rank"] for row in run["per_rank"]]
        means = np.array([row["test_loss"] for row in run["per_rank"]])
        low = means - np.array([row["test_ci"][0] for row in run["per_rank"]])
        high = np.array([row["test_ci"][1] for row in run["per_rank"]]) - means
        axes[0].errorbar(ranks, means - run["bayes_test_loss"], yerr=[low, high], fmt="o-", capsize=2,
                         color=f"C{index}", label=name)
        axes[1].plot(ranks, [row["bound"] for row in run["per_rank"]], "s--", color=f"C{index}", label=name)
        axes[1].plot(ranks, [row["bias"] for row in run["per_rank"]], "o:", color=f"C{index}")
    axes[0].set(xlabel="student rank", ylabel="test CE - Bayes CE", title="held-out loss by rank (95% CI)")
    axes[1].set(xlabel="student rank", ylabel="nats", yscale="log",
                title="bound = bias + 4 R (dashed), bias (dotted)")
    axes[0].legend(fontsize=7)
    axes[1].legend(fontsize=7)
    path = ctx.figure_path("c7_rank.png")
    save_figure(fig, path)
    return path.name
