#!/usr/bin/env python3
"""The model-level comparison of pools as Markdown: reads the JSON lines bench/gpu_pools.sh
writes (one per pool and training length: every evaluator's FID, KID, the consensus, CAS) and
prints, per budget and length, each non-random pool against the random subsets of that budget
(mean +- sample SD over their seeds, and the best of them), and the full-data model beside.

Usage: scripts/pools_table.py POOLS.jsonl [MORE.jsonl ...]

A pool's name is METHOD_rRATIO_sSEED (gpu_pools.sh's naming) or `full`. "vs mean" is the
relative change against the random subsets' mean (negative: lower, better, for FID, KID and
the consensus; for CAS positive is better). "beats best" says whether the pool is better than
every random subset on that measure.
"""
import json
import re
import statistics
import sys

NAME = re.compile(r"^(?P<method>.+)_r(?P<ratio>[0-9.]+)_s(?P<seed>\d+)$")


def measures(metrics):
    """(label, value, lower_is_better) for every reported measure of one evaluation."""
    out = []
    for e in metrics["per_evaluator"]:
        out.append((f"FID {e['evaluator'].split(':')[0]}", e["fid"], True))
    out.append(("KID (default evaluator)", metrics["kid"], True))
    out.append(("consensus", metrics["consensus"], True))
    out.append(("CAS", metrics["cas"] if metrics.get("cas") is not None else float("nan"), False))
    return out


def main(paths):
    rows = [json.loads(line) for p in paths for line in open(p) if line.strip()]
    full_all = {(r.get("ref", "fashion-mnist:test"), r["steps"]): r for r in rows if r["pool"] == "full"}
    groups = {}
    for r in rows:
        m = NAME.match(r["pool"])
        if m:
            key = (r.get("ref", "fashion-mnist:test"), float(m["ratio"]), r["steps"])
            groups.setdefault(key, []).append((m["method"], int(m["seed"]), r))
    for (ref, ratio, steps), entries in sorted(groups.items()):
        randoms = [r for method, _, r in entries if method == "random"]
        others = [(method, seed, r) for method, seed, r in entries if method != "random"]
        print(f"\n### {ratio:g} of the data, {steps} steps, against {ref}: {len(randoms)} random subset(s)\n")
        full = {st: r for (rf, st), r in full_all.items() if rf == ref}
        head = "| measure | random mean +- SD | best random |"
        for method, seed, _ in others:
            head += f" {method} | vs mean | beats best |"
        if steps in full:
            head += " full data |"
        print(head)
        print("|" + "---|" * (head.count("|") - 1))
        for i, (label, _, lower) in enumerate(measures(randoms[0]["metrics"] if randoms else others[0][2]["metrics"])):
            vals = [measures(r["metrics"])[i][1] for r in randoms]
            vals = [v for v in vals if v is not None and v == v]  # a measure not taken (CAS on :val)
            if not vals and all(measures(r["metrics"])[i][1] != measures(r["metrics"])[i][1] for _, _, r in others):
                continue
            mean = statistics.mean(vals) if vals else float("nan")
            sd = statistics.stdev(vals) if len(vals) > 1 else float("nan")
            best = (min(vals) if lower else max(vals)) if vals else float("nan")
            line = f"| {label} | {mean:.4g} +- {sd:.2g} | {best:.4g} |"
            for _, _, r in others:
                v = measures(r["metrics"])[i][1]
                if v is None:
                    line += " - | - | - |"
                    continue
                beats = (v < best) if lower else (v > best)
                rel = f"{100 * (v - mean) / mean:+.1f}%" if vals else "-"
                line += f" {v:.4g} | {rel} | {('yes' if beats else 'no') if vals else '-'} |"
            if steps in full:
                line += f" {measures(full[steps]['metrics'])[i][1]:.4g} |"
            print(line)
    if full_all:
        print("\nFull-data model: " + ", ".join(
            f"{s} steps in {r['train_seconds_cumulative_segment']:.0f} s (segment)"
            for (rf, s), r in sorted(full_all.items()) if rf == "fashion-mnist:test"))


if __name__ == "__main__":
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    main(sys.argv[1:])
