"""Tiny randomly initialised transformer classifiers and token batches for the NTK-feature tests."""

from __future__ import annotations

import torch
import transformers


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


def headless_copy(model):
    """The same architecture without a classification head (it returns hidden states, no logits)."""
    return transformers.AutoModel.from_config(model.config).eval()
