"""C1: which reading of r(r+1)/2 > KN gives the prescribed r >= 12."""

from lora_claims.harness.registry import Verdict


def test_c1_twelve_comes_from_the_sqrt_form_not_the_exact_inequality(audit):
    result = audit.result("C1")
    # Verdict asserted, not loosened: the exact count gives 11 at K = 2, N = 32.
    assert result.verdict is Verdict.SUPPORTED_WITH_CAVEATS
    rows = {(row["K"], row["N"]): row for row in result.evidence["table"]}
    assert rows[(2, 32)]["r_min_exact"] == 11 and rows[(2, 32)]["r_min_sqrt_form"] == 12
    assert rows[(2, 32)]["off_by_one"]
    assert rows[(1, 32)]["r_min_exact"] == 8
    assert rows[(3, 48)]["r_min_exact"] == 17  # MNLI 16-shot
    readings = result.evidence["readings_giving_prescribed_rank"]
    assert readings["exact inequality, canonical 16-shot setups"] == []
    assert readings["KN values whose exact minimum is 12"] == [66, 77]
