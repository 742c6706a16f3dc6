"""C6: Under cross-entropy, PL removes the rank threshold."""

from __future__ import annotations

import numpy as np

from lora_claims.harness.environment import on_one_torch_thread
from lora_claims.harness.plotting import new_figure, save_figure
from lora_claims.harness.spec import ClaimSpec, Decision, Needs, Outcome, Verdict
from lora_claims.methods.linearized import ce_suite

# The N of each separability sweep, the same at every profile (a profile changes trials and steps).
SWEEP_SIZES = {
    "capacity_sizes": {"K2": [8, 16, 24, 32, 36, 40, 48, 56], "K3": [8, 12, 16, 20, 24, 28, 32, 40]},
    "cover_sizes": [4, 8, 12, 16, 20, 24],
}

SPEC = ClaimSpec(
    id="C6",
    title="Under cross-entropy, PL removes the rank threshold",
    statement=(
        "For cross-entropy in the linearized model, the Polyak-Lojasiewicz inequality removes the "
        "rank threshold entirely: gradient descent from the standard LoRA initialization (B = 0, A "
        "random) reaches the infimum of the training loss at every rank, rank 1 included."
    ),
    formalization=(
        "Three readings, measured on random-label instances of the linearized model (Gaussian iid "
        "and last-layer features G_jk = e_k h_j^T): (practical) at canonical-like sizes (K = 2, "
        "N = 32; K = 3, N = 48) rank-1 Armijo GD reaches mean CE < epsilon with 100% training "
        "accuracy in at least success_fraction of trials; (literal, 'entirely') no N at which "
        "rank-1 CE stops separating: the separability fraction as N grows, transition N50 compared "
        "with the manifold dimension m + n - 1; (mechanism) the PL ratio ||grad F||^2 / (2 (F - inf "
        "F)) along trajectories, by decade of the gap: slope of log ratio on log gap above "
        "pl_decay_slope means it decays to 0 (no global PL), below pl_bounded_slope means bounded. "
        "Supported if all three hold; supported with caveats if the practical reading holds but "
        "the threshold is only moved or global PL fails; not supported if the practical reading "
        "fails; inconclusive if the squared-loss negative control (rank 1, KN > m + n - 1) "
        "reaches epsilon."
    ),
    rule=(
        "Inconclusive if the squared-loss negative control (rank 1, KN = 40 > d = 15) succeeds in any "
        "trial or its lowest final loss is at most epsilon. Otherwise supported if rank-1 CE succeeds "
        "in at least success_fraction of the binary trials with both last-layer and Gaussian features, "
        "a separability transition N50 is missing for Gaussian K = 2 or K = 3, and the unregularized "
        "PL slope is missing or at most pl_decay_slope; supported with caveats if only the binary "
        "rank-1 clause holds; not supported if it fails."
    ),
    version="1.1",
    evaluation=(
        "Batched linearized-model training (lora_claims.methods.linearized.ce_experiments); inf F under l2 from the "
        "convex nuclear-norm problem (lora_claims.methods.linearized.convex) where its rank <= r."
    ),
    tolerances={"epsilon": 1e-3, "success_fraction": 0.9, "pl_decay_slope": 0.5,
                "pl_bounded_slope": 0.25, "weight_decay": 1e-2},
    sizes={
        "smoke": {"trials": 4, "steps": 60, "canonical_n": 64, "capacity_trials": 4,
                  "capacity_steps": 100, "pl_steps": 200, **SWEEP_SIZES},
        "ci": {"trials": 12, "steps": 200, "canonical_n": 768, "capacity_trials": 16,
               "capacity_steps": 500, "pl_steps": 1500, **SWEEP_SIZES},
        "thorough": {"trials": 40, "steps": 600, "canonical_n": 768, "capacity_trials": 64,
                     "capacity_steps": 2000, "pl_steps": 4000, **SWEEP_SIZES},
    },
    needs=Needs(device="cpu"),
)


@on_one_torch_thread
def _experiments(cache, sizes: dict, tolerances: dict, seed: int) -> dict:
    """Every C6 experiment at ``sizes``, as one JSON-ready dict (one torch thread: many small ops)."""
    eps, trials, steps = tolerances["epsilon"], sizes["trials"], sizes["steps"]
    canonical = {
        f"layer_K{k}": ce_suite.canonical_success(cache, "layer", k, sizes["canonical_n"], trials,
                                                  steps if k == 2 else steps // 2, eps, seed)
        for k in (2, 3)
    }
    canonical.update({f"gaussian_K{k}": ce_suite.gaussian_canonical_success(cache, k, trials, steps, eps, seed)
                      for k in (2, 3)})
    capacity = {
        f"gaussian_K{k}": ce_suite.gaussian_separability(
            cache, k, sizes["capacity_sizes"][f"K{k}"], sizes["capacity_trials"], sizes["capacity_steps"], seed)
        for k in (2, 3)
    }
    capacity["layer_K2_cover"] = ce_suite.cover_calibration(
        cache, sizes["cover_sizes"], sizes["capacity_trials"], sizes["capacity_steps"], seed)
    return {
        "canonical": canonical,
        "negative_control": {loss: ce_suite.loss_control(cache, loss, trials, 3 * steps, eps, seed)
                             for loss in ("squared", "cross_entropy")},
        "pl": ce_suite.pl_runs(cache, max(4, trials // 2), sizes["pl_steps"], tolerances["weight_decay"], seed),
        "capacity": capacity,
        "origin": ce_suite.origin_check(cache, seed),
    }


def evaluate(spec: ClaimSpec, ctx) -> Outcome:
    results = _experiments(ctx.cache, spec.sizes_for(ctx.profile), spec.tolerances, ctx.seed)
    inputs = _decision_inputs(results)
    evidence = {
        "profile": ctx.profile,
        "seed": ctx.seed,
        "key_figures": {**_key_figures(results), **_clauses(inputs, spec.tolerances)},
        "experiments": _without_trajectories(results),
    }
    return Outcome(inputs, evidence, _figures(ctx, results))


def _decision_inputs(results: dict) -> dict:
    """The figures the rule and its summary read."""
    def counts(row):
        return {key: row[key] for key in ("successes", "trials", "fraction", "wilson")}

    squared = results["negative_control"]["squared"]["ranks"]["1"]
    capacity = {name: results["capacity"][name] for name in ("gaussian_K2", "gaussian_K3")}
    return {
        "rank1": {name: counts(results["canonical"][name]["ranks"]["1"])
                  for name in ("layer_K2", "gaussian_K2", "layer_K3")},
        "squared_control": {"successes": squared["successes"], "min_final_loss": squared["min_final_loss"]},
        "cross_entropy_control_fraction": results["negative_control"]["cross_entropy"]["ranks"]["1"]["fraction"],
        "pl_slope_unregularized": results["pl"]["unregularized"]["parameter"]["slope_small_gap"],
        "pl_slope_l2": _l2_slopes(results),
        "N50": {name: run["N50"] for name, run in capacity.items()},
        "KN50_over_manifold_dim": {name: run["KN50_over_dim"] for name, run in capacity.items()},
        "manifold_dim": capacity["gaussian_K2"]["manifold_dim"],
        "origin_grad_norm_max": max(results["origin"]["grad_norm_at_origin"]),
    }


def _clauses(inputs: dict, tolerances: dict) -> dict[str, bool]:
    """The rule's clauses, each true or false on the outcome."""
    squared, decay = inputs["squared_control"], inputs["pl_slope_unregularized"]
    return {
        "control_ok": squared["successes"] == 0 and squared["min_final_loss"] > tolerances["epsilon"],
        "binary_rank1_ok": all(inputs["rank1"][f"{source}_K2"]["fraction"] >= tolerances["success_fraction"]
                               for source in ("layer", "gaussian")),
        "threshold_moved": all(inputs["N50"][f"gaussian_K{k}"] is not None for k in (2, 3)),
        "global_pl_fails": decay is not None and decay > tolerances["pl_decay_slope"],
        "l2_pl_bounded": all(slope is not None and abs(slope) < tolerances["pl_bounded_slope"]
                             for slope in inputs["pl_slope_l2"].values()),
    }


def decide(outcome: Outcome, spec: ClaimSpec) -> Decision:
    inputs, tol = outcome.decision, spec.tolerances
    holds = _clauses(inputs, tol)
    rank1, squared, decay = inputs["rank1"], inputs["squared_control"], inputs["pl_slope_unregularized"]
    kn50 = inputs["KN50_over_manifold_dim"]
    n50_k2, n50_k3 = inputs["N50"]["gaussian_K2"], inputs["N50"]["gaussian_K3"]
    dim = inputs["manifold_dim"]
    where = (
        f"rank-1 CE separates random labels up to N50 = {_fmt(n50_k2)} (K = 2) and {_fmt(n50_k3)} (K = 3) "
        f"examples at m = n = 8, i.e. KN50 = {_fmt(kn50['gaussian_K2'])} and {_fmt(kn50['gaussian_K3'])} "
        f"times the rank-1 manifold dimension {dim}, against KN < {dim} for squared loss"
    )
    sentence = (
        f"The threshold is moved, not removed: {where}."
        if holds["threshold_moved"]
        else f"No rank-1 separability limit was found in the sizes tried: {where}."
    )
    details = (
        f" At canonical-like sizes rank-1 CE reached loss < {tol['epsilon']} with 100% training "
        f"accuracy in {_pct(rank1['layer_K2'])} (layer features, 768 x 768, K = 2, N = 32) and "
        f"{_pct(rank1['gaussian_K2'])} (Gaussian, 64 x 64) of binary trials; with last-layer features "
        f"and K = 3 in {_pct(rank1['layer_K3'])} (rank-1 logit updates lie on one line, so a third "
        f"class cannot be separated; rank >= K - 1 is needed). Negative control: squared loss at rank 1 "
        f"(KN = 40 > 15) never got below {squared['min_final_loss']:.3g}, while CE on the same instances "
        f"succeeded in {inputs['cross_entropy_control_fraction']:.0%}. Global PL fails for CE: the PL "
        f"ratio decays like gap^{_fmt(decay)} as L -> 0; with l2 regularization it stays bounded (slopes "
        f"{', '.join(f'{k}: {_fmt(v)}' for k, v in inputs['pl_slope_l2'].items())}). A = B = 0 is "
        f"stationary (gradient {inputs['origin_grad_norm_max']:.0e}) but not a minimum."
    )
    if not holds["control_ok"]:
        verdict = Verdict.INCONCLUSIVE
        details += " The squared-loss negative control did not fail, so the machinery cannot be trusted."
    elif holds["binary_rank1_ok"] and not holds["threshold_moved"] and not holds["global_pl_fails"]:
        verdict = Verdict.SUPPORTED
    elif holds["binary_rank1_ok"]:
        verdict = Verdict.SUPPORTED_WITH_CAVEATS
    else:
        verdict = Verdict.NOT_SUPPORTED
    key = (
        f"rank-1 binary success {_pct(rank1['layer_K2'])}/{_pct(rank1['gaussian_K2'])}; "
        f"KN50/d = {_fmt(kn50['gaussian_K2'])} (K=2), {_fmt(kn50['gaussian_K3'])} (K=3); PL slope {_fmt(decay)}"
    )
    return Decision(verdict, sentence + details, key)


def _l2_slopes(results: dict) -> dict:
    return {name: run["parameter"]["slope_small_gap"] for name, run in results["pl"].items()
            if name.startswith("l2")}


def _key_figures(results: dict) -> dict:
    """The headline statistics of every experiment, for the evidence."""
    unregularized = results["pl"]["unregularized"]
    squared = results["negative_control"]["squared"]["ranks"]["1"]
    l2_slopes = _l2_slopes(results)
    return {
        "rank1_success": {name: [run["ranks"]["1"]["fraction"], *run["ranks"]["1"]["wilson"]]
                          for name, run in results["canonical"].items()},
        "squared_control": {
            "fraction": squared["fraction"],
            "min_final_loss": squared["min_final_loss"],
            "ce_same_instances_fraction": results["negative_control"]["cross_entropy"]["ranks"]["1"]["fraction"],
        },
        "pl_slope_unregularized": {"parameter": unregularized["parameter"]["slope_small_gap"],
                                   "delta": unregularized["delta"]["slope_small_gap"]},
        "pl_slope_l2": l2_slopes,
        "pl_band_min_l2": {name: results["pl"][name]["parameter"]["band_min"] for name in l2_slopes},
        "N50": {name: run["N50"] for name, run in results["capacity"].items()},
        "KN50_over_manifold_dim": {name: run["KN50_over_dim"] for name, run in results["capacity"].items()},
        "origin_grad_norm_max": max(results["origin"]["grad_norm_at_origin"]),
        "origin_min_decrease": min(results["origin"]["decrease_along_saddle_direction"]),
    }


def _without_trajectories(results: dict) -> dict:
    """The evidence keeps every statistic but not the raw per-step curves (they are in the figure)."""
    pl = {name: {k: v for k, v in run.items() if k != "trajectories"} for name, run in results["pl"].items()}
    return {**results, "pl": pl}


def _fmt(value) -> str:
    return "n/a" if value is None else f"{value:.3g}"


def _pct(row: dict) -> str:
    low, high = row["wilson"]
    return f"{row['successes']}/{row['trials']} [{low:.2f}, {high:.2f}]"


def _figures(ctx, results: dict) -> list[str]:
    fig, axes = new_figure(3)
    for name, run in results["pl"].items():
        color = f"C{list(results['pl']).index(name)}"
        for index, gap in enumerate(run["trajectories"]["gap"]):
            label = name if index == 0 else None
            axes[0].semilogy(np.maximum(gap, 1e-16), color=color, label=label, lw=0.8)
            gap, ratio = np.asarray(gap), np.asarray(run["trajectories"]["parameter"][index])
            keep = gap > run["gap_floor"]
            axes[1].loglog(gap[keep], ratio[keep], ".", ms=2, color=color, label=label)
    axes[0].set(xlabel="step", ylabel="F - inf F", title="loss gap along trajectories")
    axes[1].set(xlabel="F - inf F", ylabel="||grad||^2 / (2 (F - inf F))", title="PL ratio (parameter space)")
    axes[0].legend(fontsize=7)
    axes[1].legend(fontsize=7)
    for index, (name, run) in enumerate(results["canonical"].items()):
        ranks = sorted(run["ranks"], key=int)  # a cached run's keys come back in string order
        axes[2].plot(ranks, [run["ranks"][r]["fraction"] for r in ranks], "o-", color=f"C{index}", label=name)
    axes[2].set(xlabel="rank", ylabel="fraction reaching loss < eps, 100% acc", title="canonical-like sizes")
    axes[2].legend(fontsize=7)
    first = ctx.figure_path("c6_trajectories.png")
    save_figure(fig, first)

    fig, axes = new_figure(2)
    for index, name in enumerate(("gaussian_K2", "gaussian_K3")):
        run = results["capacity"][name]
        _fraction_plot(axes[0], [row["KN"] / run["manifold_dim"] for row in run["rows"]], run["rows"],
                       f"C{index}", f"K = {run['K']}")
    axes[0].axvline(1.0, color="gray", ls="--", label="KN = d (squared-loss threshold)")
    axes[0].set(xlabel="KN / (m + n - 1)", ylabel="fraction separated at rank 1",
                title="rank-1 CE separability, Gaussian m = n = 8")
    axes[0].legend(fontsize=7)
    cover = results["capacity"]["layer_K2_cover"]
    sizes = [row["N"] for row in cover["rows"]]
    _fraction_plot(axes[1], sizes, cover["rows"], "C2", "measured (layer, K = 2)")
    axes[1].plot(sizes, cover["cover"], "k--", label="Cover (1965), d = 8")
    axes[1].set(xlabel="N", ylabel="fraction separated", title="calibration: last-layer features, n = 8")
    axes[1].legend(fontsize=7)
    second = ctx.figure_path("c6_separability.png")
    save_figure(fig, second)
    return [first.name, second.name]


def _fraction_plot(ax, xs, rows, color, label):
    fractions = np.array([row["fraction"] for row in rows])
    low = fractions - np.array([row["wilson"][0] for row in rows])
    high = np.array([row["wilson"][1] for row in rows]) - fractions
    ax.errorbar(xs, fractions, yerr=[low, high], fmt="o-", color=color, capsize=2, label=label)
