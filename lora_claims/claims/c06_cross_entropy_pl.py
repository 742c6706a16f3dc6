"""C6: Under cross-entropy, PL removes the rank threshold."""

from __future__ import annotations

import numpy as np

from lora_claims.harness.environment import on_one_torch_thread
from lora_claims.harness.plotting import new_figure, save_figure
from lora_claims.harness.spec import ClaimSpec, Decision, Needs, Outcome, Verdict
from lora_claims.methods.linearized import ce_experiments as ce
from lora_claims.methods.linearized import ce_suite

# The N of each separability sweep, the same at every profile (a profile changes trials and steps).
SWEEP_SIZES = {
    "capacity_sizes": {"K2": [8, 16, 24, 32, 36, 40, 48, 56], "K3": [8, 12, 16, 20, 24, 28, 32, 40]},
    "cover_sizes": [4, 8, 12, 16, 20, 24],
}
BINARY = ("layer_K2", "gaussian_K2")  # the runs that decide: the abstract states the binary regime

SPEC = ClaimSpec(
    id="C6",
    title="Under cross-entropy, PL removes the rank threshold",
    statement=(
        "For cross-entropy in the linearized model, the Polyak-Lojasiewicz inequality removes the "
        "rank threshold entirely: gradient descent from the standard LoRA initialization (B = 0, A "
        "random) reaches the infimum of the training loss at every rank, rank 1 included."
    ),
    formalization=(
        "Scope: the binary regime the abstract states (K = 2) decides; K = 3 is reported as a "
        "contrast (rank-1 logit updates lie on one line, so rank >= K - 1 is needed there). Reading "
        "decided: rank 1 reaches the CE infimum on canonical-size binary problems, i.e. rank-1 "
        "Armijo GD from B = 0, A random reaches mean CE < epsilon with 100% training accuracy on "
        "random-label instances at K = 2, N = 32 with last-layer features (768 x 768, G_jk = e_k "
        "h_j^T) and with Gaussian iid features (64 x 64); success fraction over instances with its "
        "95% Wilson interval against success_fraction, and the design's power to clear it when the "
        "true success rate is power_alternative. The literal reading ('removed entirely': no N at "
        "which rank 1 stops reaching the infimum) is false a priori, since a rank-1 bilinear "
        "classifier has finite capacity; what is measured is where the threshold moved: the "
        "rank-1 separability transition N50 of random labels on 8 x 8 Gaussian features, with a "
        "bootstrap interval, at the step budget and at twice it. Mechanism: the PL ratio "
        "||grad F||^2 / (2 (F - inf F)) along trajectories; the slope of log ratio on log gap "
        "(bootstrap interval over trajectories, at the step budget and twice it) above "
        "pl_decay_slope means the ratio decays to 0 (no global PL constant). Negative control: "
        "squared loss at rank 1 with KN = 40 > m + n - 1 = 15 must not reach epsilon."
    ),
    rule=(
        "Inconclusive if the squared-loss negative control (rank 1, KN = 40 > d = 15) succeeds in any "
        "trial or its lowest final loss is at most epsilon. Otherwise, for the rank-1 binary (K = 2, "
        "N = 32) success fraction with last-layer and with Gaussian features: not supported if the "
        "Wilson upper end of either falls below success_fraction; inconclusive if either Wilson "
        "interval contains it (labelled underpowered when the design's power at power_alternative is "
        "below min_power); otherwise supported with caveats if a caveat is established, else supported. "
        "Caveats: the threshold moved (the Gaussian K = 2 separability transition N50 at twice the "
        "step budget is found with both ends of its bootstrap interval inside the sweep), or global PL "
        "fails (the bootstrap interval of the unregularized PL slope at twice the step budget lies "
        "above pl_decay_slope). A transition or slope not found, or an interval reaching outside, "
        "establishes no caveat. K = 3 decides nothing."
    ),
    version="2.0",
    reading="linearized model, Gaussian and last-layer-like features, K = 2 decides (K = 3 is the contrast)",
    evaluation=(
        "Batched linearized-model training (lora_claims.methods.linearized.ce_experiments); "
        "inf F under l2 from the convex nuclear-norm problem (lora_claims.methods.linearized.convex) "
        "where its rank <= r."
    ),
    tolerances={"epsilon": 1e-3, "success_fraction": 0.9, "power_alternative": 0.99, "min_power": 0.8,
                "pl_decay_slope": 0.5, "pl_bounded_slope": 0.25, "weight_decay": 1e-2},
    sizes={
        "smoke": {"trials": 4, "contrast_trials": 4, "steps": 60, "canonical_n": 64, "capacity_trials": 4,
                  "capacity_steps": 100, "pl_trials": 4, "pl_steps": 200, **SWEEP_SIZES},
        "ci": {"trials": 60, "contrast_trials": 12, "steps": 200, "canonical_n": 768, "capacity_trials": 24,
               "capacity_steps": 500, "pl_trials": 8, "pl_steps": 1500, **SWEEP_SIZES},
        "thorough": {"trials": 200, "contrast_trials": 40, "steps": 600, "canonical_n": 768,
                     "capacity_trials": 64, "capacity_steps": 2000, "pl_trials": 20, "pl_steps": 4000,
                     **SWEEP_SIZES},
    },
    needs=Needs(device="cpu"),
)


@on_one_torch_thread
def _experiments(cache, sizes: dict, tolerances: dict, seed: int) -> dict:
    """Every C6 experiment at ``sizes``, as one JSON-ready dict (one torch thread: many small ops)."""
    eps, trials, steps = tolerances["epsilon"], sizes["trials"], sizes["steps"]
    canonical = {
        "layer_K2": ce_suite.canonical_success(cache, "layer", 2, sizes["canonical_n"], trials, steps, eps,
                                               seed),
        "gaussian_K2": ce_suite.gaussian_canonical_success(cache, 2, trials, steps, eps, seed),
        # the K = 3 contrast decides nothing: fewer trials, and rank 2 (= K - 1) beside rank 1
        "layer_K3": ce_suite.canonical_success(cache, "layer", 3, sizes["canonical_n"],
                                               sizes["contrast_trials"], steps // 2, eps, seed, ranks=[1, 2]),
    }
    budget = sizes["capacity_steps"]
    capacity = {
        f"gaussian_K{k}": ce_suite.gaussian_separability(
            cache, k, sizes["capacity_sizes"][f"K{k}"], sizes["capacity_trials"], budget, seed)
        for k in (2, 3)
    }
    capacity["gaussian_K2_double_steps"] = ce_suite.gaussian_separability(
        cache, 2, sizes["capacity_sizes"]["K2"], sizes["capacity_trials"], 2 * budget, seed)
    capacity["layer_K2_cover"] = ce_suite.cover_calibration(
        cache, sizes["cover_sizes"], sizes["capacity_trials"], budget, seed)
    return {
        "canonical": canonical,
        "negative_control": {loss: ce_suite.loss_control(cache, loss, trials, 3 * steps, eps, seed)
                             for loss in ("squared", "cross_entropy")},
        "pl": ce_suite.pl_runs(cache, sizes["pl_trials"], sizes["pl_steps"], tolerances["weight_decay"],
                               seed),
        "capacity": capacity,
        "origin": ce_suite.origin_check(cache, seed),
    }


def evaluate(spec: ClaimSpec, ctx) -> Outcome:
    results = _experiments(ctx.cache, spec.sizes_for(ctx.profile), spec.tolerances, ctx.seed)
    inputs = _decision_inputs(results, spec.tolerances, ctx.seed)
    evidence = {
        "profile": ctx.profile,
        "seed": ctx.seed,
        "key_figures": {**_key_figures(results), **_clauses(inputs, spec.tolerances)},
        "experiments": _without_trajectories(results),
    }
    return Outcome(inputs, evidence, _figures(ctx, results))


def _record(row: dict) -> dict:
    return {key: row[key] for key in ("successes", "trials", "fraction", "wilson")}


def _transition(run: dict, seed: int) -> dict:
    """N50 of a separability sweep with its bootstrap interval, and KN50 / d."""
    found = ce.transition_interval(run["rows"], seed=seed)
    scale = run["K"] / run["manifold_dim"]
    return {**found, "steps": run["steps"],
            "KN50_over_dim": None if found["N50"] is None else scale * found["N50"]}


def _slope(run: dict) -> dict:
    return {"slope": run["parameter"]["slope_small_gap"], "interval": run["parameter"]["slope_interval"],
            "steps": run["steps_run"]}


def _decision_inputs(results: dict, tolerances: dict, seed: int) -> dict:
    """The figures the rule and its summary read."""
    squared = results["negative_control"]["squared"]["ranks"]["1"]
    capacity, canonical = results["capacity"], results["canonical"]
    trials = canonical["layer_K2"]["ranks"]["1"]["trials"]
    return {
        "binary_rank1": {name: _record(canonical[name]["ranks"]["1"]) for name in BINARY},
        "design_power": ce.level_power(trials, tolerances["success_fraction"],
                                       tolerances["power_alternative"]),
        "squared_control": {"successes": squared["successes"], "min_final_loss": squared["min_final_loss"]},
        "cross_entropy_control_fraction":
            results["negative_control"]["cross_entropy"]["ranks"]["1"]["fraction"],
        "transition_K2": {"steps": _transition(capacity["gaussian_K2"], seed),
                          "double_steps": _transition(capacity["gaussian_K2_double_steps"], seed)},
        "pl_slope": {"steps": _slope(results["pl"]["unregularized"]),
                     "double_steps": _slope(results["pl"]["unregularized_double_steps"]),
                     **{name: _slope(run) for name, run in results["pl"].items() if name.startswith("l2")}},
        "contrast_K3": {"layer_rank1": _record(canonical["layer_K3"]["ranks"]["1"]),
                        "layer_rank2": _record(canonical["layer_K3"]["ranks"]["2"]),
                        "transition": _transition(capacity["gaussian_K3"], seed)},
        "manifold_dim": capacity["gaussian_K2"]["manifold_dim"],
        "origin_min_decrease": min(results["origin"]["decrease_along_saddle_direction"]),
    }


def _clauses(inputs: dict, tolerances: dict) -> dict:
    """The rule's clauses on the outcome: each source's level decision and each caveat."""
    squared = inputs["squared_control"]
    moved = inputs["transition_K2"]["double_steps"]["interval"]
    slope = inputs["pl_slope"]["double_steps"]["interval"]
    return {
        "control_ok": squared["successes"] == 0 and squared["min_final_loss"] > tolerances["epsilon"],
        "binary_rank1": {name: ce.level_decision(inputs["binary_rank1"][name], tolerances["success_fraction"])
                         for name in BINARY},
        "underpowered": inputs["design_power"]["power"] < tolerances["min_power"],
        "threshold_moved": None not in moved,
        "global_pl_fails": slope is not None and slope[0] > tolerances["pl_decay_slope"],
    }


def decide(outcome: Outcome, spec: ClaimSpec) -> Decision:
    inputs, tol = outcome.decision, spec.tolerances
    holds = _clauses(inputs, tol)
    levels = set(holds["binary_rank1"].values())
    caveats = [text for flag, text in (
        (holds["threshold_moved"], "the threshold is moved, not removed"),
        (holds["global_pl_fails"], "no global PL constant exists (the PL ratio decays with the gap)"),
    ) if flag]
    if not holds["control_ok"]:
        verdict, reason = Verdict.INCONCLUSIVE, "the squared-loss negative control did not fail"
    elif "below" in levels:
        verdict, reason = (Verdict.NOT_SUPPORTED,
                           f"rank-1 binary success falls below {tol['success_fraction']}")
    elif "straddles" in levels:
        verdict = Verdict.INCONCLUSIVE
        reason = ("underpowered: " if holds["underpowered"] else "") + (
            f"a rank-1 binary success interval contains {tol['success_fraction']}")
    else:
        verdict = Verdict.SUPPORTED_WITH_CAVEATS if caveats else Verdict.SUPPORTED
        reason = ("rank 1 reaches the CE infimum on canonical-size binary problems"
                  + (f", but {' and '.join(caveats)}" if caveats else ""))
    power, rank1 = inputs["design_power"], inputs["binary_rank1"]
    moved, contrast = inputs["transition_K2"], inputs["contrast_K3"]
    slopes = inputs["pl_slope"]
    summary = (
        f"{verdict.value}: {reason}. Reading decided (binary, K = 2): rank 1 reaches the CE infimum "
        f"(loss < {tol['epsilon']}, 100% training accuracy) at N = 32 in {_pct(rank1['layer_K2'])} of "
        f"instances with last-layer features (768 x 768) and {_pct(rank1['gaussian_K2'])} with Gaussian "
        f"ones (64 x 64), against the level {tol['success_fraction']}; the design reaches it with "
        f"probability {power['power']:.2f} when the true rate is {power['alternative']} (it needs "
        f"{power['successes_needed']} of {power['trials']}). The literal reading, threshold removed "
        f"entirely, is false a priori (a rank-1 bilinear classifier has finite capacity); the evidence "
        f"says where it moved: rank-1 CE separates random labels on 8 x 8 Gaussian features up to "
        f"N50 = {_n50(moved['steps'])} at {moved['steps']['steps']} steps and {_n50(moved['double_steps'])} "
        f"at {moved['double_steps']['steps']} (KN50/d = {_fmt(moved['double_steps']['KN50_over_dim'])}, "
        f"d = {inputs['manifold_dim']}; squared loss stops at KN = d). Negative control: squared loss at "
        f"rank 1 (KN = 40 > 15) never got below {inputs['squared_control']['min_final_loss']:.3g}, while "
        f"CE on the same instances succeeded in {inputs['cross_entropy_control_fraction']:.0%}. PL ratio "
        f"~ gap^slope as L -> 0 without regularization: slope {_slope_text(slopes['steps'])}, at twice the "
        f"budget {_slope_text(slopes['double_steps'])}; with l2: "
        + ", ".join(f"{name} {_slope_text(run)}" for name, run in slopes.items() if name.startswith("l2"))
        + f". A = B = 0 is stationary but not a minimum (F drops by >= {inputs['origin_min_decrease']:.1e} "
        f"along the top singular direction). Contrast, not decided: K = 3 with last-layer features, rank 1 "
        f"succeeds in {_pct(contrast['layer_rank1'])} and rank 2 in {_pct(contrast['layer_rank2'])} (rank-1 "
        f"logit updates lie on one line); Gaussian K = 3 N50 = {_n50(contrast['transition'])}."
    )
    key = (
        f"rank-1 binary success {_pct(rank1['layer_K2'])} layer, {_pct(rank1['gaussian_K2'])} Gaussian vs "
        f"{tol['success_fraction']} (power {power['power']:.2f}); N50 (K=2, 2x steps) "
        f"{_n50(moved['double_steps'])}; PL slope {_slope_text(slopes['double_steps'])}"
    )
    return Decision(verdict, summary, key)


def _n50(found: dict) -> str:
    low, high = found["interval"]
    return (f"{_fmt(found['N50'])} [{_fmt(low, 'below the sweep')}, "
            f"{_fmt(high, 'beyond the sweep')}]")


def _slope_text(run: dict) -> str:
    interval = run["interval"]
    return _fmt(run["slope"], "not found") + (
        "" if interval is None else f" [{interval[0]:.2f}, {interval[1]:.2f}]")


def _key_figures(results: dict) -> dict:
    """Every canonical run's rank-1 success and each sweep's raw N50, for the evidence."""
    return {
        "rank1_success": {name: [run["ranks"]["1"]["fraction"], *run["ranks"]["1"]["wilson"]]
                          for name, run in results["canonical"].items()},
        "N50": {name: run["N50"] for name, run in results["capacity"].items()},
        "pl_band_min": {name: run["parameter"]["band_min"] for name, run in results["pl"].items()},
    }


def _without_trajectories(results: dict) -> dict:
    """The evidence keeps every statistic but not the raw per-step curves (they are in the figure)."""
    pl = {name: {k: v for k, v in run.items() if k != "trajectories"} for name, run in results["pl"].items()}
    return {**results, "pl": pl}


def _fmt(value, missing: str = "n/a") -> str:
    return missing if value is None else f"{value:.3g}"


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
    for index, name in enumerate(("gaussian_K2", "gaussian_K2_double_steps", "gaussian_K3")):
        run = results["capacity"][name]
        _fraction_plot(axes[0], [row["KN"] / run["manifold_dim"] for row in run["rows"]], run["rows"],
                       f"C{index}", f"K = {run['K']}, {run['steps']} steps")
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
