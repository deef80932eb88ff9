#!/usr/bin/env python3
"""Joins gcpo_bench_cuda's Google Benchmark JSON with the PyTorch baseline's JSON lines and prints
the summary of scripts/device-check.sh: the issue's goals, then one table (operator, shape,
dtype, time, GB/s, % of the device-to-device copy bandwidth of the same run, the floor that
bandwidth implies, the baseline's time and the speed-up over it).

  python3 scripts/bench-summary.py --cuda bench_cuda.json [more.json ...] --baseline baseline.jsonl
                                   [--txt summary.txt] [--json summary.json] [--merged bench_cuda.json]

Tolerates what a crashed or cut-off run leaves: truncated JSON (the complete entries are used),
missing files, benchmarks that reported an error (listed). Times are the median over repetitions
(Google Benchmark's `median` aggregate; the single run when there was one repetition).
"""

import argparse
import json
import os
import sys

KEYS = ("op", "dtype", "R", "N", "V", "D", "G", "MiB")


def canonical(name):
    """'op:x/dtype:y/R:8/.../iterations:500/manual_time' -> 'op:x/dtype:y/R:8/...'."""
    parts = [p for p in name.split("/") if ":" in p and p.split(":", 1)[0] in KEYS]
    return "/".join(parts)


def fields(key):
    return dict(p.split(":", 1) for p in key.split("/"))


def load_gbench(path):
    """The 'benchmarks' entries of a Google Benchmark JSON file, even a truncated one, and its context."""
    try:
        with open(path) as f:
            text = f.read()
    except OSError:
        return [], {}
    try:
        doc = json.loads(text)
        return doc.get("benchmarks", []), doc.get("context", {})
    except ValueError:
        pass
    context = {}
    i = text.find('"context"')
    if i >= 0:
        try:
            context, _ = json.JSONDecoder().raw_decode(text[text.index("{", i):])
        except ValueError:
            context = {}
    out = []
    i = text.find('"benchmarks"')
    if i < 0:
        return out, context
    i = text.find("[", i) + 1
    dec = json.JSONDecoder()
    while True:
        while i < len(text) and text[i] in " \t\r\n,":
            i += 1
        if i >= len(text) or text[i] != "{":
            break
        try:
            obj, i = dec.raw_decode(text, i)
        except ValueError:
            break
        out.append(obj)
    return out, context


def collect_cuda(paths):
    """key -> {time_us, bytes, bps, ...} from the median aggregate (or the lone run); errors."""
    results, errors, context, order, raw = {}, {}, {}, [], []
    for path in paths:
        entries, ctx = load_gbench(path)
        context = context or ctx
        raw += entries
        single = {}
        for e in entries:
            key = canonical(e.get("run_name") or e.get("name", ""))
            if not key.startswith("op:"):
                continue
            if e.get("error_occurred"):
                errors[key] = e.get("error_message", "error")
                continue
            unit = {"ns": 1e-3, "us": 1.0, "ms": 1e3, "s": 1e6}.get(e.get("time_unit", "ns"), 1e-3)
            rec = {"time_us": float(e.get("real_time", 0.0)) * unit, "bytes": float(e.get("bytes", 0.0)),
                   "bytes_per_second": float(e.get("bytes_per_second", 0.0)),
                   "repetitions": int(e.get("repetitions", 1) or 1)}
            if e.get("run_type") == "aggregate":
                if e.get("aggregate_name") == "median":
                    results[key] = rec
                    errors.pop(key, None)
                    if key not in order:
                        order.append(key)
            else:
                single.setdefault(key, []).append(rec)
        for key, recs in single.items():
            if key not in results:  # one repetition: no aggregates
                recs.sort(key=lambda r: r["time_us"])
                results[key] = recs[len(recs) // 2]
                errors.pop(key, None)
                if key not in order:
                    order.append(key)
    return results, errors, context, order, raw


def collect_baseline(path):
    out, errors, device = {}, {}, None
    if not path or not os.path.exists(path):
        return out, errors, device
    with open(path) as f:
        for line in f:
            line = line.strip()
            if not line.startswith("{"):
                continue
            try:
                rec = json.loads(line)
            except ValueError:
                continue
            key = rec.get("name")
            if not key:
                continue
            if "median_us" in rec:
                out[key] = rec
                device = device or rec.get("device")
            else:
                errors[key] = rec.get("error") or ("skipped: " + str(rec.get("skipped")))
    return out, errors, device


def shape_of(key):
    f = fields(key)
    return " ".join("%s=%s" % (k, f[k]) for k in KEYS[2:] if k in f)


def fmt(x, spec):
    return "-" if x is None else format(x, spec)


STEP = ("token_stats", "token_stats_backward", "group_similarity", "select_critical_tokens", "group_advantages",
        "gcpo_loss_forward", "gcpo_loss_backward")


def step_rows(cuda, base):
    """One GCPO training step: the sum of the STEP operators at (R, N, dtype, G), CUDA vs baseline."""
    rows = []
    V, D = None, None
    for key in cuda:
        f = fields(key)
        if f["op"] == "token_stats":
            V = f.get("V")
        if f["op"] == "group_similarity":
            D = f.get("D")
    if V is None or D is None:
        return rows
    Rs = sorted({int(fields(k)["R"]) for k in cuda if fields(k)["op"] == "token_stats"})
    Ns = sorted({int(fields(k)["N"]) for k in cuda if fields(k)["op"] == "token_stats"})
    Gs = sorted({int(fields(k)["G"]) for k in cuda if fields(k)["op"] == "group_similarity"})
    dts = sorted({fields(k)["dtype"] for k in cuda if fields(k)["op"] == "token_stats"})
    for dt in dts:
        for R in Rs:
            for N in Ns:
                for G in Gs:
                    if R % G:
                        continue
                    keys = ["op:token_stats/dtype:%s/R:%d/N:%d/V:%s" % (dt, R, N, V),
                            "op:token_stats_backward/dtype:%s/R:%d/N:%d/V:%s" % (dt, R, N, V),
                            "op:group_similarity/dtype:%s/R:%d/N:%d/D:%s/G:%d" % (dt, R, N, D, G),
                            "op:select_critical_tokens/dtype:fp32/R:%d/N:%d" % (R, N),
                            "op:group_advantages/dtype:fp32/R:%d/G:%d" % (R, G),
                            "op:gcpo_loss_forward/dtype:fp32/R:%d/N:%d" % (R, N),
                            "op:gcpo_loss_backward/dtype:fp32/R:%d/N:%d" % (R, N)]
                    t = sum(cuda[k]["time_us"] for k in keys) if all(k in cuda for k in keys) else None
                    b = sum(base[k]["median_us"] for k in keys) if all(k in base for k in keys) else None
                    if t is None and b is None:
                        continue
                    rows.append({"key": "op:gcpo_step/dtype:%s/R:%d/N:%d/V:%s/D:%s/G:%d" % (dt, R, N, V, D, G),
                                 "operator": "gcpo_step (7 ops)", "shape": "R=%d N=%d V=%s D=%s G=%d" % (R, N, V, D, G),
                                 "dtype": dt, "time_us": t, "baseline_us": b,
                                 "speedup": (b / t) if (t and b) else None})
    return rows


def goals(cuda, steps, copy_bps):
    out = []

    def add(desc, ok, measured, target):
        out.append({"goal": desc, "status": "NO DATA" if ok is None else ("PASS" if ok else "MISS"),
                    "measured": measured, "target": target})

    for op, frac in (("token_stats", 0.85), ("token_stats_backward", 0.80)):
        for dt in ("fp32", "bf16"):
            key = "op:%s/dtype:%s/R:32/N:576/V:16384" % (op, dt)
            r = cuda.get(key)
            if r and copy_bps:
                f = r["bytes"] / (r["time_us"] * 1e-6) / copy_bps
                add("%s %s R=32 N=576 V=16384 >= %d%% of copy bandwidth" % (op, dt, frac * 100), f >= frac,
                    "%.1f%%" % (100 * f), "%d%%" % (frac * 100))
            else:
                add("%s %s R=32 N=576 V=16384 >= %d%% of copy bandwidth" % (op, dt, frac * 100), None, None, None)
    # issue 14's goals: the selection (similarity given) <= 10 us; the loss forward + backward with
    # the weight (the fused call) <= 10 us with events and <= 6 us in a graph; the generation step
    # <= 5 us in a graph (with events it is reported against the same 5 us)
    for op, suffix, limit, label in (("select_critical_tokens", "", 10.0, "selection, similarity given"),
                                     ("select_critical_tokens", ".graph", 10.0, "selection, similarity given"),
                                     ("gcpo_loss_forward_backward", "", 10.0, "weight + loss forward + backward"),
                                     ("gcpo_loss_forward_backward", ".graph", 6.0, "weight + loss forward + backward")):
        key = "op:%s%s/dtype:fp32/R:32/N:576" % (op, suffix)
        r = cuda.get(key)
        desc = "%s R=32 N=576%s <= %g us" % (label, " (in a CUDA graph)" if suffix else " (events)", limit)
        add(desc, None if r is None else r["time_us"] <= limit, fmt(r and r["time_us"], ".2f") + " us", "%g us" % limit)
    for dt in ("bf16", "fp32"):
        for suffix in ("", ".graph"):
            key = "op:generation_step%s/dtype:%s/R:16/V:16384" % (suffix, dt)
            r = cuda.get(key)
            desc = "generation step %s 16 x 16384%s <= 5 us" % (dt, " (in a CUDA graph)" if suffix else " (events)")
            add(desc, None if r is None else r["time_us"] <= 5.0, fmt(r and r["time_us"], ".2f") + " us", "5 us")
    # The step at Janus-Pro's settings (N = 576, G = 4; 8 and 32 rollouts) and at 32x32 tokens, G = 8;
    # the table has every shape.
    for s in steps:
        f = fields(s["key"])
        if (f["N"], f["G"]) in (("576", "4"), ("1024", "8")):
            add("GCPO step %s %s >= 10x the baseline" % (s["dtype"], s["shape"]),
                None if s["speedup"] is None else s["speedup"] >= 10.0, fmt(s["speedup"], ".1f") + "x", "10x")
    return out


def row_text(r):
    return "%-36s %-30s %-5s %10s %8s %6s %9s %12s %9s" % (
        r["operator"][:36], r["shape"][:30], r["dtype"], fmt(r["time_us"], ".2f"), fmt(r.get("GBps"), ".1f"),
        fmt(r.get("copy_pct"), ".1f"), fmt(r.get("floor_us"), ".2f"), fmt(r["baseline_us"], ".1f"),
        "-" if r["speedup"] is None else "%.1fx" % r["speedup"])


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--cuda", nargs="*", default=[], help="gcpo_bench_cuda JSON files (later ones win)")
    p.add_argument("--baseline", help="torch_baseline.py JSON lines")
    p.add_argument("--txt", help="write the printed summary here too")
    p.add_argument("--json", help="write the joined results here")
    p.add_argument("--merged", help="write the merged Google Benchmark entries here")
    p.add_argument("--full", action="store_true", help="print every row (default: the headline rows; --txt has all)")
    p.add_argument("--gpu", help="the card's name, when the benchmark JSON does not have it")
    args = p.parse_args(argv)

    cuda, cuda_errors, context, order, raw = collect_cuda(args.cuda)
    base, base_errors, base_device = collect_baseline(args.baseline)
    copy_key = next((k for k in order if fields(k)["op"] == "d2d_copy"), None)
    copy_bps = None
    if copy_key:
        c = cuda[copy_key]
        copy_bps = c["bytes"] / (c["time_us"] * 1e-6) if c["time_us"] > 0 else None

    rows = []
    for key in order:
        f = fields(key)
        r = cuda[key]
        op = f["op"]
        graph = op.endswith(".graph")
        bps = r["bytes"] / (r["time_us"] * 1e-6) if r["time_us"] > 0 and r["bytes"] > 0 else None
        b = base.get(key)
        rows.append({
            "key": key, "operator": op[:-6] + " (graph)" if graph else op, "shape": shape_of(key), "dtype": f["dtype"],
            "time_us": r["time_us"], "GBps": bps / 1e9 if bps else None,
            "copy_pct": 100.0 * bps / copy_bps if (bps and copy_bps) else None,
            "floor_us": r["bytes"] / copy_bps * 1e6 if (copy_bps and r["bytes"] > 0) else None,
            "baseline_us": b["median_us"] if b else None,
            "speedup": (b["median_us"] / r["time_us"]) if (b and r["time_us"] > 0) else None})
    # baseline cases the CUDA run has no result for
    for key, b in base.items():
        if key not in cuda:
            rows.append({"key": key, "operator": fields(key)["op"], "shape": shape_of(key), "dtype": fields(key)["dtype"],
                         "time_us": None, "GBps": None, "copy_pct": None, "floor_us": None,
                         "baseline_us": b["median_us"], "speedup": None})
    steps = step_rows(cuda, base)
    gl = goals(cuda, steps, copy_bps)

    lines = []
    gpu = context.get("gpu") or args.gpu or base_device or "unknown GPU"
    lines.append("gcpo device-check benchmark summary: %s, CUDA runtime %s, driver %s; baseline: %s" % (
        gpu, context.get("cuda_runtime", "?"), context.get("cuda_driver", "?"), base_device or "none"))
    lines.append("device-to-device copy bandwidth (cudaMemcpyAsync 1 GiB, read + written): %s GB/s" %
                 fmt(copy_bps and copy_bps / 1e9, ".0f"))
    # errors: all of them in the file, the first few on the console
    err_full, err_short = [], []
    for title, errs in (("CUDA benchmarks that reported an error", cuda_errors),
                        ("baseline cases without a time", base_errors)):
        if not errs:
            continue
        items = ["  %s: %s" % (k, msg[:160]) for k, msg in sorted(errs.items())]
        err_full += ["%s (%d):" % (title, len(errs))] + items
        err_short += ["%s (%d):" % (title, len(errs))] + items[:8]
        if len(items) > 8:
            err_short.append("  ... %d more in %s" % (len(items) - 8, args.txt or "--txt"))
    lines.append("")
    lines.append("Goals (issue 3):")
    for g in gl:
        extra = "" if g["status"] == "NO DATA" else "  (measured %s, target %s)" % (g["measured"], g["target"])
        lines.append("  %-7s %s%s" % (g["status"], g["goal"], extra))
    lines.append("")
    hdr = "%-36s %-30s %-5s %10s %8s %6s %9s %12s %9s" % (
        "operator", "shape", "dtype", "time us", "GB/s", "%copy", "floor us", "baseline us", "speed-up")
    def headline(r):
        f = fields(r["key"])
        if "R" not in f or f["op"].startswith("generation_step"):
            return True  # copy, empty kernel, generation step
        return f["R"] == "32" and f.get("N", "576") == "576" and f.get("G", "4") == "4"

    full, short = lines[:2] + err_full + lines[2:], lines[:2] + err_short + lines[2:]
    short.append("Headline rows (R=32, N=576, G=4; generation step 16 rows); every shape is in %s" % (args.txt or "--txt"))
    for out, keep in ((full, lambda r: True), (short, headline)):
        out.append(hdr)
        out.append("-" * len(hdr))
        for r in rows + steps:
            if keep(r):
                out.append(row_text(r))
        if not rows:
            out.append("(no benchmark results)")
    text = "\n".join(full)
    if args.txt:
        with open(args.txt, "w") as f:
            f.write(text + "\n")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"gpu": gpu, "context": context, "copy_GBps": copy_bps and copy_bps / 1e9, "goals": gl,
                       "rows": rows, "gcpo_step": steps, "cuda_errors": cuda_errors, "baseline_errors": base_errors},
                      f, indent=1)
    if args.merged:
        with open(args.merged, "w") as f:
            json.dump({"context": context, "benchmarks": raw}, f, indent=1)
    print(text if args.full else "\n".join(short))
    return 0


if __name__ == "__main__":
    sys.exit(main())
