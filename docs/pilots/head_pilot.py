"""The dev-only head pilot of an encoder's last-layer LoRA reading (C8-cpu, C10-cpu).

Trains rank 12 for 500 steps on LM-BFF's five 16-shot splits of SST-2 and RTE for each head and
learning rate of the grid, and writes each cell's dev accuracies: no test row takes part (the test
set is capped to 16 rows, which only the records carry). Usage, with the GLUE data folder in
$LORA_CLAIMS_DATA:

    python docs/pilots/head_pilot.py mpnet native,linear-cls docs/pilots/mpnet-head-pilot.json
"""

from __future__ import annotations

import json
import os
import statistics
import sys
from pathlib import Path

from lora_claims.harness.cache import ResultCache, default_cache_dir
from lora_claims.methods.finetune.runs import RunConfig, RunInputs, run_sweep

SEEDS, TASKS, LEARNING_RATES = (13, 21, 42, 87, 100), ("SST-2", "RTE"), (1e-3, 3e-3)


def main(model: str, heads: list[str], out: Path) -> None:
    cells = [(task, head, lr) for task in TASKS for head in heads for lr in LEARNING_RATES]
    configs = [RunConfig(model=model, task=task, seed=seed, rank=12, learning_rate=lr, steps=500,
                         eval_every=50, test_cap=16, placement="last-layer", head=head)
               for task, head, lr in cells for seed in SEEDS]
    records = run_sweep(configs,
                        RunInputs(os.environ.get("LORA_CLAIMS_DATA"), {}, ResultCache(default_cache_dir())))
    rows = []
    for index, (task, head, lr) in enumerate(cells):
        dev = [r["dev_accuracy"] for r in records[index * len(SEEDS):(index + 1) * len(SEEDS)]]
        rows.append({"task": task, "head": head, "lr": lr, "dev_mean": statistics.fmean(dev), "dev": dev})
    out.write_text(json.dumps({"model": model, "seeds": list(SEEDS), "rows": rows}, indent=1) + "\n")


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2].split(","), Path(sys.argv[3]))
