"""C4-real: C4 on real NTK features: does the Gaussian-iid constant transfer?

The real instances are s x s blocks of the Jacobian of MiniLM's logits w.r.t. its last layer's value
matrix over a pool of real SST-2 examples (lora_claims.methods.ntk.feature_blocks); the Gaussian
column is the same estimator under the cache key C4 uses, so an audit that ran C4 reuses its runs.
"""

from __future__ import annotations

import math

from lora_claims.harness.environment import on_one_torch_thread
from lora_claims.harness.plotting import new_figure, save_figure
from lora_claims.harness.spec import ClaimSpec, Decision, Needs, Outcome, Verdict
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
        "A threshold transfers if the real rho is within match_band of the Gaussian one at the same "
        "shape and level. All transfer -> supported; exact fit transfers but not the budgeted "
        "threshold -> supported_with_caveats; exact fit does not transfer -> not_supported."
    ),
    rule=(
        "A threshold transfers if both the real and the Gaussian rho were reached on the grid and differ "
        "by at most match_band. Supported if every threshold (each exact-fit shape and the budgeted "
        "Armijo GD one) transfers; supported with caveats if every exact-fit threshold transfers but the "
        "budgeted one does not; not supported if an exact-fit threshold does not transfer."
    ),
    version="1.0",
    evaluation="lora_claims.methods.cstar.estimate with a real-feature sampler (lora_claims.methods.ntk.real_capacity).",
    tolerances={"match_band": 0.05,
                "paper_setting": {"optimizer": "armijo", "steps": 300, "tol": 1e-6, "level": 0.95}},
    # C4's estimator sizes, so the Gaussian column is C4's own run; pool_test_rows: test rows
    # added to the 32 train rows of the feature pool.
    sizes={
        "smoke": {"solv_shapes": [[6, 6, 1]], "solv_trials": 30, "gd_shape": [10, 10, 1], "gd_trials": 60,
                  "bootstrap": 300, "pool_test_rows": 40},
        "ci": {"solv_shapes": [[10, 10, 1], [6, 6, 2]], "solv_trials": 100, "gd_shape": [10, 10, 1],
               "gd_trials": 200, "bootstrap": 1000, "pool_test_rows": 200},
        "thorough": {"solv_shapes": [[10, 10, 1], [20, 20, 1], [16, 16, 2], [12, 12, 3]], "solv_trials": 300,
                     "gd_shape": [20, 20, 1], "gd_trials": 200, "bootstrap": 1000, "pool_test_rows": 400},
    },
    needs=Needs(device="cpu", data=(TASK,), models=(MODEL,)),
)


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
    sizes = spec.sizes_for(ctx.profile)
    paper = spec.tolerances["paper_setting"]
    level = paper["level"]
    loaded = pool_features(TASK, DATA_SEED, MATRIX_KIND, sizes["pool_test_rows"], data_dir=ctx.data_dir,
                           model_paths=ctx.model_paths, cache_root=ctx.cache.root, model_name=MODEL)
    source, pool = pool_identity(loaded), loaded.features
    rows, grids = [], {}
    for shape in sizes["solv_shapes"]:
        config = CStarConfig(*shape, definition="solv", trials=sizes["solv_trials"], seed=ctx.seed,
                             bootstrap=sizes["bootstrap"])
        rows.append(_row(EXACT_FIT, shape, level, _cstar(ctx.cache, config),
                         _cstar(ctx.cache, config, pool, source), grids))
    gd = CStarConfig(*sizes["gd_shape"], definition="gd", trials=sizes["gd_trials"], seed=ctx.seed, level=level,
                     gd=GDSettings(optimizer=paper["optimizer"], steps=paper["steps"], tol=paper["tol"]),
                     bootstrap=sizes["bootstrap"])
    rows.append(_row(f"Armijo GD N={paper['steps']}", sizes["gd_shape"], level, _cstar(ctx.cache, gd),
                     _cstar(ctx.cache, gd, pool, source), grids))
    decision = {
        "level": level,
        "pool_examples": pool.n_examples,
        "rows": [{"definition": row["definition"], "shape": row["shape"], "real_rho": row["real"]["rho"],
                  "gaussian_rho": row["gaussian"]["rho"], "real_best_point": row["real_best_point"]}
                 for row in rows],
    }
    for row, inputs in zip(rows, decision["rows"], strict=True):
        row["transfers"] = _transfers(inputs, spec.tolerances["match_band"])
    evidence = {"features": source, "level": level, "rows": rows, "grids": grids}
    return Outcome(decision, evidence, [_figure(ctx, rows, grids)])


def _transfers(row: dict, band: float) -> bool:
    return (row["real_rho"] is not None and row["gaussian_rho"] is not None
            and abs(row["real_rho"] - row["gaussian_rho"]) <= band)


def decide(outcome: Outcome, spec: ClaimSpec) -> Decision:
    inputs, band = outcome.decision, spec.tolerances["match_band"]
    rows = inputs["rows"]
    exact = [row for row in rows if row["definition"] == EXACT_FIT]
    budgeted = next(row for row in rows if row["definition"] != EXACT_FIT)
    if all(_transfers(row, band) for row in rows):
        verdict = Verdict.SUPPORTED
        reason = "every threshold measured on real features matches the Gaussian one"
    elif all(_transfers(row, band) for row in exact):
        verdict = Verdict.SUPPORTED_WITH_CAVEATS
        reason = ("the exact-fit constant transfers to real features, but the budgeted (optimizer-"
                  "dependent) threshold does not")
    else:
        verdict = Verdict.NOT_SUPPORTED
        reason = "the exact-fit threshold on real features differs from the Gaussian-iid one"
    table = "; ".join(
        f"{r['definition']} {r['shape']}: real {_fmt(r['real_rho'])}"
        + ("" if r["real_rho"] is not None else
           f" (best: {r['real_best_point']['fraction']:.0%} at rho = {r['real_best_point']['rho']:.2f})")
        + f" vs Gaussian {_fmt(r['gaussian_rho'])}" for r in rows)
    summary = (f"{reason.capitalize()} ({inputs['level']:.0%} level, match band {band}): {table}. Real "
               f"features: {inputs['pool_examples']} SST-2 examples, blocks of MiniLM's last-layer value "
               f"Jacobian.")
    key = (f"C*_solv real/Gaussian {_fmt(exact[0]['real_rho'])}/{_fmt(exact[0]['gaussian_rho'])}; "
           f"C*_GD real/Gaussian {_fmt(budgeted['real_rho'])}/{_fmt(budgeted['gaussian_rho'])}")
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
