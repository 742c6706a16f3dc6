"""Our fine-tuning run against the Hugging Face Trainer, end to end, on the same config on CPU.

Both runs load the same packaged encoder, build the same peft model (same seed, same LoRA and
head), train the same steps with the same batch size, learning rate and linear schedule, evaluate
the k-shot dev split every ``eval_every`` steps, restore the best checkpoint, and evaluate train,
dev and test at the end. Model loading and tokenization are timed on both sides (caches cleared).
The Trainer keeps its checkpoints on disk (that is how it restores the best one); ours keeps them
in memory, batches evaluation by length and tokenizes once. Slow: marked ``slow``; the speed-up
checks are marked ``timing`` and run only with ``--benchmark-only`` (tox -e bench).

Measured: 1.2-1.4x, short of the 2x the issue asks for (recorded as a strict xfail).
"""

from __future__ import annotations

import time

import numpy as np
import pytest

from lora_claims.methods.finetune import runs as finetune
from lora_claims.methods.finetune.runs import RunConfig, build_lora_model, train_and_evaluate
from lora_claims.methods.data.kshot import load_few_shot
from lora_claims.methods.finetune.models import MissingModel, resolve_model
from tests.finetune_support import require_glue_data

REQUIRED_SPEEDUP = 2.0  # the target
MEASURED_FLOOR = 1.05  # measured 1.2-1.4x; the floor leaves room for timing noise
CONFIG = RunConfig(model="minilm", task="SST-2", seed=13, rank=8, steps=20, eval_every=5,
                   batch_size=8, eval_batch_size=128, learning_rate=5e-3, max_length=64,
                   test_cap=400)


def _clear_caches():
    for cached in (finetune.load_tokenizer, finetune._encode_cached, finetune.load_base_model):
        cached.cache_clear()


def trainer_run(config: RunConfig, model_path, data, out_dir) -> dict:
    """The same run through transformers.Trainer (dev-based selection via its checkpoints)."""
    from transformers import (
        AutoTokenizer,
        DataCollatorWithPadding,
        Trainer,
        TrainingArguments,
    )

    tokenizer = AutoTokenizer.from_pretrained(model_path, local_files_only=True)

    def dataset(split):
        texts_b = [e.text_b for e in split.examples]
        encoded = tokenizer([e.text_a for e in split.examples],
                            texts_b if texts_b[0] is not None else None,
                            truncation=True, max_length=config.max_length)
        return [{**{k: v[i] for k, v in encoded.items()}, "labels": e.label}
                for i, e in enumerate(split.examples)]

    model, _ = build_lora_model(config, model_path, 2)
    args = TrainingArguments(
        output_dir=str(out_dir), max_steps=config.steps, learning_rate=config.learning_rate,
        per_device_train_batch_size=config.batch_size,
        per_device_eval_batch_size=config.eval_batch_size, weight_decay=config.weight_decay,
        lr_scheduler_type="linear", warmup_steps=0, eval_strategy="steps",
        eval_steps=config.eval_every, save_strategy="steps", save_steps=config.eval_every,
        load_best_model_at_end=True, metric_for_best_model="accuracy", save_total_limit=1,
        logging_strategy="no", report_to=[], use_cpu=True, seed=config.seed,
        dataloader_num_workers=0, disable_tqdm=True,
    )
    splits = {name: dataset(split) for name, split in
              (("train", data.train), ("dev", data.dev), ("test", data.test))}
    trainer = Trainer(
        model=model, args=args, train_dataset=splits["train"], eval_dataset=splits["dev"],
        data_collator=DataCollatorWithPadding(tokenizer),
        compute_metrics=lambda p: {"accuracy": float(np.mean(p.predictions.argmax(-1)
                                                             == p.label_ids))},
    )
    trainer.train()
    return {name: trainer.evaluate(split)["eval_accuracy"] for name, split in splits.items()}


@pytest.fixture(scope="module")
def timings(pytestconfig, tmp_path_factory):
    """Both runs once each, after one warm-up of each (lazy imports, first-call kernels), timed
    with wall clock and process CPU time."""
    glue = require_glue_data(pytestconfig.getoption("--data-dir"))
    try:
        model = resolve_model(CONFIG.model)
    except MissingModel as reason:
        pytest.skip(str(reason))
    data = load_few_shot(glue, CONFIG.task, CONFIG.k, CONFIG.seed, CONFIG.test_cap)
    warm = RunConfig(**{**CONFIG.to_json(), "steps": 1, "eval_every": 1, "test_cap": 8,
                        "target_modules": None})
    small = load_few_shot(glue, CONFIG.task, CONFIG.k, CONFIG.seed, 8)
    train_and_evaluate(warm, model, small)
    trainer_run(warm, model.path, small, tmp_path_factory.mktemp("warm"))
    measured = {}
    for name, run in (("ours", lambda: train_and_evaluate(CONFIG, model, data)),
                      ("trainer", lambda: trainer_run(CONFIG, model.path, data,
                                                      tmp_path_factory.mktemp("trainer")))):
        _clear_caches()
        wall, cpu = time.perf_counter(), time.process_time()
        result = run()
        measured[name] = {"wall": time.perf_counter() - wall, "cpu": time.process_time() - cpu,
                          "result": result}
    ratio = measured["trainer"]["wall"] / measured["ours"]["wall"]
    cpu_ratio = measured["trainer"]["cpu"] / measured["ours"]["cpu"]
    print(f"\nours {measured['ours']['wall']:.1f} s ({measured['ours']['cpu']:.1f} s CPU), "
          f"Trainer {measured['trainer']['wall']:.1f} s ({measured['trainer']['cpu']:.1f} s CPU): "
          f"speed-up {ratio:.2f}x wall, {cpu_ratio:.2f}x CPU")
    return {**measured, "ratio": ratio}


@pytest.mark.slow
def test_both_runs_complete_the_protocol(timings):
    ours, theirs = timings["ours"]["result"], timings["trainer"]["result"]
    assert ours["best_step"] in range(CONFIG.eval_every, CONFIG.steps + 1, CONFIG.eval_every)
    assert all(0.0 <= theirs[name] <= 1.0 for name in ("train", "dev", "test"))


def _record_speedup(benchmark, timings) -> float:
    """Put both wall times and their ratio into the benchmark JSON; the timing itself was done by
    the ``timings`` fixture, so the benchmark entry times only this bookkeeping."""
    benchmark.extra_info.update(ours_s=timings["ours"]["wall"], trainer_s=timings["trainer"]["wall"],
                                ratio=timings["ratio"])
    return benchmark.pedantic(lambda: timings["ratio"], rounds=1, iterations=1)


@pytest.mark.slow
@pytest.mark.timing
def test_our_loop_is_faster_than_the_trainer(benchmark, timings):
    ratio = _record_speedup(benchmark, timings)
    assert ratio >= MEASURED_FLOOR, f"speed-up {ratio:.2f}x"


@pytest.mark.slow
@pytest.mark.timing
@pytest.mark.xfail(strict=True, reason=(
    "issue 5 asks for >= 2x; measured 1.2-1.4x (README): model compute dominates both loops on "
    "CPU, and the Trainer with the same eval batch size loses only its checkpoint writes, "
    "unsorted eval batches and per-step overhead"))
def test_our_loop_is_at_least_twice_as_fast_as_the_trainer(benchmark, timings):
    ratio = _record_speedup(benchmark, timings)
    assert ratio >= REQUIRED_SPEEDUP, f"speed-up {ratio:.2f}x"
