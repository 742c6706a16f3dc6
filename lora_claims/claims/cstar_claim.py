"""Claim C4: is C* ~ 1.35 the capacity constant of r(m+n) - r^2 > C* KN under iid features?

The paper's definition of C* is unknown, so every reasonable reading is measured with the same
calibrated estimator (lora_claims.methods.cstar.estimate) and each one is reported next to plain least squares with
D = d parameters:

- exact fit (no optimizer budget): C*_solv;
- budgeted training: C*_GD for Armijo GD at the setting that reproduces ~1.35 (N = 300 steps,
  relative loss < 1e-6, 95% of instances), across budgets N, and for Adam;
- the Marchenko-Pastur limit of fixed-step GD on least squares, the large-size value of the same
  budgeted definition for plain linear regression.

The verdict rule (registry tolerances) is fixed before the numbers: 1.35 is supported if the
budget-free threshold matches it; supported with caveats if only a budgeted reading matches it but
that reading is stable across budgets and specific to LoRA (least squares needs less); otherwise
not supported, with the readings that do give 1.35 named in the summary.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from lora_claims.harness.registry import REGISTRY, ClaimResult, Verdict
from lora_claims.harness.context import AuditContext
from lora_claims.methods.cstar.estimate import CStarConfig, CStarResult, estimate_cstar
from lora_claims.methods.cstar.solvers import GDSettings
from lora_claims.methods.cstar.marchenko_pastur import limit_threshold
from lora_claims.harness.plotting import new_figure, save_figure

FIGURE = "c4_cstar_phase_transition.png"


@dataclass(frozen=True)
class Sizes:
    solv_shapes: tuple[tuple[int, int, int], ...]
    solv_trials: int
    gd_shape: tuple[int, int, int]
    gd_trials: int
    budgets: tuple[int, ...]
    bootstrap: int


SIZES = {
    "smoke": Sizes(((6, 6, 1),), 30, (10, 10, 1), 60, (100, 300), 300),
    "ci": Sizes(((10, 10, 1), (6, 6, 2)), 100, (10, 10, 1), 200, (100, 300, 1000), 1000),
    "thorough": Sizes(
        ((10, 10, 1), (20, 20, 1), (16, 16, 2), (12, 12, 3)),
        300,
        (20, 20, 1),
        200,
        (100, 300, 1000, 3000),
        1000,
    ),
}


def _run(ctx: AuditContext, config: CStarConfig) -> CStarResult:
    record = ctx.cache.get_or_compute(
        "cstar", config.to_json(), lambda: estimate_cstar(config).to_json()
    )
    return CStarResult.from_json(record)


def _pair(ctx: AuditContext, config: CStarConfig) -> tuple[CStarResult, CStarResult]:
    """The estimate on LoRA and on its least-squares comparator with D = d."""
    return _run(ctx, config), _run(ctx, config.comparator())


def _summary_of(result: CStarResult, level: float) -> dict[str, Any]:
    threshold = result.threshold(level)
    return {
        "rho": _rounded(threshold.rho),
        "rho_grid": _rounded(threshold.rho_grid),
        "interval": [_rounded(value) for value in threshold.interval],
        "rho50": _rounded(result.threshold(0.5).rho),
        "rho50_interval": [_rounded(value) for value in result.threshold(0.5).interval],
    }


def _rounded(value: float) -> float | None:
    return round(value, 4) if math.isfinite(value) else None


def _fmt(value: float) -> str:
    return f"{value:.2f}" if math.isfinite(value) else "not reached"


def _fmt_interval(interval: tuple[float, float]) -> str:
    return f"[{_fmt(interval[0])}, {_fmt(interval[1])}]"


def evaluate_c4(ctx: AuditContext) -> ClaimResult:
    spec = REGISTRY["C4"]
    tol = spec.tolerances
    sizes = SIZES[ctx.profile]
    paper = tol["paper_setting"]
    level = paper["level"]
    target, band = tol["cstar_paper"], tol["match_band"]

    solv = {
        shape: _pair(
            ctx,
            CStarConfig(
                *shape,
                definition="solv",
                trials=sizes.solv_trials,
                seed=ctx.seed,
                bootstrap=sizes.bootstrap,
            ),
        )
        for shape in sizes.solv_shapes
    }

    def gd_config(optimizer: str, steps: int, trials: int) -> CStarConfig:
        settings = GDSettings(optimizer=optimizer, steps=steps, tol=paper["tol"])
        return CStarConfig(
            *sizes.gd_shape,
            definition="gd",
            trials=trials,
            seed=ctx.seed,
            level=level,
            gd=settings,
            bootstrap=sizes.bootstrap,
        )

    budgets = {
        steps: _pair(ctx, gd_config(paper["optimizer"], steps, sizes.gd_trials))
        for steps in sorted(set(sizes.budgets) | {paper["steps"]})
    }
    adam = _pair(ctx, gd_config("adam", paper["steps"], sizes.gd_trials))
    gd_lora, gd_linear = budgets[paper["steps"]]

    # The budget-free reading: the first grid rho where 95% of instances have an exact fit.
    solv_values = {shape: pair[0].threshold(level) for shape, pair in solv.items()}
    solv_matches = any(abs(t.rho_grid - target) <= band for t in solv_values.values())
    paper_gd = gd_lora.threshold(level)
    gd_matches = paper_gd.interval[0] <= target + band and paper_gd.interval[1] >= target - band
    across = [pair[0].threshold(level).rho for pair in budgets.values()]
    budget_spread = max(across) - min(across)
    budget_dependent = budget_spread > tol["budget_spread"]
    linear_gap = gd_linear.threshold(level).rho - paper_gd.rho  # > 0: least squares needs more
    lora_specific = linear_gap < -tol["linear_margin"]
    decidable = math.isfinite(paper_gd.interval[1]) and all(map(math.isfinite, across))

    limits = {str(steps): round(limit_threshold(steps, paper["tol"]), 4) for steps in budgets}
    limit_1000_1e8 = limit_threshold(1000, 1e-8)

    figure = _figure(ctx, solv, budgets, adam, paper["steps"], level, target)

    def rho(result: CStarResult) -> str:
        return _fmt(result.threshold(level).rho)

    solv_constant = min(t.rho_grid for t in solv_values.values())
    solv_text = "; ".join(
        f"{m}x{n} r={r}: {_fmt(solv_values[(m, n, r)].rho_grid)} "
        f"(P(fit at p=d) = {_fraction_at_dimension(pair[0])})"
        for (m, n, r), pair in solv.items()
    )
    budget_text = ", ".join(
        f"N={steps}: {rho(lora)} (least squares {rho(linear)})"
        for steps, (lora, linear) in budgets.items()
    )
    shape_text = "{}x{} r={}".format(*sizes.gd_shape)
    gd_text = (
        f"Armijo GD with N={paper['steps']}, tol={paper['tol']:g} at the {level:.0%} level "
        f"({shape_text}) gives {rho(gd_lora)} {_fmt_interval(paper_gd.interval)}, least squares "
        f"with D = d {rho(gd_linear)} {_fmt_interval(gd_linear.threshold(level).interval)}"
    )
    if not decidable:
        verdict = Verdict.INCONCLUSIVE
        reason = "a budgeted threshold was not reached on the grid, so its interval is unbounded."
    elif solv_matches:
        verdict = Verdict.SUPPORTED
        reason = "the budget-free exact-fit threshold itself is 1.35."
    elif gd_matches and not budget_dependent and lora_specific:
        verdict = Verdict.SUPPORTED_WITH_CAVEATS
        reason = "only the budgeted reading gives 1.35, but it is stable and specific to LoRA."
    else:
        verdict = Verdict.NOT_SUPPORTED
        which = (
            "only budgeted GD at the paper setting gives ~1.35"
            if gd_matches
            else ("no reading gives 1.35")
        )
        moves = "moves" if budget_dependent else "barely moves"
        reason = (
            f"{which}: the budget-free capacity constant (exact fit) is {_fmt(solv_constant)}, "
            f"the budgeted value {moves} with the step budget (spread {budget_spread:.2f} over "
            f"N in {sorted(budgets)}), and plain least squares with the same parameter count "
            f"needs {'less' if lora_specific else 'as much or more'} (difference "
            f"{linear_gap:+.2f}); 1.35 measures optimizer convergence within a budget, not the "
            f"capacity of the LoRA manifold."
        )
    summary = (
        f"Exact fit (C*_solv): {solv_text}. Budgeted training (C*_GD): {gd_text}; across budgets "
        f"{budget_text}; Adam (lr 1e-2, N={paper['steps']}): {rho(adam[0])} (least squares "
        f"{rho(adam[1])}). Marchenko-Pastur limit of fixed-step GD on least squares at tol "
        f"{paper['tol']:g}: {limits}; {limit_1000_1e8:.3f} at N=1000, tol 1e-8. "
        f"Verdict {verdict.value}: {reason}"
    )
    evidence = {
        "profile": ctx.profile,
        "level": level,
        "exact_fit": {
            f"{m}x{n}_r{r}": {"lora": pair[0].to_json(), "linear": pair[1].to_json()}
            for (m, n, r), pair in solv.items()
        },
        "gd_paper_setting": {
            "settings": gd_lora.config,
            "lora": _summary_of(gd_lora, level),
            "linear": _summary_of(gd_linear, level),
        },
        "gd_budgets": {
            str(steps): {"lora": _summary_of(pair[0], level), "linear": _summary_of(pair[1], level)}
            for steps, pair in budgets.items()
        },
        "gd_budget_grids": {
            str(steps): {"lora": pair[0].to_json()["grid"], "linear": pair[1].to_json()["grid"]}
            for steps, pair in budgets.items()
        },
        "adam": {
            "settings": adam[0].config,
            "lora": _summary_of(adam[0], level),
            "linear": _summary_of(adam[1], level),
        },
        "marchenko_pastur_limit": {
            "tol": paper["tol"],
            "by_steps": limits,
            "steps_1000_tol_1e-8": round(limit_1000_1e8, 4),
        },
        "decision": {
            "exact_fit_matches_1.35": solv_matches,
            "gd_paper_setting_matches_1.35": gd_matches,
            "gd_budget_spread": round(budget_spread, 4),
            "gd_budget_dependent": budget_dependent,
            "linear_minus_lora": round(linear_gap, 4),
            "lora_specific": lora_specific,
        },
    }
    key_figure = (
        f"C*_solv = {_fmt(solv_constant)}; C*_GD(Armijo, "
        f"N={paper['steps']}, {level:.0%}) = {_fmt(paper_gd.rho)} "
        f"{_fmt_interval(paper_gd.interval)} vs least squares "
        f"{_fmt(gd_linear.threshold(level).rho)}; GD range over budgets "
        f"{_fmt(min(across))}-{_fmt(max(across))}"
    )
    return ClaimResult(
        id=spec.id,
        version=spec.version,
        verdict=verdict,
        summary=summary,
        key_figure=key_figure,
        evidence=evidence,
        figures=[figure],
    )


def _fraction_at_dimension(result: CStarResult) -> str:
    """P(exact fit) at p = d with its Wilson interval, the one informative point of the edge."""
    point = min(result.points, key=lambda point: abs(point.rho - 1.0))
    low, high = point.wilson
    return f"{point.fraction:.3f} [{low:.3f}, {high:.3f}]"


def _figure(
    ctx: AuditContext,
    solv: dict,
    budgets: dict,
    adam: tuple,
    paper_steps: int,
    level: float,
    target: float,
) -> str:
    """Success fraction vs rho: left, one curve per definition; right, GD across budgets."""
    fig, (left, right) = new_figure(ncols=2)

    def curve(axis, result: CStarResult, label: str, style: str) -> None:
        points = sorted(result.points, key=lambda point: point.rho)
        axis.plot(
            [p.rho for p in points], [p.fraction for p in points], style, label=label, markersize=3
        )

    shape = next(iter(solv))
    curve(left, solv[shape][0], f"exact fit, LoRA {shape[0]}x{shape[1]} r={shape[2]}", "o-")
    curve(left, solv[shape][1], "exact fit, least squares", "s--")
    curve(left, budgets[paper_steps][0], f"Armijo GD N={paper_steps}, LoRA", "^-")
    curve(left, budgets[paper_steps][1], f"Armijo GD N={paper_steps}, least squares", "v--")
    curve(left, adam[0], f"Adam N={paper_steps}, LoRA", "d-")
    for steps, (lora, linear) in budgets.items():
        line = right.plot([], [])[0]
        color = line.get_color()
        points = sorted(lora.points, key=lambda point: point.rho)
        right.plot(
            [p.rho for p in points],
            [p.fraction for p in points],
            "o-",
            color=color,
            markersize=3,
            label=f"LoRA N={steps}",
        )
        points = sorted(linear.points, key=lambda point: point.rho)
        right.plot(
            [p.rho for p in points],
            [p.fraction for p in points],
            "--",
            color=color,
            label=f"least squares N={steps}",
        )
    for axis, title in ((left, "definitions of success"), (right, "Armijo GD across budgets")):
        axis.axhline(level, color="grey", linewidth=0.8)
        axis.axvline(target, color="red", linewidth=0.8, linestyle=":", label="paper's 1.35")
        axis.axvline(1.0, color="black", linewidth=0.8, linestyle=":")
        axis.set_xlabel("rho = (r(m+n) - r^2) / p")
        axis.set_ylabel("success fraction")
        axis.set_title(title)
        axis.legend(fontsize=6)
    save_figure(fig, ctx.figure_path(FIGURE))
    return FIGURE
