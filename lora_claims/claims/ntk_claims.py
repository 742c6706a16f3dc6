"""Evaluators of the linearized-model claims C6 (CE and PL) and C7 (Rademacher rank bound).

Experiment sizes come from the audit profile (``SIZES``); every experiment is cached by its full
configuration plus ``SCHEMA`` (bump it when an experiment's code changes). Margins and decision
levels come from the claim registry's tolerances.
"""

from __future__ import annotations

import numpy as np

from lora_claims.methods.linearized import ce_experiments as ce
from lora_claims.harness.registry import ClaimResult, Verdict, get_claim
from lora_claims.harness.context import AuditContext
from lora_claims.harness.environment import on_one_torch_thread
from lora_claims.methods.linearized.generalization import teacher_student
from lora_claims.harness.plotting import new_figure, save_figure

SCHEMA = 2

# Per profile: canonical-like rank sweeps, the squared-loss control, PL runs, capacity sweeps, C7.
SIZES = {
    "smoke": {
        "trials": 4,
        "steps": 60,
        "canonical_n": 64,
        "capacity_trials": 4,
        "capacity_steps": 100,
        "pl_steps": 200,
        "c7": {
            "trials": 4,
            "steps": 60,
            "m": 4,
            "per_class": 10,
            "n_test": 100,
            "ranks": [1, 2, 4],
            "bias_factor": 4,
            "bias_trials": 2,
        },
    },
    "ci": {
        "trials": 12,
        "steps": 200,
        "canonical_n": 768,
        "capacity_trials": 16,
        "capacity_steps": 500,
        "pl_steps": 1500,
        "c7": {
            "trials": 10,
            "steps": 150,
            "m": 6,
            "per_class": 30,
            "n_test": 400,
            "ranks": [1, 2, 3, 4, 6],
            "bias_factor": 8,
            "bias_trials": 4,
        },
    },
    "thorough": {
        "trials": 40,
        "steps": 600,
        "canonical_n": 768,
        "capacity_trials": 64,
        "capacity_steps": 2000,
        "pl_steps": 4000,
        "c7": {
            "trials": 40,
            "steps": 400,
            "m": 8,
            "per_class": 40,
            "n_test": 1000,
            "ranks": [1, 2, 3, 4, 6, 8],
            "bias_factor": 10,
            "bias_trials": 10,
        },
    },
}
CAPACITY_SIZES = {2: [8, 16, 24, 32, 36, 40, 48, 56], 3: [8, 12, 16, 20, 24, 28, 32, 40]}
COVER_SIZES = [4, 8, 12, 16, 20, 24]


def _run(ctx: AuditContext, kind: str, function, **config):
    """Run ``function(**config)`` through the result cache."""
    key = {"schema": SCHEMA, "function": function.__name__, **config}
    return ctx.cache.get_or_compute(kind, key, lambda: function(**config))


def _claim_result(
    ctx: AuditContext, claim_id: str, experiments, verdict_of, figures_of, stored
) -> ClaimResult:
    """Run ``experiments(ctx)`` on one thread (many small tensor ops: one thread is faster than two
    on them, and immune to a busy neighbour's spinning threads), then build the ClaimResult."""
    spec = get_claim(claim_id)
    results = on_one_torch_thread(experiments)(ctx)
    verdict, summary, key, figures = verdict_of(results)
    evidence = {
        "profile": ctx.profile,
        "seed": ctx.seed,
        "key_figures": figures,
        "experiments": stored(results),
    }
    return ClaimResult(
        id=claim_id,
        version=spec.version,
        verdict=verdict,
        summary=summary,
        key_figure=key,
        evidence=evidence,
        figures=figures_of(ctx, results),
    )


# --- C6 ------------------------------------------------------------------------------------------


def c6_experiments(ctx: AuditContext) -> dict:
    """All C6 experiments at the context's profile, as one JSON-ready dict."""
    size = SIZES[ctx.profile]
    tol = get_claim("C6").tolerances
    eps, seed, trials, steps = tol["epsilon"], ctx.seed, size["trials"], size["steps"]
    wide = size["canonical_n"]
    canonical = {
        f"layer_K{k}": _run(
            ctx,
            "c6",
            ce.rank_success,
            source="layer",
            n_outputs=k,
            n_examples=16 * k,
            m=wide,
            n=wide,
            ranks=[1, 2, 4, 12],
            trials=trials,
            steps=steps if k == 2 else steps // 2,
            epsilon=eps,
            seed=seed,
        )
        for k in (2, 3)
    }
    canonical.update(
        {
            f"gaussian_K{k}": _run(
                ctx,
                "c6",
                ce.rank_success,
                source="gaussian",
                n_outputs=k,
                n_examples=16 * k,
                m=64,
                n=64,
                ranks=[1, 2, 4, 12],
                trials=trials,
                steps=steps,
                epsilon=eps,
                seed=seed,
            )
            for k in (2, 3)
        }
    )
    control = {
        loss: _run(
            ctx,
            "c6",
            ce.rank_success,
            source="gaussian",
            n_outputs=2,
            n_examples=20,
            m=8,
            n=8,
            ranks=[1],
            trials=trials,
            steps=3 * steps,
            epsilon=eps,
            loss=loss,
            seed=seed,
        )
        for loss in ("squared", "cross_entropy")
    }
    pl_common = {
        "source": "gaussian",
        "n_outputs": 2,
        "n_examples": 16,
        "m": 8,
        "n": 8,
        "trials": max(4, trials // 2),
        "seed": seed,
    }
    pl = {
        "unregularized": _run(ctx, "c6", ce.pl_profile, rank=1, steps=size["pl_steps"], **pl_common)
    }
    for rank in (1, 4):
        pl[f"l2_rank{rank}"] = _run(
            ctx,
            "c6",
            ce.pl_profile,
            rank=rank,
            steps=size["pl_steps"] // 2,
            weight_decay=tol["weight_decay"],
            **pl_common,
        )
    capacity = {
        f"gaussian_K{k}": _run(
            ctx,
            "c6",
            ce.separability_capacity,
            source="gaussian",
            n_outputs=k,
            m=8,
            n=8,
            sizes=CAPACITY_SIZES[k],
            trials=size["capacity_trials"],
            steps=size["capacity_steps"],
            seed=seed,
        )
        for k in (2, 3)
    }
    capacity["layer_K2_cover"] = _run(
        ctx,
        "c6",
        ce.separability_capacity,
        source="layer",
        n_outputs=2,
        m=2,
        n=8,
        sizes=COVER_SIZES,
        trials=size["capacity_trials"],
        steps=size["capacity_steps"],
        f0_scale=0.0,
        seed=seed,
    )
    capacity["layer_K2_cover"]["cover"] = [ce.cover_fraction(size_, 8) for size_ in COVER_SIZES]
    saddle = _run(
        ctx,
        "c6",
        ce.origin_saddle,
        source="gaussian",
        n_outputs=2,
        n_examples=16,
        m=8,
        n=8,
        trials=4,
        seed=seed,
    )
    return {
        "canonical": canonical,
        "negative_control": control,
        "pl": pl,
        "capacity": capacity,
        "origin": saddle,
    }


def c6_verdict(results: dict, tolerances: dict) -> tuple[Verdict, str, str, dict]:
    """Verdict, summary, key figure and the figures behind them."""
    level = tolerances["success_fraction"]
    canonical = results["canonical"]
    rank1 = {name: run["ranks"]["1"] for name, run in canonical.items()}
    squared = results["negative_control"]["squared"]["ranks"]["1"]
    ce_same = results["negative_control"]["cross_entropy"]["ranks"]["1"]
    control_ok = squared["successes"] == 0 and squared["min_final_loss"] > tolerances["epsilon"]
    binary_ok = all(rank1[f"{source}_K2"]["fraction"] >= level for source in ("layer", "gaussian"))
    unreg = results["pl"]["unregularized"]
    decay = unreg["parameter"]["slope_small_gap"]
    pl_fails = decay is not None and decay > tolerances["pl_decay_slope"]
    reg_slopes = {
        name: run["parameter"]["slope_small_gap"]
        for name, run in results["pl"].items()
        if name.startswith("l2")
    }
    reg_bounded = all(
        s is not None and abs(s) < tolerances["pl_bounded_slope"] for s in reg_slopes.values()
    )
    cap = {name: (run["N50"], run["KN50_over_dim"]) for name, run in results["capacity"].items()}
    moved = all(cap[f"gaussian_K{k}"][0] is not None for k in (2, 3))
    origin = results["origin"]
    figures = {
        "rank1_success": {name: [r["fraction"], *r["wilson"]] for name, r in rank1.items()},
        "squared_control": {
            "fraction": squared["fraction"],
            "min_final_loss": squared["min_final_loss"],
            "ce_same_instances_fraction": ce_same["fraction"],
        },
        "pl_slope_unregularized": {"parameter": decay, "delta": unreg["delta"]["slope_small_gap"]},
        "pl_slope_l2": reg_slopes,
        "pl_band_min_l2": {
            name: results["pl"][name]["parameter"]["band_min"] for name in reg_slopes
        },
        "N50": {name: value[0] for name, value in cap.items()},
        "KN50_over_manifold_dim": {name: value[1] for name, value in cap.items()},
        "origin_grad_norm_max": max(origin["grad_norm_at_origin"]),
        "origin_min_decrease": min(origin["decrease_along_saddle_direction"]),
    }
    g2, g3 = cap["gaussian_K2"], cap["gaussian_K3"]
    dim = results["capacity"]["gaussian_K2"]["manifold_dim"]
    where = (
        f"rank-1 CE separates random labels up to N50 = {_fmt(g2[0])} (K = 2) and {_fmt(g3[0])} (K = 3) "
        f"examples at m = n = 8, i.e. KN50 = {_fmt(g2[1])} and {_fmt(g3[1])} times the rank-1 manifold "
        f"dimension {dim}, against KN < {dim} for squared loss"
    )
    sentence = (
        f"The threshold is moved, not removed: {where}."
        if moved
        else f"No rank-1 separability limit was found in the sizes tried: {where}."
    )
    details = (
        f" At canonical-like sizes rank-1 CE reached loss < {tolerances['epsilon']} with 100% training "
        f"accuracy in {_pct(rank1['layer_K2'])} (layer features, 768 x 768, K = 2, N = 32) and "
        f"{_pct(rank1['gaussian_K2'])} (Gaussian, 64 x 64) of binary trials; with last-layer features "
        f"and K = 3 in {_pct(rank1['layer_K3'])} (rank-1 logit updates lie on one line, so a third "
        f"class cannot be separated; rank >= K - 1 is needed). Negative control: squared loss at rank 1 "
        f"(KN = 40 > 15) never got below {squared['min_final_loss']:.3g}, while CE on the same instances "
        f"succeeded in {ce_same['fraction']:.0%}. Global PL fails for CE: the PL ratio decays like "
        f"gap^{_fmt(decay)} as L -> 0; with l2 regularization it stays bounded (slopes "
        f"{', '.join(f'{k}: {_fmt(v)}' for k, v in reg_slopes.items())}). A = B = 0 is stationary "
        f"(gradient {figures['origin_grad_norm_max']:.0e}) but not a minimum."
    )
    if not control_ok:
        verdict = Verdict.INCONCLUSIVE
        details += (
            " The squared-loss negative control did not fail, so the machinery cannot be trusted."
        )
    elif binary_ok and not moved and not pl_fails:
        verdict = Verdict.SUPPORTED
    elif binary_ok:
        verdict = Verdict.SUPPORTED_WITH_CAVEATS
    else:
        verdict = Verdict.NOT_SUPPORTED
    figures.update(
        {
            "control_ok": control_ok,
            "binary_rank1_ok": binary_ok,
            "threshold_moved": moved,
            "global_pl_fails": pl_fails,
            "l2_pl_bounded": reg_bounded,
        }
    )
    key = (
        f"rank-1 binary success {_pct(rank1['layer_K2'])}/{_pct(rank1['gaussian_K2'])}; "
        f"KN50/d = {_fmt(g2[1])} (K=2), {_fmt(g3[1])} (K=3); PL slope {_fmt(decay)}"
    )
    return verdict, sentence + details, key, figures


def _fmt(value) -> str:
    return "n/a" if value is None else f"{value:.3g}"


def _pct(row: dict) -> str:
    low, high = row["wilson"]
    return f"{row['successes']}/{row['trials']} [{low:.2f}, {high:.2f}]"


def _c6_figures(ctx: AuditContext, results: dict) -> list[str]:
    fig, axes = new_figure(3)
    for name, run in results["pl"].items():
        for index, gap in enumerate(run["trajectories"]["gap"]):
            axes[0].semilogy(
                np.maximum(gap, 1e-16),
                color=f"C{list(results['pl']).index(name)}",
                label=name if index == 0 else None,
                lw=0.8,
            )
            gap, ratio = np.asarray(gap), np.asarray(run["trajectories"]["parameter"][index])
            keep = gap > run["gap_floor"]
            axes[1].loglog(
                gap[keep],
                ratio[keep],
                ".",
                ms=2,
                color=f"C{list(results['pl']).index(name)}",
                label=name if index == 0 else None,
            )
    axes[0].set(xlabel="step", ylabel="F - inf F", title="loss gap along trajectories")
    axes[1].set(
        xlabel="F - inf F",
        ylabel="||grad||^2 / (2 (F - inf F))",
        title="PL ratio (parameter space)",
    )
    axes[0].legend(fontsize=7)
    axes[1].legend(fontsize=7)
    for index, (name, run) in enumerate(results["canonical"].items()):
        ranks = list(run["ranks"])
        axes[2].plot(
            ranks, [run["ranks"][r]["fraction"] for r in ranks], "o-", color=f"C{index}", label=name
        )
    axes[2].set(
        xlabel="rank", ylabel="fraction reaching loss < eps, 100% acc", title="canonical-like sizes"
    )
    axes[2].legend(fontsize=7)
    first = ctx.figure_path("c6_trajectories.png")
    save_figure(fig, first)

    fig, axes = new_figure(2)
    for index, name in enumerate(("gaussian_K2", "gaussian_K3")):
        run = results["capacity"][name]
        _fraction_plot(
            axes[0],
            [row["KN"] / run["manifold_dim"] for row in run["rows"]],
            run["rows"],
            f"C{index}",
            f"K = {run['K']}",
        )
    axes[0].axvline(1.0, color="gray", ls="--", label="KN = d (squared-loss threshold)")
    axes[0].set(
        xlabel="KN / (m + n - 1)",
        ylabel="fraction separated at rank 1",
        title="rank-1 CE separability, Gaussian m = n = 8",
    )
    axes[0].legend(fontsize=7)
    cover = results["capacity"]["layer_K2_cover"]
    _fraction_plot(
        axes[1], [row["N"] for row in cover["rows"]], cover["rows"], "C2", "measured (layer, K = 2)"
    )
    axes[1].plot(COVER_SIZES, cover["cover"], "k--", label="Cover (1965), d = 8")
    axes[1].set(
        xlabel="N", ylabel="fraction separated", title="calibration: last-layer features, n = 8"
    )
    axes[1].legend(fontsize=7)
    second = ctx.figure_path("c6_separability.png")
    save_figure(fig, second)
    return [first.name, second.name]


def _fraction_plot(ax, xs, rows, color, label):
    fractions = np.array([row["fraction"] for row in rows])
    low = fractions - np.array([row["wilson"][0] for row in rows])
    high = np.array([row["wilson"][1] for row in rows]) - fractions
    ax.errorbar(xs, fractions, yerr=[low, high], fmt="o-", color=color, capsize=2, label=label)


def evaluate_c6(ctx: AuditContext) -> ClaimResult:
    tolerances = get_claim("C6").tolerances
    return _claim_result(
        ctx,
        "C6",
        c6_experiments,
        lambda results: c6_verdict(results, tolerances),
        _c6_figures,
        _strip_trajectories,
    )


def _strip_trajectories(results: dict) -> dict:
    """The evidence keeps every statistic but not the raw per-step curves (they are in the figure)."""
    pl = {
        name: {k: v for k, v in run.items() if k != "trajectories"}
        for name, run in results["pl"].items()
    }
    return {**results, "pl": pl}


# --- C7 ------------------------------------------------------------------------------------------

C7_CASES = {"K2": (2, 1), "K3": (3, 2), "K4": (4, 3), "K3_rank1_teacher_control": (3, 1)}


def c7_experiments(ctx: AuditContext) -> dict:
    size = SIZES[ctx.profile]["c7"]
    rho = get_claim("C7").tolerances["teacher_norm"]
    return {
        name: _run(
            ctx,
            "c7",
            teacher_student,
            n_outputs=k,
            teacher_rank=teacher_rank,
            m=size["m"],
            n=size["m"],
            n_train=size["per_class"] * k,
            n_test=size["n_test"],
            ranks=size["ranks"],
            trials=size["trials"],
            steps=size["steps"],
            rho=rho,
            bias_factor=size["bias_factor"],
            bias_trials=size["bias_trials"],
            seed=ctx.seed,
        )
        for name, (k, teacher_rank) in C7_CASES.items()
    }


def c7_verdict(results: dict) -> tuple[Verdict, str, str, dict]:
    def gain_is_real(run):  # test(r = 1) - test(best) > 0 with its interval
        return run["measured_rank"] > 1 and run["test_loss_r1_minus_best"]["ci"][0] > 0

    binary = results["K2"]
    multi = {name: results[name] for name in ("K3", "K4")}
    control = results["K3_rank1_teacher_control"]
    pattern = binary["measured_rank"] == 1 and all(gain_is_real(run) for run in multi.values())
    bound_binary = binary["predicted_rank"] == 1
    bound_multi = all(run["predicted_rank"] > 1 for run in multi.values())
    control_ok = control["measured_rank"] == 1
    figures = {
        name: {
            "predicted_rank": run["predicted_rank"],
            "measured_rank": run["measured_rank"],
            "test_loss_r1_minus_best": run["test_loss_r1_minus_best"],
            "test_loss_second_rank_minus_r1": run["test_loss_second_rank_minus_r1"],
            "bound_flip_N": run["bound_flip_N"],
            "N": run["N"],
        }
        for name, run in results.items()
    }
    figures.update(
        {
            "measured_pattern_matches": pattern,
            "bound_binary_matches": bound_binary,
            "bound_multiclass_matches": bound_multi,
            "control_ok": control_ok,
        }
    )
    if not control_ok:
        verdict = Verdict.INCONCLUSIVE
    elif pattern and bound_binary and bound_multi:
        verdict = Verdict.SUPPORTED
    elif pattern:
        verdict = Verdict.SUPPORTED_WITH_CAVEATS
    else:
        verdict = Verdict.NOT_SUPPORTED

    def gap_text(run):
        if run["measured_rank"] == 1:
            name, gap = (
                f"test({run['per_rank'][1]['rank']}) - test(1)",
                run["test_loss_second_rank_minus_r1"],
            )
        else:
            name, gap = "test(1) - test(best)", run["test_loss_r1_minus_best"]
        return f"{name} = {gap['mean']:.3f} [{gap['ci'][0]:.3f}, {gap['ci'][1]:.3f}]"

    parts = [
        f"{name}: measured optimum r = {run['measured_rank']} ({gap_text(run)}), "
        f"bound predicts r = {run['predicted_rank']}"
        for name, run in results.items()
    ]
    flips = ", ".join(
        f"{name} N >= {run['bound_flip_N']:.0f}"
        for name, run in multi.items()
        if run["bound_flip_N"] is not None
    )
    summary = (
        "Teacher-student in the linearized model (Gaussian features, teacher of rank K - 1, student "
        "constrained to the teacher's Frobenius norm): "
        + "; ".join(parts)
        + ". "
        + (
            "The simulated optimum is 1 for binary and above 1 for K > 2, as claimed. "
            if pattern
            else "The simulated optima do not follow the claimed binary/multi-class pattern. "
        )
        + (
            "The bound predicts the same ranks."
            if bound_binary and bound_multi
            else f"The bound, with its constants, predicts r = 1 for K > 2 too at these N: its sqrt(r) "
            f"variance term dwarfs the bias gain until {flips or 'never'}. "
            "Binary saturation at r = 1 holds here because the teacher has rank K - 1 = 1 (forced for "
            "last-layer features, an assumption for Gaussian ones)."
        )
    )
    key = (
        f"optimal rank measured/predicted: K=2 {binary['measured_rank']}/{binary['predicted_rank']}, "
        + ", ".join(f"{n} {r['measured_rank']}/{r['predicted_rank']}" for n, r in multi.items())
        + f"; control {control['measured_rank']}"
    )
    return verdict, summary, key, figures


def _c7_figure(ctx: AuditContext, results: dict) -> str:
    fig, axes = new_figure(2)
    for index, (name, run) in enumerate(results.items()):
        ranks = [row["rank"] for row in run["per_rank"]]
        means = np.array([row["test_loss"] for row in run["per_rank"]])
        low = means - np.array([row["test_ci"][0] for row in run["per_rank"]])
        high = np.array([row["test_ci"][1] for row in run["per_rank"]]) - means
        axes[0].errorbar(
            ranks,
            means - run["bayes_test_loss"],
            yerr=[low, high],
            fmt="o-",
            capsize=2,
            color=f"C{index}",
            label=f"{name} (teacher rank {run['teacher_rank']})",
        )
        axes[1].plot(
            ranks, [row["bound"] for row in run["per_rank"]], "s--", color=f"C{index}", label=name
        )
        axes[1].plot(ranks, [row["bias"] for row in run["per_rank"]], "o:", color=f"C{index}")
    axes[0].set(
        xlabel="student rank", ylabel="test CE - Bayes CE", title="held-out loss by rank (95% CI)"
    )
    axes[1].set(
        xlabel="student rank",
        ylabel="nats",
        yscale="log",
        title="bound = bias + 4 R (dashed), bias (dotted)",
    )
    axes[0].legend(fontsize=7)
    axes[1].legend(fontsize=7)
    path = ctx.figure_path("c7_rank.png")
    save_figure(fig, path)
    return path.name


def evaluate_c7(ctx: AuditContext) -> ClaimResult:
    return _claim_result(
        ctx,
        "C7",
        c7_experiments,
        c7_verdict,
        lambda ctx, results: [_c7_figure(ctx, results)],
        lambda results: results,
    )
