"""tests/claims/regression.json is the record of what each claim's evidence says at profile ci on
a CPU. A claim's formalization, rule, tolerances or sizes cannot change without a version bump:
their hash is recorded beside the version, and a changed hash under the same version fails here."""

from __future__ import annotations

import pytest

from lora_claims.harness.registry import REGISTRY
from lora_claims.harness.spec import Verdict


@pytest.mark.parametrize("claim_id", list(REGISTRY))
def test_each_claim_is_recorded_under_its_current_protocol(claim_id, regression):
    spec = REGISTRY[claim_id]
    entry = regression.get(f"{claim_id}@ci-cpu")
    assert entry is not None, f"{claim_id}: no recorded outcome in tests/claims/regression.json"
    assert entry["version"] == spec.version, (
        f"{claim_id}: recorded v{entry['version']}, the claim is v{spec.version}: re-measure it and "
        "record the new version's outcome")
    assert entry["protocol_hash"] == spec.protocol_hash(), (
        f"{claim_id} v{spec.version}: the formalization, rule, tolerances or sizes changed without "
        "a version bump")
    assert Verdict(entry["expected"]) and entry["reason"].strip()


def test_the_record_holds_no_reading_of_a_removed_claim(regression):
    recorded = {key.split("@")[0] for key in regression}
    assert recorded <= set(REGISTRY), sorted(recorded - set(REGISTRY))
