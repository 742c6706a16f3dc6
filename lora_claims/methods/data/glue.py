"""GLUE-style task files: which tasks exist, how each file is laid out, and strict readers.

The staged files (``$LORA_CLAIMS_DATA``, see its SOURCES.md) keep their upstream quirks: GLUE
``.tsv`` files hold bare ``"`` characters (so no CSV quoting), MRPC starts with a byte-order mark
(every file is read as UTF-8 with an optional one),
CoLA has no header, LM-BFF's SST-5/MR/CR are header-less ``label,sentence`` CSV files, MNLI keeps
GLUE's twelve columns, and RTE's full train pool is SuperGLUE JSON lines. Every reader checks each
row and names the file and line of the first one it cannot use.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
from dataclasses import dataclass
from pathlib import Path

from lora_claims.errors import InvalidArgument


class DataFormatError(InvalidArgument):
    """A data file has a row the reader cannot use; the message names the file and line."""


@dataclass(frozen=True)
class Example:
    text_a: str
    text_b: str | None
    label: int


@dataclass(frozen=True)
class Split:
    """Examples of one split and a description of where they came from."""

    name: str
    examples: tuple[Example, ...]
    source: str

    def __len__(self) -> int:
        return len(self.examples)

    @property
    def labels(self) -> list[int]:
        return [example.label for example in self.examples]

    def fingerprint(self) -> str:
        """A hash of the content, so cached runs notice when a data file changes."""
        digest = hashlib.sha256()
        for example in self.examples:
            digest.update(f"{example.text_a}\x1f{example.text_b}\x1f{example.label}\x1e".encode())
        return digest.hexdigest()[:16]


@dataclass(frozen=True)
class TaskSpec:
    """Layout of one task's files.

    ``fields`` names the text columns and the label column: header names for files with a header,
    0-based column positions for header-less files. ``jsonl_fields`` does the same for JSON lines.
    """

    name: str
    labels: tuple[str, ...]
    fields: tuple[tuple[str | int, ...], str | int]
    file_format: str  # "tsv" (header), "tsv-noheader" or "csv" (header-less label,sentence)
    kshot_dev_file: str = "dev"  # MNLI calls its k-shot dev split dev_matched
    full_train: str | None = None  # relative to the task folder
    full_dev: str | None = None  # the original GLUE dev set, LM-BFF's test set
    jsonl_fields: tuple[tuple[str, ...], str] | None = None
    hf_dataset: tuple[str, str, tuple[str, ...], str] | None = (
        None  # path, config, text cols, eval split
    )

    @property
    def num_classes(self) -> int:
        return len(self.labels)

    @property
    def extension(self) -> str:
        return "csv" if self.file_format == "csv" else "tsv"


_NLI = ("entailment", "not_entailment")
TASKS: dict[str, TaskSpec] = {
    spec.name: spec
    for spec in (
        TaskSpec(
            "SST-2",
            ("0", "1"),
            (("sentence",), "label"),
            "tsv",
            full_train="train_full.tsv",
            full_dev="dev.tsv",
            hf_dataset=("glue", "sst2", ("sentence",), "validation"),
        ),
        TaskSpec(
            "QNLI",
            _NLI,
            (("question", "sentence"), "label"),
            "tsv",
            hf_dataset=("glue", "qnli", ("question", "sentence"), "validation"),
        ),
        TaskSpec(
            "RTE",
            _NLI,
            (("sentence1", "sentence2"), "label"),
            "tsv",
            full_train="train.jsonl",
            full_dev="val.jsonl",
            jsonl_fields=(("premise", "hypothesis"), "label"),
            hf_dataset=("glue", "rte", ("sentence1", "sentence2"), "validation"),
        ),
        TaskSpec(
            "MRPC",
            ("0", "1"),
            (("#1 String", "#2 String"), "Quality"),
            "tsv",
            full_train="train.tsv",
            full_dev="dev.tsv",
            hf_dataset=("glue", "mrpc", ("sentence1", "sentence2"), "validation"),
        ),
        TaskSpec(
            "CoLA",
            ("0", "1"),
            ((3,), 1),
            "tsv-noheader",
            hf_dataset=("glue", "cola", ("sentence",), "validation"),
        ),
        TaskSpec(
            "MNLI",
            ("contradiction", "entailment", "neutral"),
            (("sentence1", "sentence2"), "gold_label"),
            "tsv",
            kshot_dev_file="dev_matched",
            hf_dataset=("glue", "mnli", ("premise", "hypothesis"), "validation_matched"),
        ),
        TaskSpec(
            "QQP",
            ("0", "1"),
            (("question1", "question2"), "is_duplicate"),
            "tsv",
            hf_dataset=("glue", "qqp", ("question1", "question2"), "validation"),
        ),
        TaskSpec(
            "sst-5",
            ("0", "1", "2", "3", "4"),
            ((1,), 0),
            "csv",
            hf_dataset=("SetFit/sst5", "default", ("text",), "test"),
        ),
        TaskSpec("mr", ("0", "1"), ((1,), 0), "csv"),
        TaskSpec("cr", ("0", "1"), ((1,), 0), "csv"),
    )
}


def get_task(name: str) -> TaskSpec:
    try:
        return TASKS[name]
    except KeyError:
        lowered = {key.lower(): key for key in TASKS}
        if name.lower() in lowered:
            return TASKS[lowered[name.lower()]]
        raise InvalidArgument(f"unknown task {name!r}; known tasks: {', '.join(TASKS)}") from None


def read_split(spec: TaskSpec, path: Path, name: str | None = None) -> Split:
    """Read one file of ``spec``'s task (tsv, csv or jsonl, by its extension)."""
    path = Path(path)
    if not path.is_file():
        raise InvalidArgument(f"{spec.name}: data file {path} does not exist")
    handle = io.StringIO(_read_text(path), newline="")
    if path.suffix == ".jsonl":
        examples = _read_jsonl(spec, path, handle)
    elif spec.file_format == "csv":
        examples = _read_rows(spec, path, csv.reader(handle), header=False)
    else:
        rows = csv.reader(handle, delimiter="\t", quoting=csv.QUOTE_NONE)
        examples = _read_rows(spec, path, rows, header=spec.file_format == "tsv")
    if not examples:
        raise DataFormatError(f"{path}: no examples")
    return Split(name or path.stem, tuple(examples), str(path))


def _read_text(path: Path) -> str:
    """The file as UTF-8 text, with or without a byte-order mark; a byte that is not UTF-8 is
    reported with its line, as every other problem in a data file is."""
    data = path.read_bytes()
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        line = data.count(b"\n", 0, error.start) + 1
        raise DataFormatError(
            f"{path}:{line}: not UTF-8 text (byte 0x{data[error.start]:02x}: {error.reason})"
        ) from None


def _checked_rows(path: Path, rows):
    """The rows of a csv reader; a row it cannot parse (a field over the size limit, say) is
    reported with its file and line."""
    while True:
        try:
            row = next(rows)
        except StopIteration:
            return
        except csv.Error as error:
            raise DataFormatError(f"{path}:{rows.line_num}: unreadable row ({error})") from None
        yield row


def _label_index(spec: TaskSpec, value: str, where: str) -> int:
    try:
        return spec.labels.index(value.strip())
    except ValueError:
        raise DataFormatError(
            f"{where}: label {value!r} is not one of {', '.join(spec.labels)} ({spec.name})"
        ) from None


def _read_rows(spec: TaskSpec, path: Path, rows, header: bool) -> list[Example]:
    """Rows of a delimited file; the header (when there is one) locates the columns by name."""
    text_fields, label_field = spec.fields
    positions, label_position, width = list(text_fields), label_field, None
    examples = []
    for row in _checked_rows(path, rows):
        where = f"{path}:{rows.line_num}"
        if not row or row == [""]:
            continue
        if header and width is None:
            missing = [f for f in (*text_fields, label_field) if f not in row]
            if missing:
                raise DataFormatError(f"{where}: header lacks column(s) {missing}; got {row}")
            positions = [row.index(f) for f in text_fields]
            label_position = len(row) - 1 - row[::-1].index(label_field)  # MNLI: the last one
            width = len(row)
            continue
        needed = max(*positions, label_position) + 1
        if (width is not None and len(row) != width) or len(row) < needed:
            raise DataFormatError(f"{where}: expected {width or needed} fields, got {len(row)}")
        texts = [row[p] for p in positions]
        examples.append(
            Example(
                texts[0],
                texts[1] if len(texts) > 1 else None,
                _label_index(spec, row[label_position], where),
            )
        )
    return examples


def _read_jsonl(spec: TaskSpec, path: Path, handle) -> list[Example]:
    if spec.jsonl_fields is None:
        raise InvalidArgument(f"{path}: task {spec.name} has no JSON-lines layout")
    text_fields, label_field = spec.jsonl_fields
    examples = []
    for number, line in enumerate(handle, start=1):
        if not line.strip():
            continue
        where = f"{path}:{number}"
        try:
            record = json.loads(line)
            texts = [record[f] for f in text_fields]
            label = record[label_field]
        except (json.JSONDecodeError, KeyError, TypeError) as error:
            raise DataFormatError(
                f"{where}: not a JSON object with fields {[*text_fields, label_field]} ({error})"
            ) from None
        examples.append(
            Example(
                texts[0],
                texts[1] if len(texts) > 1 else None,
                _label_index(spec, str(label), where),
            )
        )
    return examples
