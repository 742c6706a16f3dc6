"""The audit report: report.json for scripts, report.md for readers.

report.json is self-contained: each claim entry carries its spec as evaluated (statement,
formalization, rule, version, tolerances, sizes), so report.md renders from the JSON alone and an
old report still renders after the registry has moved on.
"""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Any

from lora_claims.errors import InvalidArgument
from lora_claims.harness.cache import atomic_write_json, atomic_write_text, to_json
from lora_claims.harness.context import AuditContext
from lora_claims.harness.environment import environment
from lora_claims.harness.spec import ClaimResult

MAX_INLINE_EVIDENCE = 6000  # characters; longer evidence stays in report.json only
REPORT_SCHEMA = 2  # 2: claim entries carry their spec, rule and not-evaluable kind; the seed


def report_payload(results: list[ClaimResult], ctx: AuditContext) -> dict[str, Any]:
    return {
        "schema": REPORT_SCHEMA,
        "paper": "arXiv 2605.03724, Rethinking the Rank Threshold for LoRA Fine-Tuning",
        "generated_at": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "profile": ctx.profile,
        "device": ctx.device,
        "seed": ctx.seed,
        "data_dir": str(ctx.data_dir) if ctx.data_dir else None,
        "claims": [result.to_json() for result in results],
        "environment": environment(),
    }


REQUIRED_CLAIM_KEYS = ("id", "version", "verdict")


def load_report(path: Path) -> dict[str, Any]:
    """A report.json checked for what rendering needs; anything else is one error naming the key."""
    try:
        payload = json.loads(Path(path).read_text(encoding="utf-8"))
    except OSError as error:
        raise InvalidArgument(f"{path}: cannot read it ({error.strerror or error})") from None
    except UnicodeDecodeError:
        raise InvalidArgument(f"{path}: not a text file (not UTF-8): expected a report.json") from None
    except json.JSONDecodeError as error:
        raise InvalidArgument(f"{path}: not valid JSON (line {error.lineno}: {error.msg})") from None
    if not isinstance(payload, dict):
        raise InvalidArgument(f"{path}: expected a JSON object with a 'claims' list, "
                              f"got a {type(payload).__name__}")
    claims = payload.get("claims")
    if not isinstance(claims, list):
        raise InvalidArgument(f"{path}: key 'claims' is missing or not a list: not a lora-claims report")
    for index, claim in enumerate(claims):
        if not isinstance(claim, dict):
            raise InvalidArgument(f"{path}: claims[{index}] is not an object")
        missing = [key for key in REQUIRED_CLAIM_KEYS if key not in claim]
        if missing:
            raise InvalidArgument(f"{path}: claims[{index}] lacks key(s) {', '.join(missing)}")
    for key in ("generated_at", "profile", "device"):
        if key not in payload:
            raise InvalidArgument(f"{path}: key {key!r} is missing: not a lora-claims report")
    return payload


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def _conditions_note(claim: dict[str, Any], payload: dict[str, Any]) -> str:
    """Flag a result evaluated under another profile or device than the report's own."""
    conditions = claim.get("conditions") or {}
    differs = {key: value for key, value in conditions.items() if value != payload.get(key)}
    return f" [{', '.join(f'{k} {v}' for k, v in differs.items())}]" if differs else ""


def render_markdown(payload: dict[str, Any]) -> str:
    seed = f", seed {payload['seed']}" if payload.get("seed") is not None else ""
    env = payload.get("environment") or {}
    lines = [
        "# lora-claims audit of arXiv 2605.03724",
        "",
        f"Generated {payload['generated_at']}, profile `{payload['profile']}`, "
        f"device `{payload['device']}`{seed}, lora-claims {env.get('lora_claims', '?')}, "
        f"commit `{(env.get('git') or {}).get('commit') or 'unknown'}`.",
        "",
        "| claim | verdict | key figure | evidence |",
        "|---|---|---|---|",
    ]
    for claim in payload["claims"]:
        spec = claim.get("spec") or {}
        title = spec.get("title", "") + _conditions_note(claim, payload)
        key_figure = claim.get("key_figure") or claim.get("summary", "")
        lines.append(
            f"| {claim['id']} {_cell(title)} | **{claim['verdict']}** | "
            f"{_cell(key_figure)} | {_cell(claim.get('summary', ''))} |"
        )
    for claim in payload["claims"]:
        spec = claim.get("spec") or {}
        lines += [
            "",
            f"## {claim['id']}: {spec.get('title', '')} (v{claim['version']})"
            f"{_conditions_note(claim, payload)}",
            "",
            f"**Verdict: {claim['verdict']}.** {claim.get('summary', '')}",
            "",
        ]
        for label, key in (("Claim (our words)", "statement"), ("Formalization", "formalization"),
                           ("Rule", "rule")):
            if spec.get(key):
                lines.append(f"- {label}: {spec[key]}")
        for label, key in (("Tolerances", "tolerances"), ("Sizes", "sizes")):
            if spec.get(key):
                lines.append(f"- {label}: `{json.dumps(spec[key], sort_keys=True)}`")
        if claim.get("seconds") is not None:
            lines.append(f"- Evaluated in {claim['seconds']:.1f} s")
        lines += [f"- Figure: ![{name}]({name})" for name in claim.get("figures", [])]
        evidence = to_json(claim.get("evidence", {})).rstrip()
        if len(evidence) > MAX_INLINE_EVIDENCE:
            lines.append(f"- Evidence: keys {', '.join(claim['evidence'])}; in full in report.json")
        elif claim.get("evidence"):
            lines += ["", "<details><summary>Evidence (JSON)</summary>", "", "```json",
                      evidence, "```", "", "</details>"]
    packages = ", ".join(f"{k} {v}" for k, v in (env.get("packages") or {}).items() if v)
    lines += ["", "## Environment", "", f"Python {env.get('python', '?')}; {packages}.", ""]
    return "\n".join(lines)


def write_report(out_dir: Path, results: list[ClaimResult], ctx: AuditContext) -> dict[str, Any]:
    payload = report_payload(results, ctx)
    for claim in payload["claims"]:  # figures live in out_dir/figures, linked relative to it
        claim["figures"] = [f"figures/{Path(name).name}" for name in claim["figures"]]
    atomic_write_json(Path(out_dir) / "report.json", payload)
    atomic_write_text(Path(out_dir) / "report.md", render_markdown(payload))
    return payload
