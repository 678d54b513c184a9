"""`d2c experiment` end to end (CTest: cli_experiment): one random 0.1% cell on
Fashion-MNIST with a tiny training run.

    test_cli_experiment.py PATH/TO/d2c WORK_DIR

Checks that the results file holds the cell with every key ../shared/INTERFACE.md names
for experiment cells and METRICS, that --steps, --batch and the budget reached the cell
(train_steps, train_batch, n_images), that the cell's pool is the 60-image, 6-per-class
subset, that a second run with the same --work reuses the finished cell (the same JSON, in
seconds rather than a minute), and that --batch 0 is refused with one error line.
"""
import json
import os
import time

from test_cli_common import check, d2c, d2c_ok, finish, setup, st, THREADS

EXE, WORK = setup("experiment")

CELL_KEYS = ["dataset", "method", "budget", "seed", "n_images", "fid", "is_mean", "precision", "recall",
             "condense_seconds", "train_seconds", "train_steps", "device", "evaluator"]
METRICS_KEYS = ["fid", "is_mean", "is_std", "precision", "recall", "density", "coverage", "class_accuracy",
                "n_samples", "evaluator", "kid", "kid_std", "cas", "per_evaluator", "consensus"]


def run_experiment(out):
    t0 = time.time()
    d2c_ok("experiment", EXE, "experiment", "--methods", "random", "--budgets", "0.001", "--seeds", "0", "--steps", "3",
           "--batch", "8", "--samples", "20", "--no-full", "--threads", THREADS, "--out", out,
           "--work", os.path.join(WORK, "cells"))
    return time.time() - t0


out = os.path.join(WORK, "exp.json")
first = run_experiment(out)
cells = json.load(open(out))
check("one cell", isinstance(cells, list) and len(cells) == 1, f"{len(cells)} cells")
cell = cells[0]
missing = [k for k in CELL_KEYS + METRICS_KEYS if k not in cell]
check("every contract key of a cell and of METRICS", not missing, f"missing {missing}")
check("the cell's settings", cell.get("method") == "random" and cell.get("budget") == 0.001
      and cell.get("train_steps") == 3 and cell.get("train_batch") == 8 and cell.get("n_images") == 60
      and cell.get("n_samples") == 20, json.dumps({k: cell.get(k) for k in
                                                   ["method", "budget", "train_steps", "train_batch",
                                                    "n_images", "n_samples"]}))
check("per_evaluator lists the Fashion-MNIST evaluators with fid and kid",
      len(cell.get("per_evaluator", [])) >= 3 and all("fid" in e and "kid" in e for e in cell["per_evaluator"]))
pool, _ = st.load(os.path.join(WORK, "cells", "pool_random_b0.001_s0.safetensors"))
labels = pool["labels"]
check("the cell's pool: 60 images, 6 per class", pool["images"].shape[0] == 60
      and all(int((labels == k).sum()) == 6 for k in range(10)))

again = run_experiment(out)
check("a second run reuses the finished cell", json.load(open(out)) == cells and again < first / 3,
      f"first {first:.1f} s, second {again:.1f} s")

r = d2c(EXE, "experiment", "--batch", "0", "--out", os.path.join(WORK, "bad.json"))
errors = [line for line in r.err.splitlines() if line.startswith("d2c: error:")]
check("--batch 0: exit 2, one error line naming --batch", r.rc == 2 and len(errors) == 1 and "--batch" in errors[0],
      r.err.strip()[-200:])
finish()
