"""The C8 CPU workload through our engine against the Hugging Face Trainer + peft, end to end.

The same runs (MiniLM, SST-2, LM-BFF's five seeds, ranks 1 and 12: ten runs) are trained once by
``run_sweep`` (the stacked engine: the ten adapters in one pass over one frozen base, prefix and
tokenization done once) and once by the Trainer, one run at a time, with the same LoRA, head,
steps, batch size, learning rate and linear schedule, dev-based selection and final evaluation.
Both placements: LoRA on every layer's query/value, and on the last layer's only (the Trainer
gets peft's ``layers_to_transform``; it has no frozen prefix to reuse). Model loading and
tokenization are timed on both sides. Slow, and the ratio checks are ``timing`` tests that run
only with ``--benchmark-only`` (tox -e bench).
"""

from __future__ import annotations

import time

import numpy as np
import pytest

from lora_claims.harness.cache import ResultCache
from lora_claims.methods.data.kshot import load_seed
from lora_claims.methods.finetune import runs as finetune
from lora_claims.methods.finetune.models import MissingModel, resolve_model
from lora_claims.methods.finetune.runs import RunConfig, RunInputs, build_lora_model, run_sweep
from tests.finetune_support import require_glue_data

TARGET = {"last-layer": 10.0, "all-layers": 2.0}  # the engine's speed targets per placement
# A target the engine does not reach, with why and the figures last measured (strict: a run that
# reaches it fails, so that this entry is removed).
SHORT_OF_TARGET = {
    "all-layers": "all-layers LoRA on a CPU is bound by arithmetic: every adapter runs the whole "
                  "encoder forward and backward, as each Trainer run does, so stacking saves only "
                  "setup, padding and evaluation (measured 1.7x: 43.0 s against 74.5 s on 2 cores)",
}
SEEDS, RANKS = (13, 21, 42, 87, 100), (1, 12)
BASE = dict(model="minilm", task="SST-2", steps=30, eval_every=10, batch_size=8,
            learning_rate=3e-3, max_length=64, test_cap=400)


def _clear_caches():
    for cached in (finetune.load_tokenizer, finetune._encode_cached, finetune.load_base_model):
        cached.cache_clear()


def trainer_run(config: RunConfig, model_path, data, out_dir) -> dict:
    """One run through transformers.Trainer (dev-based selection via its checkpoints)."""
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


@pytest.fixture(scope="module", params=["last-layer", "all-layers"])
def timings(request, pytestconfig, tmp_path_factory):
    """Both sides once each, after a warm-up of each (lazy imports, first-call kernels)."""
    placement = request.param
    glue = require_glue_data(pytestconfig.getoption("--data-dir"))
    try:
        model = resolve_model("minilm")
    except MissingModel as reason:
        pytest.skip(str(reason))
    configs = [RunConfig(**BASE, seed=seed, rank=rank, placement=placement)
               for seed in SEEDS for rank in RANKS]
    warm = RunConfig(**{**BASE, "steps": 1, "eval_every": 1, "test_cap": 8}, placement=placement)
    run_sweep([warm], RunInputs(glue, {}, ResultCache(tmp_path_factory.mktemp("warm"))), False)
    trainer_run(warm, model.path, load_seed(glue, "SST-2", 16, 13, 8), tmp_path_factory.mktemp("w"))
    _clear_caches()
    start = time.perf_counter()
    ours = run_sweep(configs, RunInputs(glue, {}, ResultCache(tmp_path_factory.mktemp("c"))), False)
    ours_s = time.perf_counter() - start
    _clear_caches()
    start = time.perf_counter()
    theirs = [trainer_run(c, model.path, load_seed(glue, c.task, c.k, c.seed, c.test_cap),
                          tmp_path_factory.mktemp("trainer")) for c in configs]
    trainer_s = time.perf_counter() - start
    print(f"\n{placement}: ours {ours_s:.1f} s, Trainer {trainer_s:.1f} s for {len(configs)} runs: "
          f"{trainer_s / ours_s:.1f}x")
    return {"placement": placement, "ours": ours, "theirs": theirs, "ours_s": ours_s,
            "trainer_s": trainer_s, "ratio": trainer_s / ours_s}


@pytest.mark.slow
@pytest.mark.timing  # its fixture trains 20 runs: only worth it where the ratio is measured
def test_both_sides_complete_the_protocol(timings):
    for record in timings["ours"]:
        assert record["best_step"] in range(10, 31, 10) and record["engine"] == "stacked"
    assert all(0.0 <= run[name] <= 1.0 for run in timings["theirs"] for name in ("train", "test"))


@pytest.mark.slow
@pytest.mark.timing
def test_the_engine_reaches_its_speed_target_against_the_trainer(benchmark, timings, request):
    """The whole workload's wall time, ours against the Trainer's; the timing was done by the
    fixture, so the benchmark entry only records the figures."""
    if timings["placement"] in SHORT_OF_TARGET:
        request.applymarker(pytest.mark.xfail(strict=True, reason=SHORT_OF_TARGET[timings["placement"]]))
    benchmark.extra_info.update(placement=timings["placement"], ours_s=timings["ours_s"],
                                trainer_s=timings["trainer_s"], ratio=timings["ratio"])
    ratio = benchmark.pedantic(lambda: timings["ratio"], rounds=1, iterations=1)
    assert ratio >= TARGET[timings["placement"]], f"{ratio:.1f}x"
