"""Per-adapter training-step time: the stacked engine with 1, 10 and 50 adapters against one peft
adapter trained alone, for both placements, on MiniLM at batch 8 and length 128 (float32, CPU).

One step is forward, backward and optimizer update; evaluation, setup and (for ``last-layer``)
the one-time frozen prefix pass over the training rows are outside the timing. The peft step is
the single-run loop's body on a ready batch (its per-step collation is left out, which favours
peft). Each benchmark's ``extra_info`` holds ``per_adapter_step_s`` (the fastest round divided by
the number of adapters); a group's ratios are peft's figure over the stacked ones. It also holds
the peak memory per adapter: the resident set's rise over setup and the first step (parameters,
optimizer state, cached inputs, activations) divided by the number of adapters, measured in a
fresh process (this module run as a script; with ``--benchmark-only``), since in the test process
memory freed by earlier cases is reused and hides the rise; beside it the engine's own upper estimate
(``estimate_group_bytes``, which sizes groups). Runs with ``--benchmark-only``; marked ``slow``
(the 50-adapter all-layers step alone takes tens of seconds).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import torch
from bench_timing import one_torch_thread
from lora_rank_setup import peak_memory_bytes

from lora_claims.methods.finetune.peft_reference import build_peft_model
from lora_claims.methods.finetune.stacked import (
    AdapterSpec,
    SplitTensors,
    StackedTrainer,
    TrainSettings,
    estimate_group_bytes,
)

pytestmark = pytest.mark.slow

BATCH, LENGTH, TRAIN_ROWS = 8, 128, 32
ROUNDS = 3  # timed rounds after one warm-up round


@pytest.fixture(scope="module")
def minilm():
    from lora_claims.methods.finetune.models import MissingModel

    try:
        return load_minilm()
    except MissingModel as reason:
        pytest.skip(str(reason))


def load_minilm():
    """MiniLM with a two-way head, and 32 random rows of full length."""
    from transformers import AutoModelForSequenceClassification

    from lora_claims.methods.finetune.models import minilm_path

    path = minilm_path()
    model = AutoModelForSequenceClassification.from_pretrained(
        path, num_labels=2, local_files_only=True, dtype=torch.float32)
    generator = torch.Generator().manual_seed(0)
    rows = [[101] + torch.randint(1000, model.config.vocab_size, (LENGTH - 2,),
                                  generator=generator).tolist() + [102]
            for _ in range(TRAIN_ROWS)]
    split = SplitTensors.collate(rows, [i % 2 for i in range(TRAIN_ROWS)], 0)
    return model, split


def adapters(count: int) -> list[AdapterSpec]:
    return [AdapterSpec(seed, 1 if seed % 2 else 12, 1e-3) for seed in range(count)]


def training_step(model, split, placement: str, engine: str, count: int):
    """A step of ``count`` adapters (``engine`` "stacked") or of one peft adapter, and a tensor it
    trains."""
    settings = TrainSettings(placement=placement, head="native", steps=10_000, batch_size=BATCH)
    if engine == "peft":
        return peft_step(model, adapters(1)[0], settings, split)
    trainer = StackedTrainer(model, adapters(count), settings, split, split, split)
    counter = iter(range(1, settings.steps + 1))
    return (lambda: trainer.train_step(next(counter))), trainer.bank.values


@pytest.mark.parametrize("placement", ["last-layer", "all-layers"])
@pytest.mark.parametrize("engine, count", [("peft", 1), ("stacked", 1), ("stacked", 10),
                                           ("stacked", 50)])
def test_per_adapter_step(benchmark, minilm, placement, engine, count, pytestconfig):
    model, split = minilm
    with one_torch_thread():
        step, trained = training_step(model, split, placement, engine, count)
        before = trained.detach().clone()
        benchmark.group = f"stacked-vs-peft {placement} MiniLM b{BATCH} L{LENGTH}"
        benchmark.pedantic(step, rounds=ROUNDS, iterations=1, warmup_rounds=1)
    assert not torch.equal(trained, before), "the timed step must train the adapters"
    benchmark.extra_info.update(engine=engine, adapters=count, placement=placement,
                                per_adapter_step_s=benchmark.stats.stats.min / count)
    if pytestconfig.getoption("benchmark_only"):  # a measurement, worth a process only there
        memory = peak_rise_in_a_fresh_process(placement, engine, count)
        benchmark.extra_info.update(
            peak_memory_per_adapter_bytes=memory["peak_memory_above_start_bytes"] / count,
            peak_memory_kind=memory["peak_memory_kind"])
    if engine == "stacked":
        settings = TrainSettings(placement=placement, head="native", batch_size=BATCH)
        estimate = estimate_group_bytes(model, settings, count, 12, [split, split, split])
        benchmark.extra_info["estimated_bytes_per_adapter"] = sum(estimate.values()) / count


def peak_rise_in_a_fresh_process(placement: str, engine: str, count: int) -> dict:
    """``peak_memory_bytes`` of setting up and taking one step, in a new Python process."""
    done = subprocess.run([sys.executable, __file__, placement, engine, str(count)], check=True,
                          capture_output=True, text=True, env={**os.environ, "OMP_NUM_THREADS": "1"})
    return json.loads(done.stdout.strip().splitlines()[-1])


def peft_step(model, adapter: AdapterSpec, settings: TrainSettings, split: SplitTensors):
    """One step of the single-run loop (as in ``train_peft_reference``) on a fixed batch, and a
    LoRA factor that the step trains."""
    peft_model, forward = build_peft_model(model, adapter, settings)
    trainable = [p for p in peft_model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(trainable, lr=adapter.learning_rate)
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: 1.0 - s / settings.steps)
    rows = torch.arange(BATCH)
    inputs, labels = split.model_inputs(rows), split.labels[rows]

    def step():
        torch.nn.functional.cross_entropy(forward(inputs), labels).backward()
        optimizer.step()
        schedule.step()
        optimizer.zero_grad(set_to_none=True)

    lora_b = next(p for name, p in peft_model.named_parameters() if "lora_B" in name)
    return step, lora_b


if __name__ == "__main__":  # peak_rise_in_a_fresh_process's child: prints one JSON line
    placement_arg, engine_arg, count_arg = sys.argv[1:4]
    model_, split_ = load_minilm()

    def set_up_and_step():
        made_step, _ = training_step(model_, split_, placement_arg, engine_arg, int(count_arg))
        made_step()

    print(json.dumps(peak_memory_bytes(set_up_and_step, "cpu")))
