"""Shared helpers for the fine-tuning tests: the staged data, a tiny offline model, toy GLUE files.

Data-dependent tests skip with the reason when no GLUE folder is configured, except in CI (``CI``
set), where ``.ci/run`` provides ``LORA_CLAIMS_DATA`` and missing data is a failure.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from lora_claims.errors import NotEvaluable
from lora_claims.harness.pytest_plugin import in_ci, missing_input
from lora_claims.methods.data.kshot import resolve_data_dir

TOY_WORDS = ("good", "great", "fine", "bad", "awful", "poor", "movie", "plot", "the", "a")


def require_glue_data(data_dir) -> Path:
    """The staged GLUE folder, or skip (outside CI) / fail (in CI) with the reason."""
    try:
        return resolve_data_dir(data_dir)
    except NotEvaluable as reason:
        if os.environ.get("CI"):
            pytest.fail(f"CI must provide the GLUE data (LORA_CLAIMS_DATA): {reason}")
        pytest.skip(str(reason))


def skip_unless_data_or_ci(result) -> None:
    """Skip a claim test whose claim could not run for lack of data (never in CI)."""
    reason = missing_input(result)
    if reason is not None:
        if in_ci():
            pytest.fail(f"CI must provide the GLUE data: {reason}")
        pytest.skip(reason)


def paper_scale_result(audit, claim_id: str, device: str):
    """A GPU-marked claim at paper scale on CUDA, or as a smoke run on random-init encoders with
    --device cpu (plumbing: never a verdict); a claim that could not run fails with the reason."""
    on_gpu = device.startswith("cuda")
    result = audit.result(claim_id, profile="thorough" if on_gpu else "smoke", device=device)
    skip_unless_data_or_ci(result)
    if not on_gpu:
        assert result.verdict.value == "not_evaluated" and result.summary.startswith("smoke run")
        assert result.evidence["design"]["random_init"], result.summary
    else:
        assert result.verdict.value != "not_evaluated", result.summary
    return result


def write_toy_glue(root: Path, seeds=(13, 42), k: int = 16, test_rows: int = 40) -> Path:
    """A toy SST-2 in the staged layout: sentiment words decide the label, so it is learnable."""
    import numpy as np

    rng = np.random.default_rng(0)
    positive, negative, filler = TOY_WORDS[:3], TOY_WORDS[3:6], TOY_WORDS[6:]

    def rows(n_per_class):
        lines = []
        for label, words in ((0, negative), (1, positive)):
            for _ in range(n_per_class):
                sentence = " ".join(rng.choice(filler, 3).tolist() + [str(rng.choice(words))])
                lines.append(f"{sentence}\t{label}")
        return "sentence\tlabel\n" + "\n".join(lines) + "\n"

    for seed in seeds:
        folder = root / "SST-2" / "k-shot" / f"{k}-{seed}"
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "train.tsv").write_text(rows(k))
        (folder / "dev.tsv").write_text(rows(k))
    (root / "SST-2" / "k-shot" / f"{k}-{seeds[-1]}" / "test.tsv").write_text(rows(test_rows // 2))
    return root


def build_tiny_model(folder: Path, init_seed: int = 0) -> Path:
    """A randomly initialized 2-layer BERT (hidden size 32) with a word-level tokenizer, saved
    like a hub model: exercises the whole pipeline offline in seconds. Its weights come from
    ``init_seed`` alone, not from whatever the global RNG held when a fixture first asked."""
    import torch
    from transformers import BertConfig, BertForSequenceClassification, BertTokenizer

    folder.mkdir(parents=True, exist_ok=True)
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *TOY_WORDS]
    (folder / "vocab.txt").write_text("\n".join(vocab) + "\n")
    tokenizer = BertTokenizer(vocab=str(folder / "vocab.txt"))
    tokenizer.save_pretrained(folder)
    config = BertConfig(vocab_size=len(vocab), hidden_size=32, num_hidden_layers=2,
                        num_attention_heads=2, intermediate_size=64, max_position_embeddings=64)
    with torch.random.fork_rng():
        torch.manual_seed(init_seed)
        BertForSequenceClassification(config).save_pretrained(folder)
    return folder


def assert_needs_gpu(audit, claim_id: str) -> None:
    """A paper-scale claim on a CPU: not evaluated, of kind needs_gpu, naming `pytest -m gpu`."""
    from lora_claims.harness.spec import Verdict

    result = audit.result(claim_id, device="cpu")
    assert result.verdict is Verdict.NOT_EVALUATED
    if result.not_evaluable["kind"] == "missing_data" and not in_ci():
        pytest.skip(result.summary)
    assert result.not_evaluable["kind"] == "needs_gpu" and "pytest -m gpu" in result.summary
