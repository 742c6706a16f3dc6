"""What rank 1 saves: LoRA training-step time, evaluation throughput, peak memory, optimizer state,
trainable parameters and adapter size, for r in RANKS on the real encoders.

Measurements, not checks: absolute times depend on the machine, so nothing here asserts one (the
ratio checks that CI runs are in test_lora_rank_ratios.py). Marked ``slow``; ``tox -e bench`` runs
them with ``--benchmark-only`` into bench/results.json, and ``lora-claims bench-table`` renders
that file as the README's table. The ``cuda`` variants run under ``pytest -m gpu``.
"""

from __future__ import annotations

import pytest
from bench_timing import synchronize
from lora_rank_setup import (
    BENCH_ENCODERS,
    EVAL_BATCH,
    RANKS,
    SEQ_LEN,
    TRAIN_BATCH,
    BenchEncoder,
    build_lora_model,
    encoder_path,
    expected_lora_parameters,
    fixed_batch,
    make_eval_step,
    make_train_step,
    optimizer_state_bytes,
    peak_memory_bytes,
    workload_info,
)

from lora_claims.methods.finetune.runs import parameter_counts

pytestmark = pytest.mark.slow

ROUNDS = 5  # timed rounds per benchmark, after one warm-up round that measures memory


def _measured(benchmark, step, device: str) -> None:
    """Peak memory of the first call (which is also the warm-up), then ROUNDS timed calls."""
    def synchronized_step() -> None:
        step()
        synchronize(device)

    benchmark.extra_info.update(peak_memory_bytes(synchronized_step, device))
    benchmark.pedantic(synchronized_step, rounds=ROUNDS, iterations=1)


def _record(benchmark, measure: str, encoder: BenchEncoder, rank: int, device: str, **workload) -> None:
    benchmark.group = f"{encoder.key}-{measure}-{device}"
    benchmark.extra_info.update({"measure": measure, "encoder": encoder.hub_id, "lora_rank": rank,
                                 **workload_info(device), **workload})


@pytest.fixture(params=BENCH_ENCODERS)
def encoder(request) -> BenchEncoder:
    return BENCH_ENCODERS[request.param]


@pytest.fixture(params=RANKS)
def rank(request) -> int:
    return request.param


@pytest.fixture(params=[pytest.param("cpu"), pytest.param("cuda", marks=pytest.mark.gpu)])
def on_each_device(request) -> None:
    """A cpu and a gpu-marked cuda variant of a test; the ``device`` fixture follows the marker."""


@pytest.fixture
def lora_model(encoder, rank, device, model_paths):
    """The encoder's folder and a fresh LoRA model of ``rank`` on ``device``."""
    path = encoder_path(encoder, model_paths)
    return path, build_lora_model(path, encoder, rank, device)


@pytest.mark.usefixtures("on_each_device")
def test_train_step(benchmark, lora_model, encoder, rank, device):
    path, model = lora_model
    step, optimizer = make_train_step(model, fixed_batch(path, TRAIN_BATCH, device))
    counts = parameter_counts(model)
    assert counts["lora_params"] == expected_lora_parameters(model, encoder, rank)

    _record(benchmark, "train_step", encoder, rank, device, batch_size=TRAIN_BATCH, seq_len=SEQ_LEN)
    _measured(benchmark, step, device)
    benchmark.extra_info.update(counts)
    benchmark.extra_info["optimizer_state_bytes"] = optimizer_state_bytes(optimizer)


@pytest.mark.usefixtures("on_each_device")
def test_eval_batch(benchmark, lora_model, encoder, rank, device):
    path, model = lora_model
    step = make_eval_step(model, fixed_batch(path, EVAL_BATCH, device))

    _record(benchmark, "eval_batch", encoder, rank, device, batch_size=EVAL_BATCH, seq_len=SEQ_LEN)
    _measured(benchmark, step, device)


def test_save_adapter(benchmark, lora_model, encoder, rank, device, tmp_path):
    """peft's save_pretrained of the adapter (LoRA factors plus the trainable head)."""
    _, model = lora_model
    folders = iter(tmp_path / f"round{i}" for i in range(ROUNDS + 1))

    _record(benchmark, "save_adapter", encoder, rank, device)
    benchmark.pedantic(lambda: model.save_pretrained(next(folders)), rounds=ROUNDS, warmup_rounds=1)
    weights = tmp_path / "round0" / "adapter_model.safetensors"
    benchmark.extra_info["adapter_file_bytes"] = weights.stat().st_size
    benchmark.extra_info.update(parameter_counts(model))
