#!/usr/bin/env python3
"""Own-pool quality of the selection methods: condenses fashion-mnist:fit with each method at
each budget, evaluates every pool itself (`d2c eval --samples POOL`, no diffusion model) against a
held-out reference, and prints two Markdown tables (FID and KID per evaluator, the consensus, the
condensation wall time; then PRDC coverage and recall per evaluator); random subsets over several
seeds as mean +- sample SD.

Usage:
  scripts/selection_table.py --d2c build/d2c --work out/sel --ref fashion-mnist:val \\
      [--ratios 0.003,0.01,0.1] [--methods kherding,gadc] [--seeds 0,1,2,3,4] [--json OUT.json]

A method may carry `d2c condense` options joined by '+', as bench/gpu_pools.sh's specs do:
`--methods kherding,kherding+--bandwidth+0.5,facility+--bandwidth+0.25`.
The deterministic methods (kherding, gadc, facility, herding, kcenter) run once (seed 0);
`random` runs for every seed. Pools are reused from --work when present (delete them to re-measure times).
Below 10,000 samples FID is biased upwards (compare at equal n only); KID is primary there.
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import time

DETERMINISTIC = {"kherding", "gadc", "facility", "herding", "kcenter"}


def run(cmd):
    r = subprocess.run(cmd, capture_output=True, text=True)
    if r.returncode != 0:
        sys.exit(f"failed ({r.returncode}): {' '.join(cmd)}\n{r.stderr}")
    return r


def condense(args, spec, ratio, seed):
    method, *opts = spec.split("+")
    tag = "_".join([method] + [o.lstrip("-") for o in opts])
    out = os.path.join(args.work, f"{tag}_r{ratio}_s{seed}.safetensors")
    meta = out + ".seconds"
    if not os.path.exists(out):
        t = time.time()
        run([args.d2c, "condense", "--data", args.data, "--ratio", ratio, "--method", method, "--seed", str(seed),
             "--threads", str(args.threads), "--out", out, "--quiet", "--eval-nets", "0", *opts])
        with open(meta, "w") as f:
            f.write(f"{time.time() - t:.2f}\n")
    return out, float(open(meta).read())


def evaluate(args, pool):
    tag = args.ref.replace(":", "_")
    out = pool + f".{tag}.json"
    if not os.path.exists(out):
        run([args.d2c, "eval", "--samples", pool, "--ref", args.ref, "--out", out, "--no-cas", "--quiet",
             "--threads", str(args.threads), "--cache-dir", os.path.join(args.work, "cache")])
    return json.load(open(out))


def cell(values, fmt):
    if len(values) == 1:
        return fmt.format(values[0])
    return (fmt + " ± " + fmt).format(statistics.mean(values), statistics.stdev(values))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--d2c", required=True)
    ap.add_argument("--work", required=True)
    ap.add_argument("--data", default="fashion-mnist:fit")
    ap.add_argument("--ref", default="fashion-mnist:val")
    ap.add_argument("--ratios", default="0.003,0.01,0.1")
    ap.add_argument("--methods", default="kherding,gadc")
    ap.add_argument("--seeds", default="0,1,2,3,4")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--json")
    args = ap.parse_args()
    os.makedirs(args.work, exist_ok=True)
    seeds = [int(s) for s in args.seeds.split(",")]
    rows = []
    for ratio in args.ratios.split(","):
        for method in args.methods.split(",") + ["random"]:
            runs = []
            for seed in (seeds[:1] if method.split("+")[0] in DETERMINISTIC else seeds):
                pool, secs = condense(args, method, ratio, seed)
                m = evaluate(args, pool)
                runs.append({"seed": seed, "seconds": secs, "metrics": m})
                print(f"{method} {ratio} seed {seed}: {secs:.1f} s, consensus {m['consensus']:.4f}, "
                      f"default KID {m['kid']:.5f}, coverage {m['coverage']:.4f}", file=sys.stderr, flush=True)
            rows.append({"ratio": ratio, "method": method, "runs": runs})
    evs = [p["evaluator"].split(":")[0] for p in rows[0]["runs"][0]["metrics"]["per_evaluator"]]
    n_ref = rows[0]["runs"][0]["metrics"]["n_ref"]
    print(f"Own-pool metrics against {args.ref} ({n_ref} images), pools condensed from {args.data}; "
          f"random: mean ± SD over seeds {args.seeds}.\n")
    print("| budget | method | n | " + " | ".join(f"{e} FID | {e} KID" for e in evs) + " | consensus | condense s |")
    print("|---|---|---:|" + "---:|---:|" * len(evs) + "---:|---:|")
    for r in rows:
        ms = [x["metrics"] for x in r["runs"]]
        cells = []
        for i in range(len(evs)):
            cells.append(cell([m["per_evaluator"][i]["fid"] for m in ms], "{:.4f}"))
            cells.append(cell([m["per_evaluator"][i]["kid"] for m in ms], "{:.5f}"))
        print(f"| {float(r['ratio']) * 100:g}% | {r['method']} | {ms[0]['n_samples']} | " + " | ".join(cells) +
              f" | {cell([m['consensus'] for m in ms], '{:.4f}')} | {cell([x['seconds'] for x in r['runs']], '{:.1f}')} |")
    print(f"\nPRDC coverage and recall (k = 3) of the same pools against {args.ref}, per evaluator "
          "(higher is better).\n")
    print("| budget | method | n | " + " | ".join(f"{e} coverage | {e} recall" for e in evs) + " | mean coverage |")
    print("|---|---|---:|" + "---:|---:|" * len(evs) + "---:|")
    for r in rows:
        ms = [x["metrics"] for x in r["runs"]]
        cells = []
        for i in range(len(evs)):
            cells.append(cell([m["per_evaluator"][i]["coverage"] for m in ms], "{:.4f}"))
            cells.append(cell([m["per_evaluator"][i]["recall"] for m in ms], "{:.4f}"))
        mean_cov = [statistics.mean(p["coverage"] for p in m["per_evaluator"]) for m in ms]
        print(f"| {float(r['ratio']) * 100:g}% | {r['method']} | {ms[0]['n_samples']} | " + " | ".join(cells) +
              f" | {cell(mean_cov, '{:.4f}')} |")
    if args.json:
        slim = [{"ratio": float(r["ratio"]), "method": r["method"],
                 "runs": [{"seed": x["seed"], "condense_seconds": x["seconds"], "n_samples": x["metrics"]["n_samples"],
                           "consensus": x["metrics"]["consensus"],
                           "per_evaluator": [{k: p[k] for k in ("evaluator", "fid", "kid", "kid_std", "precision",
                                                                "recall", "density", "coverage")}
                                             for p in x["metrics"]["per_evaluator"]]} for x in r["runs"]]}
                for r in rows]
        with open(args.json, "w") as f:
            json.dump({"data": args.data, "ref": args.ref, "n_ref": n_ref, "rows": slim}, f, indent=1)


if __name__ == "__main__":
    main()
