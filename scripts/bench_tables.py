#!/usr/bin/env python3
"""Markdown tables of criterion medians, one per workload, for BENCHMARKS.md.

    scripts/bench_tables.py CRITERION_DIR [SINCE_FILE] [RUN_DIR...]

Rows are implementations, columns the workload's parameters (history and fill level);
each cell is the median and, in brackets, its ratio to ours in the same column (above
1: slower than us). With RUN_DIRs (copies of target/criterion from several runs), each
median is the lowest of the runs' medians: on a shared machine the other processes only
ever add time, so the least disturbed run is the closest to the code's cost. Only
reports written after SINCE_FILE's mtime count (when given).
"""
import json
import pathlib
import sys

OURS = ("pasid IdBitmap", "pasid RemapTable get")


def fmt(ns):
    if ns >= 1e6:
        return f"{ns / 1e6:.2f} ms"
    if ns >= 1e3:
        return f"{ns / 1e3:.2f} µs"
    return f"{ns:.2f} ns"


def load(root, since):
    out = {}
    for est in sorted(pathlib.Path(root).glob("**/new/estimates.json")):
        if since is not None and est.stat().st_mtime < since:
            continue
        bench = json.loads((est.parent / "benchmark.json").read_text())
        median = json.loads(est.read_text())["median"]["point_estimate"]
        elems = (bench.get("throughput") or {}).get("Elements")
        key = (bench["group_id"], bench.get("value_str") or "", bench["function_id"] or "")
        out[key] = (median, elems)
    return out


def main():
    root = sys.argv[1]
    since = None
    if len(sys.argv) > 2 and sys.argv[2] != "-":
        since = pathlib.Path(sys.argv[2]).stat().st_mtime
    runs = sys.argv[3:] or [root]
    rows = {}
    for run in runs:
        for key, (median, elems) in load(run, since if run == root else None).items():
            if key not in rows or median < rows[key][0]:
                rows[key] = (median, elems)
    groups = sorted({k[0] for k in rows})
    for group in groups:
        keys = [k for k in rows if k[0] == group]
        params = sorted({k[1] for k in keys}, key=lambda p: p.zfill(4))
        funcs = []
        for k in sorted(keys, key=lambda k: (k[2] not in OURS, k[2])):
            if k[2] not in funcs:
                funcs.append(k[2])
        per_elem = any(rows[k][1] and rows[k][1] > 1 for k in keys)
        print(f"#### {group}" + (" (per element)" if per_elem else ""))
        print()
        print("| implementation | " + " | ".join(p or "median" for p in params) + " |")
        print("|---" * (len(params) + 1) + "|")
        for func in funcs:
            cells = []
            for p in params:
                cell = rows.get((group, p, func))
                if cell is None:
                    cells.append("—")
                    continue
                median, elems = cell
                value = median / elems if per_elem and elems else median
                ours = [rows[(group, p, o)][0] for o in OURS if (group, p, o) in rows]
                if func in OURS or not ours:
                    cells.append(fmt(value))
                else:
                    cells.append(f"{fmt(value)} ({median / ours[0]:.2f}x)")
            print(f"| {func} | " + " | ".join(cells) + " |")
        print()


if __name__ == "__main__":
    main()
