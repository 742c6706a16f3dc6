"""C4-real: C4 on real NTK features: does the Gaussian-iid constant transfer?

The real instances are s x s blocks of the Jacobian of MiniLM's logits w.r.t. its last layer's value
matrix over a pool of real SST-2 examples (lora_claims.methods.ntk.feature_blocks); the Gaussian
column is the same estimator under the cache key C4 uses, so an audit that ran C4 reuses its runs.
"""

from __future__ import annotations

import math
from dataclasses import replace

from lora_claims.harness.environment import on_one_torch_thread
from lora_claims.harness.plotting import new_figure, save_figure
from lora_claims.harness.spec import ClaimSpec, Decision, Needs, Outcome, Verdict
from lora_claims.methods.cstar.compare import (
    INSIDE,
    NOT_FOUND,
    OUTSIDE,
    UNDECIDED,
    against_band,
    difference_interval,
    power_to_show_equal,
)
from lora_claims.methods.cstar.estimate import CSTAR, CSTAR_REAL, CStarConfig, CStarResult, estimate_cstar
from lora_claims.methods.cstar.solvers import GDSettings
from lora_claims.methods.ntk.real_capacity import pool_identity, real_lora_sampler
from lora_claims.methods.ntk.real_features import pool_features

TASK, DATA_SEED, MATRIX_KIND, MODEL = "SST-2", 42, "value", "minilm"
EXACT_FIT = "exact fit"

SPEC = ClaimSpec(
    id="C4-real",
    title="C4 on real NTK features: does the Gaussian-iid constant transfer?",
    statement=(
        "The capacity constant C* of r(m+n) - r^2 > C* KN, measured under Gaussian-iid features (C4), "
        "is the same when the features are the Jacobians of a real pretrained encoder."
    ),
    formalization=(
        "C4's estimators (exact fit by Levenberg-Marquardt with restarts; Armijo GD at the paper "
        "setting, N = 300, tol 1e-6, 95% level) on instances cut from real features: s x s blocks "
        "(random rows and columns) of the Jacobian of MiniLM's K = 2 logits w.r.t. its last-layer "
        "value matrix, over all logits of random subsets of real SST-2 examples, targets y ~ N(0, I). "
        "The real budgeted sweep extends C4's rho grid by extra_gd_rhos. Each comparison is the "
        "parametric-bootstrap 95% interval of real rho minus Gaussian rho at the same shape and level; "
        "the power to show a transfer is simulated with both curves equal to the Gaussian one."
    ),
    rule=(
        "A threshold transfers if the interval of real minus Gaussian rho lies inside +- match_band, "
        "does not transfer if it lies outside, and is undecided otherwise; a threshold not reached on "
        "the grid (real or Gaussian) is not found and decides nothing. Supported if every threshold "
        "(each exact-fit shape and the budgeted Armijo GD one) transfers; not supported if an "
        "exact-fit threshold does not transfer; supported with caveats if every exact-fit threshold "
        "transfers and the budgeted one does not; inconclusive otherwise, marked underpowered where "
        "the simulated power to show a transfer of an undecided threshold is below min_power."
    ),
    version="2.0",
    reading=(
        "MiniLM's last-layer value Jacobians on SST-2's 16-shot split (seed 42) against Gaussian "
        "features, same estimators"
    ),
    evaluation=("lora_claims.methods.cstar.estimate with a real-feature sampler "
                "(lora_claims.methods.ntk.real_capacity)."),
    tolerances={"match_band": 0.05, "min_power": 0.8, "extra_gd_rhos": [2.5, 3.0, 4.0],
                "paper_setting": {"optimizer": "armijo", "steps": 300, "tol": 1e-6, "level": 0.95}},
    # C4's estimator sizes, so the Gaussian column is C4's own run; pool_test_rows: test rows
    # added to the 32 train rows of the feature pool; power_designs: designs simulated for the power.
    sizes={
        "smoke": {"solv_shapes": [[6, 6, 1]], "solv_trials": 30, "gd_shape": [10, 10, 1], "gd_trials": 60,
                  "bootstrap": 300, "pool_test_rows": 40, "power_designs": 100},
        "ci": {"solv_shapes": [[10, 10, 1], [6, 6, 2]], "solv_trials": 100, "gd_shape": [10, 10, 1],
               "gd_trials": 200, "bootstrap": 1000, "pool_test_rows": 200, "power_designs": 200},
        "thorough": {"solv_shapes": [[10, 10, 1], [20, 20, 1], [16, 16, 2], [12, 12, 3]], "solv_trials": 300,
                     "gd_shape": [20, 20, 1], "gd_trials": 200, "bootstrap": 1000, "pool_test_rows": 400,
                     "power_designs": 200},
    },
    needs=Needs(device="cpu", data=(TASK,), models=(MODEL,)),
)
CONFIDENCE = 0.95  # of every bootstrap interval the rule reads


def _cstar(cache, config: CStarConfig, pool=None, source=None) -> CStarResult:
    """Gaussian (the key C4 itself uses, so its cached run is shared) or real-feature estimate."""
    if pool is None:
        record = cache.get_or_compute(CSTAR, config.to_json(), lambda: estimate_cstar(config).to_json())
    else:
        sampler = real_lora_sampler(pool, pool.matrices[0])
        record = cache.get_or_compute(CSTAR_REAL, {**config.to_json(), "features": source},
                                      lambda: estimate_cstar(config, sampler=sampler).to_json())
    return CStarResult.from_json(record)


@on_one_torch_thread
def evaluate(spec: ClaimSpec, ctx) -> Outcome:
    sizes, tolerances = spec.sizes_for(ctx.profile), spec.tolerances
    paper = tolerances["paper_setting"]
    level = paper["level"]
    loaded = pool_features(TASK, DATA_SEED, MATRIX_KIND, sizes["pool_test_rows"], data_dir=ctx.data_dir,
                           model_paths=ctx.model_paths, cache_root=ctx.cache.root, model_name=MODEL)
    source, pool = pool_identity(loaded), loaded.features
    simulation = {"designs": sizes["power_designs"], "replicates": sizes["bootstrap"] // 4,
                  "confidence": CONFIDENCE, "seed": ctx.seed}
    rows, grids = [], {}

    def compare(definition: str, shape, gaussian: CStarResult, real: CStarResult) -> None:
        row = _row(definition, shape, level, gaussian, real, grids)
        row["difference_interval"] = difference_interval(real, gaussian, level, sizes["bootstrap"],
                                                         CONFIDENCE, ctx.seed)
        row["power"] = power_to_show_equal(gaussian, level, tolerances["match_band"], **simulation)
        rows.append(row)

    for shape in sizes["solv_shapes"]:
        config = CStarConfig(*shape, definition="solv", trials=sizes["solv_trials"], seed=ctx.seed,
                             bootstrap=sizes["bootstrap"])
        compare(EXACT_FIT, shape, _cstar(ctx.cache, config), _cstar(ctx.cache, config, pool, source))
    gd = CStarConfig(*sizes["gd_shape"], definition="gd", trials=sizes["gd_trials"], seed=ctx.seed,
                     level=level,
                     gd=GDSettings(optimizer=paper["optimizer"], steps=paper["steps"], tol=paper["tol"]),
                     bootstrap=sizes["bootstrap"])
    extended = replace(gd, grid=gd.p_grid() + tuple(round(gd.dimension / rho)
                                                    for rho in tolerances["extra_gd_rhos"]))
    compare(f"Armijo GD N={paper['steps']}", sizes["gd_shape"], _cstar(ctx.cache, gd),
            _cstar(ctx.cache, extended, pool, source))
    decision = {
        "level": level,
        "pool_examples": pool.n_examples,
        "rows": [{"definition": row["definition"], "shape": row["shape"], "real_rho": row["real"]["rho"],
                  "gaussian_rho": row["gaussian"]["rho"], "difference_interval": row["difference_interval"],
                  "power": row["power"], "real_best_point": row["real_best_point"]}
                 for row in rows],
    }
    for row, inputs in zip(rows, decision["rows"], strict=True):
        row["transfer"] = transfer(inputs, tolerances["match_band"])
    evidence = {"features": source, "level": level, "rows": rows, "grids": grids,
                "power_simulation": simulation}
    return Outcome(decision, evidence, [_figure(ctx, rows, grids)])


def transfer(row: dict, band: float) -> str:
    """inside (transfers), outside (does not), undecided, or not_found: see the rule."""
    estimate = (None if row["real_rho"] is None or row["gaussian_rho"] is None
                else row["real_rho"] - row["gaussian_rho"])
    return against_band(estimate, row["difference_interval"], 0.0, band)


def _verdict(rows: list[dict], band: float, min_power: float) -> tuple[Verdict, str]:
    outcomes = [transfer(row, band) for row in rows]
    exact = [outcome for row, outcome in zip(rows, outcomes, strict=True)
             if row["definition"] == EXACT_FIT]
    budgeted = next(outcome for row, outcome in zip(rows, outcomes, strict=True)
                    if row["definition"] != EXACT_FIT)
    if all(outcome == INSIDE for outcome in outcomes):
        return Verdict.SUPPORTED, "every threshold measured on real features matches the Gaussian one"
    if OUTSIDE in exact:
        return Verdict.NOT_SUPPORTED, ("an exact-fit threshold on real features differs from the "
                                       "Gaussian-iid one")
    if all(outcome == INSIDE for outcome in exact) and budgeted == OUTSIDE:
        return Verdict.SUPPORTED_WITH_CAVEATS, ("the exact-fit constant transfers to real features, but the "
                                                "budgeted (optimizer-dependent) threshold does not")
    open_rows = [row for row, outcome in zip(rows, outcomes, strict=True)
                 if outcome in (UNDECIDED, NOT_FOUND)]
    weakest = min(row["power"] for row in open_rows)
    if weakest < min_power:
        return Verdict.INCONCLUSIVE, (f"inconclusive (underpowered: simulated power to show a transfer "
                                      f"{weakest:.2f} < {min_power})")
    names = ", ".join(f"{row['definition']} {row['shape']} ({transfer(row, band)})" for row in open_rows)
    return Verdict.INCONCLUSIVE, f"inconclusive: not found on the grid or straddling the band: {names}"


def decide(outcome: Outcome, spec: ClaimSpec) -> Decision:
    inputs, band = outcome.decision, spec.tolerances["match_band"]
    rows = inputs["rows"]
    verdict, reason = _verdict(rows, band, spec.tolerances["min_power"])
    exact = [row for row in rows if row["definition"] == EXACT_FIT]
    budgeted = next(row for row in rows if row["definition"] != EXACT_FIT)
    table = "; ".join(
        f"{r['definition']} {r['shape']}: real {_fmt(r['real_rho'])}"
        + ("" if r["real_rho"] is not None else
           f" (best: {r['real_best_point']['fraction']:.0%} at rho = {r['real_best_point']['rho']:.2f})")
        + f" vs Gaussian {_fmt(r['gaussian_rho'])}, difference {_fmt_interval(r['difference_interval'])}"
        + f" ({transfer(r, band)}; power {r['power']:.2f})" for r in rows)
    summary = (f"{reason[0].upper()}{reason[1:]} ({inputs['level']:.0%} level, match band {band}): {table}. "
               f"Real features: {inputs['pool_examples']} SST-2 examples, blocks of MiniLM's last-layer "
               f"value Jacobian.")
    key = (f"C*_solv real/Gaussian {_fmt(exact[0]['real_rho'])}/{_fmt(exact[0]['gaussian_rho'])}; "
           f"C*_GD real/Gaussian {_fmt(budgeted['real_rho'])}/{_fmt(budgeted['gaussian_rho'])} "
           f"({transfer(budgeted, band)})")
    return Decision(verdict, summary, key)


def _threshold(result: CStarResult, level: float) -> dict:
    threshold = result.threshold(level)
    finite = [v if math.isfinite(v) else None for v in threshold.interval]
    return {"rho": threshold.rho if math.isfinite(threshold.rho) else None,
            "rho_grid": threshold.rho_grid if math.isfinite(threshold.rho_grid) else None,
            "interval": finite}


def _row(definition: str, shape, level: float, gaussian: CStarResult, real: CStarResult,
         grids: dict) -> dict:
    """One comparison; its (rho, success fraction) curves go into ``grids`` under the row's label."""
    best = max(real.points, key=lambda point: (point.fraction, -point.rho))
    row = {"definition": definition, "shape": "{}x{} r={}".format(*shape),
           "gaussian": _threshold(gaussian, level), "real": _threshold(real, level),
           "real_best_point": {"rho": best.rho, "fraction": best.fraction}}
    grids[f"{definition} {row['shape']}"] = {
        name: [(point.rho, point.fraction) for point in result.points]
        for name, result in (("gaussian", gaussian), ("real", real))
    }
    return row


def _figure(ctx, rows: list[dict], grids: dict) -> str:
    fig, axes = new_figure(len(rows))
    for ax, row in zip(axes, rows, strict=True):
        for name, style in (("gaussian", "o-"), ("real", "s--")):
            points = sorted(grids[f"{row['definition']} {row['shape']}"][name])
            ax.plot([p[0] for p in points], [p[1] for p in points], style, label=name, ms=4)
        ax.axvline(1.35, color="grey", lw=0.8, ls=":")
        ax.set(title=f"{row['definition']}, {row['shape']}", xlabel="rho = d / p", ylabel="success fraction")
        ax.legend(fontsize=8)
    name = "c4_real_features.png"
    save_figure(fig, ctx.figure_path(name))
    return name


def _fmt(value) -> str:
    return "not reached on the grid" if value is None else f"{value:.3f}"


def _fmt_interval(interval) -> str:
    return "[{}, {}]".format(*("unbounded" if value is None else f"{value:+.3f}" for value in interval))
