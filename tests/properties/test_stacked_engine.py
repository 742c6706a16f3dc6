"""The stacked engine against its contract: each adapter of a stacked group trains exactly as it
would alone through peft (same init, data order, dropout, placement, head and optimizer).

Tiny random BERT, RoBERTa and MPNet models in float64 make "exactly" testable: per-step losses
agree to 1e-9 relative and every prediction is the same. On real MiniLM in float32 the two engines
round differently, so the test asks for the same test predictions on at least 99% of rows.
"""

from __future__ import annotations

import pytest
import torch

from lora_claims.errors import InvalidArgument
from lora_claims.methods.finetune.peft_reference import train_peft_reference
from lora_claims.methods.finetune.stacked import (
    HEADS,
    PLACEMENTS,
    PROJECTIONS,
    AdapterSpec,
    SplitTensors,
    StackedTrainer,
    TrainSettings,
    batch_schedule,
    estimate_group_bytes,
    initial_adapter_values,
    layer_forward,
    position_bias,
    train_stacked,
)
from tests.finetune_support import require_glue_data

VOCAB, CUES = 100, (10, 11)  # every other token is the label's cue
# ranks 1 and 4 share one padded group; seeds and learning rates differ per adapter
ADAPTERS = (AdapterSpec(3, 1, 5e-2), AdapterSpec(4, 4, 2e-2), AdapterSpec(5, 4, 8e-2, alpha=3.0))
# 12 training rows in batches of 5: every third step trains on a short batch of 2; passes of 2
# adapters (10 rows), so a step takes two forward/backward passes
SETTINGS = dict(steps=9, eval_every=2, batch_size=5, eval_rows=7, weight_decay=0.01,
                rows_per_pass=10)


@pytest.fixture(autouse=True)
def one_torch_thread():
    """One torch thread: on the shared 2-core machine a second thread made these tiny float64
    runs 5x slower whenever a neighbour was busy."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def tiny_model(architecture: str, seed: int = 0):
    from transformers import (
        BertConfig,
        BertForSequenceClassification,
        ElectraConfig,
        ElectraForSequenceClassification,
        MPNetConfig,
        MPNetForSequenceClassification,
        RobertaConfig,
        RobertaForSequenceClassification,
    )

    torch.manual_seed(seed)
    shape = dict(vocab_size=VOCAB, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                 intermediate_size=64, num_labels=2)
    if architecture == "bert":
        model = BertForSequenceClassification(BertConfig(max_position_embeddings=64, **shape))
    elif architecture == "electra":
        model = ElectraForSequenceClassification(
            ElectraConfig(max_position_embeddings=64, embedding_size=32, **shape))
    elif architecture == "mpnet":  # its embeddings take pad id 1, as RoBERTa's do
        model = MPNetForSequenceClassification(MPNetConfig(max_position_embeddings=64, **shape))
    else:
        model = RobertaForSequenceClassification(
            RobertaConfig(max_position_embeddings=64, pad_token_id=1, **shape))
    return model.double()


def synthetic_split(rows: int, pad_id: int, generator: torch.Generator, token_types: bool):
    """Rows of 3 to 11 tokens (never the pad id), the label's cue at even positions and random
    tokens between: both pooling kinds separate the classes within a few steps, so predictions are
    not all alike and comparing them says something."""
    lengths = torch.randint(3, 12, (rows,), generator=generator).tolist()
    labels = torch.randint(0, 2, (rows,), generator=generator).tolist()
    noise = torch.randint(12, VOCAB, (rows, 11), generator=generator).tolist()
    ids = [[CUES[label] if i % 2 == 0 else noise[row][i] for i in range(n)]
           for row, (n, label) in enumerate(zip(lengths, labels, strict=True))]
    types = [[0] * (n // 2) + [1] * (n - n // 2) for n in lengths] if token_types else None
    return SplitTensors.collate(ids, labels, pad_id, token_type_ids=types)


def tiny_task(model):
    generator = torch.Generator().manual_seed(1)
    types = model.config.model_type == "bert"
    return tuple(synthetic_split(n, model.config.pad_token_id, generator, types)
                 for n in (12, 8, 10))


def assert_same_run(stacked: dict, alone: dict, rel: float = 1e-9) -> None:
    assert stacked["engine"] == "stacked" and alone["engine"] == "peft"
    losses = torch.tensor(stacked["step_losses"], dtype=torch.float64)
    reference = torch.tensor(alone["step_losses"], dtype=torch.float64)
    torch.testing.assert_close(losses, reference, rtol=rel, atol=0)
    assert stacked["test_predictions"] == alone["test_predictions"]
    assert [row[:2] for row in stacked["dev_curve"]] == [row[:2] for row in alone["dev_curve"]]
    for key in ("best_step", "train_accuracy", "dev_accuracy", "test_accuracy", "test_labels",
                "placement", "head", "dropout", "lora_params", "head_params", "lora_scale"):
        assert stacked[key] == alone[key], key


@pytest.mark.parametrize("head", HEADS)
@pytest.mark.parametrize("placement", PLACEMENTS)
@pytest.mark.parametrize("architecture", ["bert", "roberta", "mpnet"])
def test_stacked_group_trains_each_adapter_as_peft_does_alone(architecture, placement, head):
    model = tiny_model(architecture)
    train, dev, test = tiny_task(model)
    # rsLoRA on RoBERTa only: both scalings are covered without doubling the cases
    settings = TrainSettings(placement=placement, head=head, rslora=architecture == "roberta",
                             **SETTINGS)
    stacked = train_stacked(model, ADAPTERS, settings, train, dev, test, keep_step_losses=True)
    for adapter, record in zip(ADAPTERS, stacked, strict=True):
        alone = train_peft_reference(model, adapter, settings, train, dev, test,
                                     keep_step_losses=True)
        assert_same_run(record, alone)
    # the runs must have learned something, or equal predictions would prove little
    assert any(len(set(r["test_predictions"])) > 1 for r in stacked)


@pytest.mark.parametrize("placement", PLACEMENTS)
def test_adapters_of_different_data_splits_stack_as_if_trained_apart(placement):
    """A group may mix data splits (one k-shot split per data seed): each adapter trains and is
    selected on its own split's rows exactly as in a group of its split alone."""
    model = tiny_model("bert")
    generator = torch.Generator().manual_seed(7)
    splits = [(synthetic_split(12, 0, generator, True), synthetic_split(8, 0, generator, True))
              for _ in range(2)]
    test = synthetic_split(10, 0, generator, True)
    settings = TrainSettings(placement=placement, head="linear-cls", **SETTINGS)
    mixed = [AdapterSpec(3, 1, 5e-2, split=0), AdapterSpec(4, 4, 2e-2, split=1),
             AdapterSpec(5, 4, 8e-2, split=1)]
    together = train_stacked(model, mixed, settings, [s[0] for s in splits], [s[1] for s in splits],
                             test, keep_step_losses=True)
    for adapter, record in zip(mixed, together, strict=True):
        train, dev = splits[adapter.split]
        alone = train_stacked(model, [AdapterSpec(adapter.seed, adapter.rank, adapter.learning_rate)],
                              settings, train, dev, test, keep_step_losses=True)[0]
        torch.testing.assert_close(torch.tensor(record["step_losses"]),
                                   torch.tensor(alone["step_losses"]), rtol=1e-9, atol=0)
        assert [row[:2] for row in record["dev_curve"]] == [row[:2] for row in alone["dev_curve"]]
        for key in ("test_predictions", "best_step", "train_accuracy", "dev_accuracy"):
            assert record[key] == alone[key], key
    with pytest.raises(InvalidArgument, match="equal sizes"):
        train_stacked(model, mixed, settings, [splits[0][0], test], [s[1] for s in splits], test)


@pytest.mark.parametrize("head", ["linear-cls", "linear-mean"])
def test_electra_trains_as_peft_does_alone_with_a_linear_head(head):
    """ELECTRA (the third paper encoder) shares BERT's layers; its own head (GELU between two
    linears) is refused, so it runs with a linear head."""
    model = tiny_model("electra")
    train, dev, test = tiny_task(model)
    settings = TrainSettings(placement="last-layer", head=head, **SETTINGS)
    stacked = train_stacked(model, ADAPTERS[:2], settings, train, dev, test, keep_step_losses=True)
    for adapter, record in zip(ADAPTERS[:2], stacked, strict=True):
        assert_same_run(record, train_peft_reference(model, adapter, settings, train, dev, test,
                                                     keep_step_losses=True))
    with pytest.raises(InvalidArgument, match="head 'native' on ELECTRA"):
        train_stacked(model, ADAPTERS[:1], TrainSettings(head="native", **SETTINGS), train, dev, test)


def test_the_position_bias_goes_exactly_where_the_layer_takes_one():
    """An MPNet layer run without its encoder's relative position bias, or a BERT layer given one,
    would compute something else without failing: both are refused. The bias depends only on key-
    query offsets, so a narrower width's bias is the corner of a wider one's (padding changes
    nothing)."""
    mpnet, bert = tiny_model("mpnet").mpnet, tiny_model("bert").bert
    x = torch.zeros(1, 3, 32, dtype=torch.float64)
    attend = torch.ones(1, 3, dtype=torch.bool)
    bias = position_bias(mpnet, 3)
    assert bias.shape == (4, 3, 3) and position_bias(bert, 3) is None
    assert torch.equal(bias, position_bias(mpnet, 9)[:, :3, :3])
    with pytest.raises(InvalidArgument, match="position_bias"):
        layer_forward(mpnet.encoder.layer[0], x, attend)
    with pytest.raises(InvalidArgument, match="position_bias"):
        layer_forward(bert.encoder.layer[0], x, attend, bias=bias)
    assert layer_forward(mpnet.encoder.layer[0], x, attend, bias=bias).shape == x.shape


def test_rank_padding_stays_exactly_zero():
    model = tiny_model("bert")
    train, dev, test = tiny_task(model)
    settings = TrainSettings(placement="all-layers", head="linear-cls", **SETTINGS)
    ranks = [1, 4, 2]
    trainer = StackedTrainer(model, [AdapterSpec(s, r, 5e-2) for s, r in enumerate(ranks)],
                             settings, train, dev, test)
    for step in range(1, settings.steps + 1):
        trainer.train_step(step)
    for name, tensor in trainer.bank.tensors.items():
        for slot, rank in enumerate(ranks):
            if name.startswith("lora_A"):
                used, padding = tensor[slot, :rank], tensor[slot, rank:]
            elif name.startswith("lora_B"):
                used, padding = tensor[slot, :, :rank], tensor[slot, :, rank:]
            else:
                continue
            assert torch.count_nonzero(padding) == 0, (name, slot)
            assert torch.count_nonzero(used) == used.numel(), (name, slot)  # B did train


def test_batch_schedule_replays_the_single_run_queue():
    n_rows, batch_size, steps, seed = 12, 5, 11, 7
    rows, valid = batch_schedule(n_rows, batch_size, steps, seed)
    order, queue, expected = torch.Generator().manual_seed(seed), [], []
    for _ in range(steps):  # the queue logic of lora_claims.methods.finetune.runs.train_and_evaluate
        if not queue:
            queue = torch.randperm(n_rows, generator=order).tolist()
        batch, queue = queue[:batch_size], queue[batch_size:]
        expected.append(batch)
    assert [r[v].tolist() for r, v in zip(rows, valid, strict=True)] == expected


@pytest.mark.parametrize("architecture", ["bert", "mpnet"])
def test_initial_values_are_the_single_run_loops_draws(tmp_path, architecture):
    """For the native head on all layers, ``initial_adapter_values`` draws what today's
    ``lora_claims.methods.finetune.runs.build_lora_model`` draws for the same seed (on MPNet its
    targets q and v are the values' query and value)."""
    from peft.tuners.lora import LoraLayer

    from lora_claims.methods.finetune import runs as finetune

    model = tiny_model(architecture).float()
    model.save_pretrained(tmp_path)
    loop_model, targets = finetune.build_lora_model(finetune.RunConfig(seed=7, rank=4), tmp_path, 2)
    values = initial_adapter_values(model, AdapterSpec(7, 4, 1e-3),
                                    TrainSettings(placement="all-layers", head="native"))
    head = loop_model.get_submodule("base_model.model.classifier.modules_to_save.default")
    linears = [m for m in head.modules() if isinstance(m, torch.nn.Linear)]
    assert len(linears) == (1 if architecture == "bert" else 2)
    for index, linear in enumerate(linears):
        assert torch.equal(linear.weight, values[f"head.{index}.weight"])
        assert torch.equal(linear.bias, values[f"head.{index}.bias"])
    projection_of = dict(zip(targets, PROJECTIONS, strict=True))
    layers = [(name, m) for name, m in loop_model.named_modules() if isinstance(m, LoraLayer)]
    assert len(layers) == 4
    for name, module in layers:
        key = f"{name.split('.layer.')[1].split('.')[0]}.{projection_of[name.rsplit('.', 1)[1]]}"
        assert torch.equal(module.lora_A["default"].weight, values[f"lora_A.{key}"]), key
        assert torch.equal(module.lora_B["default"].weight, values[f"lora_B.{key}"]), key


@pytest.mark.gpu
@pytest.mark.parametrize("head", HEADS)
@pytest.mark.parametrize("placement", PLACEMENTS)
@pytest.mark.parametrize("architecture", ["bert", "mpnet"])
def test_a_cuda_training_step_never_waits_for_the_device(device, architecture, placement, head):
    """No host synchronisation inside a step (CUDA's sync debug mode raises on one), and a whole
    run completes under bf16 autocast (MPNet: with its float bias mask). With --device cpu only
    the whole run is checked."""
    model = tiny_model(architecture).float().to(device)
    train, dev, test = (SplitTensors(*(None if t is None else t.to(device) for t in (
        split.input_ids, split.attention_mask, split.labels, split.token_type_ids)))
        for split in tiny_task(model))
    settings = TrainSettings(placement=placement, head=head, **SETTINGS)
    if device.startswith("cuda"):
        trainer = StackedTrainer(model, ADAPTERS, settings, train, dev, test)
        trainer.train_step(1)  # lazy CUDA initialisation may synchronise once
        torch.cuda.set_sync_debug_mode("error")
        try:
            for step in range(2, 5):
                trainer.train_step(step)
        finally:
            torch.cuda.set_sync_debug_mode("default")
    for record in train_stacked(model, ADAPTERS, settings, train, dev, test):
        assert 0 <= record["test_accuracy"] <= 1 and len(record["test_predictions"]) == len(test)


# --- real MiniLM --------------------------------------------------------------------------------


def encoder_sst2(data_dir, encoder: str, k: int = 16, seed: int = 13, test_cap: int = 200):
    """A packaged encoder (skipped with the install command when absent) and SST-2's splits."""
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from lora_claims.methods.data.kshot import load_few_shot
    from lora_claims.methods.finetune.models import MissingModel, resolve_model

    try:
        path = resolve_model(encoder).path
    except MissingModel as reason:
        pytest.skip(str(reason))
    data = load_few_shot(require_glue_data(data_dir), "SST-2", k, seed, test_cap)
    tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True)
    model = AutoModelForSequenceClassification.from_pretrained(
        path, num_labels=2, local_files_only=True, dtype=torch.float32)

    def tensors(split):
        encoded = tokenizer([e.text_a for e in split.examples], truncation=True, max_length=128)
        return SplitTensors.collate(encoded["input_ids"], split.labels, tokenizer.pad_token_id,
                                    token_type_ids=encoded.get("token_type_ids"))

    return model, tuple(tensors(s) for s in (data.train, data.dev, data.test))


@pytest.mark.slow
@pytest.mark.parametrize("encoder, placement", [("minilm", "last-layer"), ("minilm", "all-layers"),
                                                ("mpnet", "last-layer")])
def test_a_real_encoder_stacked_predicts_as_peft_alone(data_dir, encoder, placement):
    """MPNet (its position bias) runs only where its weights are installed, and on the last layer
    only: all layers of peft's single-run loop take seconds per step on a CPU."""
    model, (train, dev, test) = encoder_sst2(data_dir, encoder)
    # 20 steps keep the all-layers case under a minute on 2 shared cores
    settings = TrainSettings(placement=placement, head="native", steps=20, eval_every=10,
                             batch_size=8)
    adapters = [AdapterSpec(13, 1, 2e-3), AdapterSpec(21, 12, 1e-3)]
    stacked = train_stacked(model, adapters, settings, train, dev, test, keep_step_losses=True)
    for adapter, record in zip(adapters, stacked, strict=True):
        alone = train_peft_reference(model, adapter, settings, train, dev, test,
                                     keep_step_losses=True)
        torch.testing.assert_close(torch.tensor(record["step_losses"]),
                                   torch.tensor(alone["step_losses"]), rtol=1e-3, atol=1e-5)
        same = sum(a == b for a, b in zip(record["test_predictions"], alone["test_predictions"],
                                          strict=True))
        assert same >= 0.99 * len(test), f"{same} of {len(test)} test predictions agree"


# --- bad input ----------------------------------------------------------------------------------


@pytest.mark.parametrize("field, value", [("placement", "middle"), ("head", "pooler"),
                                          ("steps", 0), ("weight_decay", -1.0),
                                          ("rows_per_pass", 0)])
def test_bad_settings_name_the_argument(field, value):
    with pytest.raises(InvalidArgument, match=field):
        TrainSettings(**{field: value})


@pytest.mark.parametrize("field, value", [("rank", 0), ("learning_rate", 0.0), ("seed", -1),
                                          ("alpha", float("inf"))])
def test_bad_adapters_name_the_argument(field, value):
    arguments = dict(seed=0, rank=1, learning_rate=1e-3) | {field: value}
    with pytest.raises(InvalidArgument, match=field):
        AdapterSpec(**arguments)


def test_rank_beyond_the_adapted_matrix_is_refused():
    model = tiny_model("bert")
    with pytest.raises(InvalidArgument, match=r"rank 33 exceeds min\(in, out\) = 32"):
        train_stacked(model, [AdapterSpec(0, 33, 1e-3)], TrainSettings(), *tiny_task(model))


def test_native_head_needs_a_classification_model():
    model = tiny_model("bert")
    task = tiny_task(model)
    with pytest.raises(InvalidArgument, match="head 'native'"):
        train_stacked(model.bert, [AdapterSpec(0, 1, 1e-3)], TrainSettings(head="native"), *task)


def test_a_group_too_large_for_memory_is_refused_with_the_numbers():
    model = tiny_model("bert")
    with pytest.raises(InvalidArgument, match=r"adapters: even one adapter needs about .* GiB"):
        train_stacked(model, [AdapterSpec(0, 1, 1e-3)], TrainSettings(), *tiny_task(model),
                      memory_budget_bytes=1000)


def test_a_group_larger_than_the_budget_is_split_into_groups_that_fit():
    model = tiny_model("bert")
    task = tiny_task(model)
    settings = TrainSettings(head="linear-cls", **SETTINGS)
    two = sum(estimate_group_bytes(model, settings, 2, 4, task).values())
    split = train_stacked(model, ADAPTERS, settings, *task, memory_budget_bytes=two,
                          keep_step_losses=True)
    whole = train_stacked(model, ADAPTERS, settings, *task, keep_step_losses=True)
    for part, together in zip(split, whole, strict=True):
        torch.testing.assert_close(torch.tensor(part["step_losses"], dtype=torch.float64),
                                   torch.tensor(together["step_losses"], dtype=torch.float64),
                                   rtol=1e-9, atol=0)
        assert part["test_predictions"] == together["test_predictions"]


def test_unsupported_architecture_is_refused():
    from transformers import DistilBertConfig, DistilBertForSequenceClassification

    model = DistilBertForSequenceClassification(DistilBertConfig(
        vocab_size=VOCAB, dim=32, n_layers=1, n_heads=4, hidden_dim=64))
    with pytest.raises(InvalidArgument, match="model must be a BERT- or RoBERTa-family"):
        train_stacked(model, [AdapterSpec(0, 1, 1e-3)], TrainSettings(),
                      *tiny_task(tiny_model("bert")))


def test_labels_outside_the_model_are_refused():
    model = tiny_model("bert")
    train, dev, test = tiny_task(model)
    bad = SplitTensors(train.input_ids, train.attention_mask, train.labels + 2,
                       train.token_type_ids)
    with pytest.raises(InvalidArgument, match="train labels must lie in 0..1"):
        train_stacked(model, [AdapterSpec(0, 1, 1e-3)], TrainSettings(), bad, dev, test)


def test_progress_hears_every_adapter_step_once_at_each_evaluation_point():
    model = tiny_model("bert")
    settings = TrainSettings(head="linear-cls", **SETTINGS)
    two = sum(estimate_group_bytes(model, settings, 2, 4, tiny_task(model)).values())
    heard: list[int] = []
    train_stacked(model, ADAPTERS, settings, *tiny_task(model), memory_budget_bytes=two,
                  on_steps=heard.append)
    evaluations = -(-settings.steps // settings.eval_every)
    assert sum(heard) == settings.steps * len(ADAPTERS)
    assert len(heard) == evaluations * -(-len(ADAPTERS) // 2)  # one report per evaluation per group


def test_each_pass_runs_at_the_width_of_its_longest_row():
    """Padding beyond a pass's longest row is cut before the step (the peft equivalence above
    shows it changes nothing); the widths are those rows' lengths, computed before training."""
    model = tiny_model("bert")
    train, dev, test = tiny_task(model)
    trainer = StackedTrainer(model, ADAPTERS, TrainSettings(head="linear-cls", **SETTINGS), train, dev, test)
    lengths = train.attention_mask.sum(1)
    for step, widths in enumerate(trainer.step_widths):
        for part, width in zip(trainer.passes, widths, strict=True):
            assert width == int(lengths[trainer.rows[step, part]].max())
    assert min(min(widths) for widths in trainer.step_widths) < train.input_ids.shape[1]
