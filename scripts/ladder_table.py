#!/usr/bin/env python3
"""Markdown tables from a `d2c evaluator ladder` JSON: FID and KID per set and evaluator,
the orderings that failed, and the Spearman correlations.

Usage: scripts/ladder_table.py LADDER.json [--metric fid|kid]
"""
import json
import sys


def short(evaluator_id):
    return evaluator_id.split(":")[0]


def main(argv):
    if not argv:
        sys.exit(__doc__)
    d = json.load(open(argv[0]))
    evs = d["evaluators"]
    print(f"{d['n']} images per set, reference {d['ref']} ({d['n_ref']} images)\n")
    head = "| set | " + " | ".join(f"{short(e)} FID | KID" for e in evs) + " | consensus |"
    print(head)
    print("|---|" + "---|---|" * len(evs) + "---|")
    for s in d["sets"]:
        cells = []
        for p in s["per_evaluator"]:
            cells.append(f"{p['fid']:.4g} | {p['kid']:.4g}")
        cons = s.get("consensus")
        name = s["name"] + (" (samples)" if s["type"] == "samples" else "")
        cons_text = "-" if cons is None else f"{cons:.3g}"
        print(f"| {name} | " + " | ".join(cells) + f" | {cons_text} |")
    fails = [o for o in d["orderings"] if not (o["fid_ok"] and o["kid_ok"])]
    print(f"\norderings: {len(d['orderings']) - len(fails)} of {len(d['orderings'])} pass on FID and KID")
    for o in fails:
        print(f"- FAIL {short(o['evaluator'])}: {o['lower']} < {o['higher']} (FID {'ok' if o['fid_ok'] else 'wrong'},"
              f" KID {'ok' if o['kid_ok'] else 'wrong'})")
    print()
    for sp in d["spearman"]:
        print(f"Spearman of {sp['metric'].upper()} over {sp['over']} ({sp['n_sets']} sets):\n")
        print("| | " + " | ".join(short(e) for e in evs) + " | mean with others |")
        print("|---|" + "---|" * (len(evs) + 1))
        for e, row, mean in zip(evs, sp["matrix"], sp["mean_with_others"]):
            vals = " | ".join("-" if v is None else f"{v:.3f}" for v in row)
            print(f"| {short(e)} | {vals} | {'-' if mean is None else f'{mean:.3f}'} |")
        print()
    print(f"most consistent: {d['most_consistent']} ({d['most_consistent_rule']})")


if __name__ == "__main__":
    main(sys.argv[1:])
