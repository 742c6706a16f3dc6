"""The regression guard CI runs: what must hold between ranks on any machine, however noisy.

Absolute times are left to the benchmarks (test_bench_lora_ranks.py, ``tox -e bench``); these
checks use exact counts, which do not depend on the machine. The one time ratio (measured with the
steps taking turns) and its controls are ``timing`` tests: they run only with ``--benchmark-only``.
"""

from __future__ import annotations

import time

import pytest
from bench_timing import best_seconds, one_torch_thread
from lora_rank_setup import (
    MINILM,
    NUM_LABELS,
    RANKS,
    build_lora_model,
    encoder_path,
    expected_lora_parameters,
    fixed_batch,
    make_train_step,
    optimizer_state_bytes,
)
from safetensors import safe_open

from lora_claims.methods.counting.capacity import ENCODERS
from lora_claims.methods.finetune.runs import parameter_counts

# A rank-1 step may take at most this much longer than a rank-16 step: their true costs differ by a
# few percent (the LoRA factors are a sliver of the frozen encoder's work), so a larger gap means
# either a regression in the rank-1 path or background load that the turn-taking minimum did not
# absorb. 0.5 leaves room for the latter on a shared 2-core machine.
STEP_TIME_NOISE_MARGIN = 0.5
TIMED_STEPS = 3
# A quarter of the benchmark's batch and half its length: the LoRA share of a step's work does not
# depend on the number of tokens, and the check stays a few seconds long.
RATIO_BATCH, RATIO_SEQ_LEN = 4, 32


@pytest.fixture(scope="module")
def minilm_models(model_paths):
    path = encoder_path(MINILM, model_paths)
    return path, {rank: build_lora_model(path, MINILM, rank, "cpu") for rank in RANKS}


def test_trainable_parameters_are_r_times_m_plus_n_per_adapted_matrix(minilm_models):
    _, models = minilm_models
    spec = ENCODERS[MINILM.hub_id]
    for rank, model in models.items():
        counts = parameter_counts(model)
        # Two independent derivations: the frozen layers' shapes, and the encoder's table entry
        # (every layer adapts q and v, both hidden x hidden).
        assert counts["lora_params"] == expected_lora_parameters(model, MINILM, rank)
        assert counts["lora_params"] == rank * spec.adapted_matrices("all_layers") * 2 * spec.hidden
        assert counts["head_params"] == (spec.hidden + 1) * NUM_LABELS
    assert parameter_counts(models[1])["lora_params"] == 9_216  # research/data-and-models.md


def test_adapter_file_grows_with_rank_and_holds_exactly_the_trainable_parameters(minilm_models, tmp_path):
    _, models = minilm_models
    sizes = []
    for rank, model in models.items():
        model.save_pretrained(tmp_path / f"r{rank}")
        weights = tmp_path / f"r{rank}" / "adapter_model.safetensors"
        with safe_open(weights, "pt") as stored:
            tensors = [stored.get_tensor(key) for key in stored.keys()]
        counts = parameter_counts(model)
        assert sum(t.numel() for t in tensors) == counts["lora_params"] + counts["head_params"]
        payload = sum(t.numel() * t.element_size() for t in tensors)
        header = weights.stat().st_size - payload
        assert 0 < header < 16_384, f"rank {rank}: {header} bytes beyond the tensors"
        sizes.append(weights.stat().st_size)
    assert sizes == sorted(set(sizes)), f"adapter sizes for ranks {RANKS}: {sizes}"


def _train_steps(minilm_models) -> tuple[dict, dict]:
    path, models = minilm_models
    batch = fixed_batch(path, RATIO_BATCH, "cpu", seq_len=RATIO_SEQ_LEN)
    steps, optimizers = {}, {}
    for rank in (1, 16):
        steps[rank], optimizers[rank] = make_train_step(models[rank], batch)
    return steps, optimizers


@pytest.mark.timing
def test_rank_one_step_is_not_slower_than_rank_sixteen(minilm_models, benchmark):
    steps, _ = _train_steps(minilm_models)
    with one_torch_thread():
        best = benchmark.pedantic(best_seconds, args=(steps, TIMED_STEPS), rounds=1, iterations=1)
    ratio = best[1] / best[16]
    assert ratio <= 1 + STEP_TIME_NOISE_MARGIN, f"rank-1 step {best[1]:.3f}s vs rank-16 {best[16]:.3f}s"


def test_rank_one_saves_exactly_the_optimizer_state_of_its_parameters(minilm_models):
    """What rank 1 does save: AdamW's two moments per trainable parameter (plus one step counter
    per tensor), exactly."""
    _, models = minilm_models
    steps, optimizers = _train_steps(minilm_models)
    for step in steps.values():
        step()  # AdamW allocates its state on the first step
    for rank, optimizer in optimizers.items():
        trainable = [p for p in models[rank].parameters() if p.requires_grad]
        counters = sum(optimizer.state[p]["step"].numel() * optimizer.state[p]["step"].element_size()
                       for p in trainable)
        assert optimizer_state_bytes(optimizer) == 2 * 4 * sum(p.numel() for p in trainable) + counters
    assert optimizer_state_bytes(optimizers[1]) < optimizer_state_bytes(optimizers[16])


@pytest.mark.parametrize(
    ("slowdown", "within_margin"),
    [pytest.param(1.0, True, id="equal-steps-pass"), pytest.param(3.0, False, id="3x-slower-fails")],
)
@pytest.mark.timing
def test_turn_taking_timer_separates_equal_from_slower_steps(slowdown, within_margin, benchmark):
    """Controls for the ratio check above: equal steps pass it, a 3x slower step fails it."""
    base = 0.02
    steps = {"a": lambda: time.sleep(base * slowdown), "b": lambda: time.sleep(base)}
    best = benchmark.pedantic(best_seconds, args=(steps, TIMED_STEPS), rounds=1, iterations=1)
    assert (best["a"] / best["b"] <= 1 + STEP_TIME_NOISE_MARGIN) is within_margin

