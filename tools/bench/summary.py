#!/usr/bin/env python3
"""Medians of the runs tools/bench/dtls-vs-udp.sh wrote: msg/s, DTLS ÷ UDP (of the medians and
per round), lost, gateway and tool CPU per delivered message (µs), latency p50.

    tools/bench/summary.py OUTDIR [OUTDIR...]
"""
import glob
import json
import os
import statistics
import sys


def load(dirs):
    runs = {}
    for d in dirs:
        for path in sorted(glob.glob(os.path.join(d, "*-*.json"))):
            name = os.path.basename(path)[:-5]
            rnd, kind = name.split("-", 1)
            with open(path) as f:
                runs.setdefault(kind, {})[(d, int(rnd))] = json.load(f)
    return runs


def figures(report):
    m = report["messages"]
    rate = m["delivered_per_s"] or 0.0
    per = lambda proc: (
        proc.get("cpu_percent", 0.0) / 100.0 * 1e6 / rate if rate else float("nan")
    )
    return {
        "rate": rate,
        "lost": m["lost"],
        "retx": m["retransmissions"],
        "gw_us": per(report["gateway"]),
        "tool_us": per(report["tool_process"]),
        "p50": (report.get("latency_ms") or {}).get("p50", float("nan")),
    }


def main():
    runs = load(sys.argv[1:])
    kinds = sorted(runs)
    rows = {k: {key: figures(r) for key, r in runs[k].items()} for k in kinds}
    med = {k: {f: statistics.median(v[f] for v in rows[k].values()) for f in
               ("rate", "gw_us", "tool_us", "p50")} for k in kinds}
    for k in kinds:
        rates = " / ".join(f"{v['rate']:,.0f}" for _, v in sorted(rows[k].items()))
        lost = sum(v["lost"] for v in rows[k].values())
        retx = sum(v["retx"] for v in rows[k].values())
        print(f"{k:5} msg/s median {med[k]['rate']:,.0f} ({rates}); lost {lost}, retx {retx}; "
              f"gateway {med[k]['gw_us']:.2f} µs/msg, tool {med[k]['tool_us']:.2f} µs/msg, "
              f"p50 {med[k]['p50']:.2f} ms")
    if "udp" in rows and "dtls" in rows:
        ratio = med["dtls"]["rate"] / med["udp"]["rate"]
        per_round = sorted(rows["dtls"][key]["rate"] / rows["udp"][key]["rate"]
                           for key in rows["dtls"] if key in rows["udp"])
        print(f"DTLS ÷ UDP of the medians {ratio:.2f}; per round "
              + " ".join(f"{r:.2f}" for r in per_round)
              + f" (median {statistics.median(per_round):.2f}); gateway CPU ratio "
              f"{med['dtls']['gw_us'] / med['udp']['gw_us']:.2f}")


if __name__ == "__main__":
    main()
