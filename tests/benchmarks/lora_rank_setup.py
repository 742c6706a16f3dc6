"""What the LoRA-rank benchmarks share: the encoders, a fixed batch, the peft model, its steps.

The encoders and the peft model come from the harness itself (lora_claims.methods.finetune.models and
lora_claims.methods.finetune.runs), so the benchmarks time what the claims run. The workload is fixed so that
numbers from different ranks, machines and commits compare: batch ``TRAIN_BATCH`` (training) or
``EVAL_BATCH`` (evaluation), every sentence padded to ``SEQ_LEN`` tokens, two labels, LoRA on the
query and value projections of every layer, AdamW. Padding to a fixed length makes the cost
independent of the text, so a few fixed sentences stand in for data.
"""

from __future__ import annotations

import os
import resource
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch
from bench_timing import synchronize

from lora_claims.methods.counting.capacity import ENCODERS
from lora_claims.methods.finetune import runs as finetune
from lora_claims.methods.finetune.models import MissingModel, resolve_model
from lora_claims.methods.finetune.runs import RunConfig

RANKS = (1, 4, 12, 16)
TRAIN_BATCH = 8
EVAL_BATCH = 32
SEQ_LEN = 64
NUM_LABELS = 2
SENTENCES = (
    "it 's a charming and often affecting journey .",
    "unflinchingly bleak and desperate",
    "the acting , costumes , music , cinematography and sound are all astounding given the "
    "production 's austere locales .",
    "it 's slow -- very , very slow .",
)


@dataclass(frozen=True)
class BenchEncoder:
    key: str  # the name --model-path uses
    hub_id: str  # its entry in lora_claims.methods.counting.capacity.ENCODERS

    @property
    def targets(self) -> tuple[str, str]:
        return ENCODERS[self.hub_id].query_value_modules


MINILM = BenchEncoder("minilm", "sentence-transformers/all-MiniLM-L6-v2")
MPNET = BenchEncoder("mpnet", "sentence-transformers/all-mpnet-base-v2")
BENCH_ENCODERS = {encoder.key: encoder for encoder in (MINILM, MPNET)}


def encoder_path(encoder: BenchEncoder, model_paths: dict[str, str]) -> Path:
    """The encoder's weights as the harness finds them, or a skip that says how to get them."""
    try:
        return resolve_model(encoder.key, model_paths).path
    except MissingModel as missing:
        pytest.skip(str(missing))


def build_lora_model(path: Path, encoder: BenchEncoder, rank: int, device: str) -> torch.nn.Module:
    """The fine-tuning runner's own model: a fresh two-way head and LoRA of ``rank`` on q/v."""
    model, targets = finetune.build_lora_model(RunConfig(model=encoder.key, rank=rank, device=device),
                                               path, NUM_LABELS)
    assert tuple(targets) == encoder.targets
    return model.to(device)


def fixed_batch(path: Path, size: int, device: str, seq_len: int = SEQ_LEN) -> dict[str, torch.Tensor]:
    """``size`` sentences padded (or cut) to exactly ``seq_len`` tokens, with labels."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(path)
    texts = [SENTENCES[i % len(SENTENCES)] for i in range(size)]
    batch = tokenizer(texts, padding="max_length", truncation=True, max_length=seq_len, return_tensors="pt")
    batch["labels"] = torch.arange(size) % NUM_LABELS
    return {name: tensor.to(device) for name, tensor in batch.items()}


def expected_lora_parameters(model: torch.nn.Module, encoder: BenchEncoder, rank: int) -> int:
    """r * (m + n) for every adapted m x n matrix, read from the frozen base layers' shapes."""
    total = 0
    adapted = 0
    for name, module in model.named_modules():
        if name.rsplit(".", 1)[-1] in encoder.targets and hasattr(module, "base_layer"):
            out_features, in_features = module.base_layer.weight.shape
            total += rank * (out_features + in_features)
            adapted += 1
    assert adapted == ENCODERS[encoder.hub_id].adapted_matrices("all_layers")
    return total


def make_train_step(model: torch.nn.Module, batch: dict[str, torch.Tensor]) -> tuple[Callable[[], None],
                                                                                    torch.optim.Optimizer]:
    """One training step (forward, backward, AdamW step) as a no-argument callable."""
    model.train()
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4)

    def step() -> None:
        loss = model(**batch).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    return step, optimizer


def make_eval_step(model: torch.nn.Module, batch: dict[str, torch.Tensor]) -> Callable[[], None]:
    """One batch of inference, without labels or gradients."""
    model.eval()
    inputs = {name: tensor for name, tensor in batch.items() if name != "labels"}

    def step() -> None:
        with torch.inference_mode():
            model(**inputs)

    return step


def optimizer_state_bytes(optimizer: torch.optim.Optimizer) -> int:
    """Bytes AdamW keeps between steps (two moments per trainable parameter, plus step counters)."""
    return sum(
        value.numel() * value.element_size()
        for state in optimizer.state.values()
        for value in state.values()
        if torch.is_tensor(value)
    )


def peak_memory_bytes(run: Callable[[], None], device: str) -> dict[str, int | str]:
    """Peak memory while ``run`` executes once: torch's allocator on CUDA, resident set on CPU.

    Call it on the first run of a step: later runs reuse memory the first one left in the process,
    so only the first shows what the step needs (activations, gradients, optimizer state). On Linux
    the resident-set high-water mark (VmHWM) is reset by writing 5 to /proc/self/clear_refs, which
    makes the peak a property of this call rather than of the whole session; where that is not
    possible the session-wide peak is reported and labelled so. The kernel updates VmHWM lazily,
    so the share above the start is clamped at zero.
    """
    if device.startswith("cuda"):
        synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
        before = torch.cuda.memory_allocated(device)
        run()
        synchronize(device)
        peak = torch.cuda.max_memory_allocated(device)
        return {"peak_memory_bytes": peak, "peak_memory_above_start_bytes": peak - before,
                "peak_memory_kind": "cuda_allocated"}
    before = _status_bytes("VmRSS")
    reset = _reset_resident_peak()
    run()
    peak = _status_bytes("VmHWM")
    return {"peak_memory_bytes": peak, "peak_memory_above_start_bytes": max(0, peak - before),
            "peak_memory_kind": "rss" if reset else "rss_session_peak"}


def _reset_resident_peak() -> bool:
    try:
        with open("/proc/self/clear_refs", "w") as handle:
            handle.write("5")
    except OSError:
        return False
    return True


def _status_bytes(field: str) -> int:
    """A memory field of /proc/self/status, or the session's peak RSS where there is no /proc."""
    try:
        with open("/proc/self/status") as handle:
            for line in handle:
                if line.startswith(field + ":"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak if sys.platform == "darwin" else peak * 1024  # bytes on macOS, KiB elsewhere


def workload_info(device: str) -> dict[str, int | str]:
    return {"num_labels": NUM_LABELS, "device": device,
            "torch_threads": torch.get_num_threads(), "cpu_count": os.cpu_count() or 0}
