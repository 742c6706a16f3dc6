"""GLUE readers, the LM-BFF k-shot layout and sampler, the test cap and the `datasets` fallback."""

from __future__ import annotations

import re
import sys
import types
from collections import Counter

import pytest

from lora_claims.errors import InvalidArgument, NotEvaluable
from lora_claims.methods.data.glue import TASKS, DataFormatError, get_task, read_split
from lora_claims.methods.data.kshot import (
    LM_BFF_SEEDS,
    cap_split,
    load_few_shot,
    resolve_data_dir,
    sample_from_pool,
    sample_k_shot,
)
from tests.finetune_support import require_glue_data, write_toy_glue

# Row counts of the staged evaluation files (SOURCES.md).
STAGED_TEST_SIZES = {"SST-2": 872, "QNLI": 5463, "RTE": 277, "MRPC": 408, "CoLA": 1043,
                     "sst-5": 2210, "mr": 2000, "cr": 2000}


@pytest.fixture(scope="module")
def glue(pytestconfig):
    return require_glue_data(pytestconfig.getoption("--data-dir"))


@pytest.mark.parametrize("task", list(TASKS))
def test_every_staged_split_parses_with_k_per_class(glue, task):
    spec = get_task(task)
    for seed in LM_BFF_SEEDS:
        data = load_few_shot(glue, task, 16, seed)
        for split in (data.train, data.dev):
            assert Counter(split.labels) == {c: 16 for c in range(spec.num_classes)}
        assert not set(data.train.examples) & set(data.dev.examples)
    if task in STAGED_TEST_SIZES:
        assert len(data.test) == STAGED_TEST_SIZES[task]  # found under 16-42 for every seed


def test_file_quirks(glue):
    mrpc = read_split(get_task("MRPC"), glue / "MRPC" / "dev.tsv")  # starts with a BOM
    assert len(mrpc) == 408 and Counter(mrpc.labels) == {1: 279, 0: 129}
    cola = load_few_shot(glue, "CoLA", 16, 42).test  # header-less
    assert Counter(cola.labels) == {1: 721, 0: 322}
    assert cola.examples[0].text_b is None and " " in cola.examples[0].text_a
    rte = read_split(get_task("RTE"), glue / "RTE" / "val.jsonl")
    assert Counter(rte.labels) == {0: 146, 1: 131}  # entailment / not_entailment
    mnli = load_few_shot(glue, "MNLI", 16, 13).train  # gold_label is the last column
    assert {e.text_b is not None for e in mnli.examples} == {True}
    sst5 = load_few_shot(glue, "sst-5", 16, 42).test  # quoted csv
    assert len(sst5) == 2210 and max(sst5.labels) == 4


def test_mnli_test_set_is_the_other_seeds_rows(glue):
    data = load_few_shot(glue, "MNLI", 16, 42)
    assert len(data.test) == 4 * 96 and "seeds 100, 13, 21, 87" in data.test_note
    assert Counter(data.test.labels) == {0: 128, 1: 128, 2: 128}
    assert not set(data.test.examples) & (set(data.train.examples) | set(data.dev.examples))


def test_sampler_reproduces_lm_bff_splits(glue):
    """Calibration: from the same train pools, our sampler gives LM-BFF's published splits (text
    compared after dropping punctuation: the k-shot copies are tokenized differently)."""

    def norm(e):
        return re.sub(r"[^a-z0-9]", "", (e.text_a + (e.text_b or "")).lower()), e.label

    for task in ("RTE", "MRPC"):
        for seed in LM_BFF_SEEDS:
            ours = sample_from_pool(glue, task, 16, seed)
            staged = load_few_shot(glue, task, 16, seed)
            for split in ("train", "dev"):
                ours_rows = [norm(e) for e in getattr(ours, split).examples]
                assert ours_rows == [norm(e) for e in getattr(staged, split).examples]


def test_sampler_properties(tmp_path):
    root = write_toy_glue(tmp_path, k=40)
    pool = read_split(get_task("SST-2"), root / "SST-2" / "k-shot" / "40-13" / "train.tsv")
    train, dev = sample_k_shot(pool, 8, seed=7, num_classes=2)
    assert Counter(train.labels) == {0: 8, 1: 8} and Counter(dev.labels) == {0: 8, 1: 8}
    indices = lambda split: {id(e) for e in split.examples}  # noqa: E731
    assert not indices(train) & indices(dev)
    assert sample_k_shot(pool, 8, 7, 2)[0].examples == train.examples  # seeded
    assert sample_k_shot(pool, 8, 8, 2)[0].examples != train.examples
    with pytest.raises(InvalidArgument, match="needs 82 examples"):
        sample_k_shot(pool, 41, 7, 2)


def test_test_cap_is_seeded_and_shared(tmp_path):
    root = write_toy_glue(tmp_path, test_rows=40)
    full = load_few_shot(root, "SST-2", 16, 42).test
    capped = load_few_shot(root, "SST-2", 16, 13, test_cap=10)
    assert len(capped.test) == 10 and "capped at 10 of 40" in capped.test_note
    assert capped.test == load_few_shot(root, "SST-2", 16, 42, test_cap=10).test  # same rows
    assert set(capped.test.examples) <= set(full.examples)
    assert cap_split(full, None)[0] is full


def test_malformed_rows_name_file_and_line(tmp_path):
    spec = get_task("SST-2")
    bad = tmp_path / "bad.tsv"
    bad.write_text("sentence\tlabel\ngood movie\t1\nno label here\n")
    with pytest.raises(DataFormatError, match=r"bad\.tsv:3: expected 2 fields, got 1"):
        read_split(spec, bad)
    bad.write_text("sentence\tlabel\ngood movie\tpositive\n")
    with pytest.raises(DataFormatError, match=r"bad\.tsv:2: label 'positive' is not one of 0, 1"):
        read_split(spec, bad)
    bad.write_text("text\tlabel\ngood\t1\n")
    with pytest.raises(DataFormatError, match=r"bad\.tsv:1: header lacks column"):
        read_split(spec, bad)
    jsonl = tmp_path / "bad.jsonl"
    jsonl.write_text('{"premise": "a", "hypothesis": "b", "label": "entailment"}\n{"premise": 1}\n')
    with pytest.raises(DataFormatError, match=r"bad\.jsonl:2"):
        read_split(get_task("RTE"), jsonl)


def test_undecodable_and_oversized_rows_name_file_and_line(tmp_path):
    spec = get_task("SST-2")
    bad = tmp_path / "bad.tsv"
    bad.write_bytes(b"sentence\tlabel\ngood\t1\ncaf\xe9\t0\n")  # a Latin-1 byte
    with pytest.raises(DataFormatError, match=r"bad\.tsv:3: not UTF-8 text \(byte 0xe9"):
        read_split(spec, bad)
    bad.write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00")  # a binary blob
    with pytest.raises(DataFormatError, match=r"bad\.tsv:1: not UTF-8 text"):
        read_split(spec, bad)
    bad.write_text("sentence\tlabel\ngood\t1\n" + "a" * 140_000 + "\t0\n")
    with pytest.raises(DataFormatError, match=r"bad\.tsv:3: unreadable row \(field larger"):
        read_split(spec, bad)


@pytest.mark.parametrize("task", ["SST-2", "cr"])
def test_a_byte_order_mark_is_accepted_in_every_file(tmp_path, task):
    spec = get_task(task)
    path = tmp_path / f"train.{spec.extension}"
    body = "sentence\tlabel\ngood\t1\n" if spec.extension == "tsv" else "1,good\n"
    path.write_bytes(b"\xef\xbb\xbf" + body.encode())
    assert read_split(spec, path).examples[0].text_a == "good"


def test_k_shot_files_must_hold_k_examples_of_every_class(tmp_path):
    root = write_toy_glue(tmp_path / "glue", seeds=(13,))
    train = root / "SST-2" / "k-shot" / "16-13" / "train.tsv"
    rows = train.read_text().splitlines()
    train.write_text("\n".join(row for row in rows if not row.endswith("\t0")) + "\n")  # one class
    with pytest.raises(DataFormatError, match=r"train\.tsv: a 16-shot train split needs 16 "
                                              r"examples of each SST-2 class; found 0: 0, 1: 16"):
        load_few_shot(root, "SST-2", 16, 13)
    train.write_text("\n".join(rows) + "\n")
    (root / "SST-2" / "k-shot" / "16-13").rename(root / "SST-2" / "k-shot" / "64-13")
    with pytest.raises(DataFormatError, match="a 64-shot train split needs 64 .* 0: 16, 1: 16"):
        load_few_shot(root, "SST-2", 64, 13)


def test_missing_inputs_are_clear(tmp_path):
    with pytest.raises(InvalidArgument, match="unknown task 'SST-3'"):
        get_task("SST-3")
    assert get_task("sst-2").name == "SST-2"
    with pytest.raises(NotEvaluable, match="no GLUE data"):
        resolve_data_dir(None)
    with pytest.raises(NotEvaluable, match="does not exist"):
        resolve_data_dir(tmp_path / "nowhere")
    root = write_toy_glue(tmp_path)
    with pytest.raises(NotEvaluable, match="no 16-shot split for seed 21"):
        load_few_shot(root, "SST-2", 16, 21)
    (root / "SST-2" / "k-shot" / "16-13" / "dev.tsv").unlink()
    with pytest.raises(NotEvaluable, match=r"missing data file .*16-13/dev\.tsv"):
        load_few_shot(root, "SST-2", 16, 13)
    with pytest.raises(InvalidArgument, match="does not exist"):
        read_split(get_task("SST-2"), tmp_path / "absent.tsv")


class _FakeLabel:
    names = ["entailment", "neutral", "contradiction"]  # HF order differs from the GLUE files


class _FakeSplit(list):
    features = {"label": _FakeLabel()}


def test_hugging_face_fallback_maps_labels_by_name(monkeypatch):
    """The `datasets` fallback, with a stand-in module (no network here)."""
    rows = [{"premise": f"p{i}", "hypothesis": f"h{i}", "label": i % 3} for i in range(120)]
    fake = types.ModuleType("datasets")
    fake.load_dataset = lambda path, config: {"train": _FakeSplit(rows),
                                              "validation_matched": _FakeSplit(rows[:30])}
    monkeypatch.setitem(sys.modules, "datasets", fake)
    data = load_few_shot("hf", "MNLI", 16, 13)
    spec = get_task("MNLI")
    assert Counter(data.train.labels) == {0: 16, 1: 16, 2: 16}
    first = data.test.examples[0]  # label 0 = entailment in HF, index 1 in our label list
    assert first.text_a == "p0" and spec.labels[first.label] == "entailment"
    assert "Hugging Face" in data.test_note


def test_hugging_face_fallback_real_package():
    pytest.importorskip("datasets", reason="`datasets` not installed (optional)")
    try:
        data = load_few_shot("hf", "SST-2", 16, 13, test_cap=100)
    except (ConnectionError, OSError) as error:  # installed, but no network here
        pytest.skip(f"Hugging Face hub not reachable: {error}")
    assert Counter(data.train.labels) == {0: 16, 1: 16} and len(data.test) == 100


def test_hugging_face_fallback_without_package(monkeypatch):
    monkeypatch.setitem(sys.modules, "datasets", None)
    with pytest.raises(NotEvaluable, match="needs the `datasets` package"):
        load_few_shot("hf", "SST-2", 16, 13)


def test_extra_seeds_share_one_test_set_and_draw_disjoint_rows(data_dir):
    from lora_claims.methods.data.kshot import LM_BFF_SEEDS, load_seed, seed_list

    root = require_glue_data(data_dir)
    seeds = seed_list("SST-2", 8)
    assert seeds[:5] == LM_BFF_SEEDS and len(set(seeds)) == 8
    splits = [load_seed(root, "SST-2", 16, seed) for seed in (13, seeds[5], seeds[6])]
    assert len({s.test.fingerprint() for s in splits}) == 1  # every seed scores the same rows
    test_texts = {e.text_a for e in splits[0].test.examples}
    for split in splits[1:]:  # drawn from GLUE train: no test row leaks into training
        assert len(split.train) == 32 and not {e.text_a for e in split.train.examples} & test_texts
    assert splits[1].train.fingerprint() != splits[2].train.fingerprint()
    with pytest.raises(InvalidArgument, match="only the 5 published"):
        seed_list("QNLI", 6)
