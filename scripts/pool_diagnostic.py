#!/usr/bin/env python3
"""Which measure of a pool itself predicts the model trained on it? For every pool in the JSON
lines of bench/gpu_pools.sh (METHOD_rRATIO_sSEED), re-makes the pool here with the same
`d2c condense` options, scores the pool itself (`d2c eval --samples POOL --no-cas`: every
evaluator's FID and KID, the consensus, coverage, recall), and prints, for each training
length, the Spearman rank correlation between each own-pool measure and the trained model's
default-evaluator FID and consensus, over the pools of one budget and over all of them.

Usage:
  scripts/pool_diagnostic.py --d2c build/d2c --work out/diag POOLS.jsonl [--ref fashion-mnist:test]
      [--data fashion-mnist] [--model-ref fashion-mnist:val]

--data must be the DATA the GPU call condensed from (fashion-mnist:fit for the :val runs). A
pool made with options (a spec METHOD+--OPTION+VALUE..., named METHOD_OPTION_VALUE_rR_sS by
bench/gpu_pools.sh, e.g. facility_mmd_weight_10_r0.01_s0) is re-made with those options: the
words up to a number are one option, its dashes turned into underscores by the name.

The pools on the GPU machine were condensed with 16 threads; kherding's sums are in a fixed
order per thread count, so a pool made here with 2 threads can differ in a pick or two (not
checked: the device's pools did not come back).
An own-pool KID is not comparable across pools: the pool is repeated to the evaluation's
sample count, and repeated images bias the unbiased estimator downwards (it goes negative).
"""
import argparse
import json
import os
import re
import subprocess
import sys

NAME = re.compile(r"^(?P<method>.+)_r(?P<ratio>[0-9.]+)_s(?P<seed>\d+)$")


def condense_args(method):
    """The `d2c condense` options of a pool name's METHOD part: facility_mmd_weight_10 ->
    --method facility --mmd-weight 10; default_bandwidth_0.5 -> --bandwidth 0.5."""
    words = method.split("_")
    out = [] if words[0] == "default" else ["--method", words[0]]
    opt = []
    for w in words[1:]:
        if re.fullmatch(r"[0-9.eE+-]+", w) and opt:
            out += ["--" + "-".join(opt), w]
            opt = []
        else:
            opt.append(w)
    if opt:
        sys.exit(f"cannot read the options of pool method {method!r}")
    return out


def run(cmd):
    r = subprocess.run(cmd, capture_output=True, text=True)
    if r.returncode != 0:
        sys.exit(f"failed ({r.returncode}): {' '.join(cmd)}\n{r.stderr}")


def own_measures(args, name, method, ratio, seed):
    pool = os.path.join(args.work, f"{name}.pool.safetensors")
    out = os.path.join(args.work, f"{name}.own.json")
    if not os.path.exists(pool):
        margs = condense_args(method)
        run([args.d2c, "condense", "--data", args.data, *margs, "--ratio", ratio, "--seed", seed,
             "--threads", str(args.threads), "--quiet", "--out", pool])
    if not os.path.exists(out):
        run([args.d2c, "eval", "--samples", pool, "--ref", args.ref, "--no-cas", "--threads", str(args.threads),
             "--quiet", "--out", out])
    m = json.load(open(out))
    res = {f"own FID {e['evaluator'].split(':')[0]}": e["fid"] for e in m["per_evaluator"]}
    res.update({"own KID": m["kid"], "own consensus": m["consensus"], "own coverage (neg)": -m["coverage"],
                "own recall (neg)": -m["recall"]})
    return res


def ranks(v):
    order = sorted(range(len(v)), key=lambda i: v[i])
    r = [0.0] * len(v)
    i = 0
    while i < len(order):  # average ranks over ties
        j = i
        while j + 1 < len(order) and v[order[j + 1]] == v[order[i]]:
            j += 1
        for k in range(i, j + 1):
            r[order[k]] = (i + j) / 2
        i = j + 1
    return r


def spearman(a, b):
    ra, rb = ranks(a), ranks(b)
    n = len(a)
    ma, mb = sum(ra) / n, sum(rb) / n
    cov = sum((x - ma) * (y - mb) for x, y in zip(ra, rb))
    va = sum((x - ma) ** 2 for x in ra) ** 0.5
    vb = sum((y - mb) ** 2 for y in rb) ** 0.5
    return cov / (va * vb) if va > 0 and vb > 0 else float("nan")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--d2c", default="build/d2c")
    ap.add_argument("--work", default="out/diag")
    ap.add_argument("--ref", default="fashion-mnist:test")
    ap.add_argument("--data", default="fashion-mnist", help="the source the GPU call condensed from (its DATA)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--model-ref", help="the models' reference to correlate with, for calls that scored against several "
                    "(REFS); default --ref. Rows without a ref are always used")
    ap.add_argument("jsonl", nargs="+")
    args = ap.parse_args()
    os.makedirs(args.work, exist_ok=True)
    rows = [json.loads(line) for p in args.jsonl for line in open(p) if line.strip()]
    rows = [r for r in rows if r.get("ref", args.model_ref or args.ref) == (args.model_ref or args.ref)]
    own = {}
    for r in rows:
        m = NAME.match(r["pool"])
        if m and r["pool"] not in own:
            own[r["pool"]] = own_measures(args, r["pool"], m["method"], m["ratio"], m["seed"])
    labels = list(next(iter(own.values())))
    print("| pool | " + " | ".join(labels) + " |")
    print("|---|" + "---|" * len(labels))
    for name in sorted(own):
        print(f"| {name} | " + " | ".join(f"{own[name][k]:.4g}" for k in labels) + " |")
    for steps in sorted({r["steps"] for r in rows}):
        for scope in ("all budgets", "1% only"):
            sel = [r for r in rows if r["pool"] in own and r["steps"] == steps
                   and (scope == "all budgets" or "_r0.01_" in r["pool"])]
            if len(sel) < 3 or (scope == "1% only" and len(sel) == len(everything)):
                continue
            if scope == "all budgets":
                everything = sel
            print(f"\nSpearman rank correlation, {steps} steps, {scope} ({len(sel)} pools): own measure against "
                  "the model's default FID / consensus")
            for k in labels:
                x = [own[r["pool"]][k] for r in sel]
                print(f"  {k:28s} {spearman(x, [r['metrics']['fid'] for r in sel]):+.2f} / "
                      f"{spearman(x, [r['metrics']['consensus'] for r in sel]):+.2f}")


if __name__ == "__main__":
    main()
