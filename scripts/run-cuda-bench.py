#!/usr/bin/env python3
"""Runs gcpo_bench_cuda one operator family at a time, within a time budget, and merges the
results into one Google Benchmark JSON file (used by scripts/device-check.sh).

A family is one process, so a crash (a kernel fault aborts the process, naming the benchmark on
stderr) costs only that process: its results are lost with it (Google Benchmark writes the JSON at
the end), the benchmark that was running is recorded as crashed, and the family runs again
without the crashed benchmarks (at most 3 tries). A family that runs out of time is recorded as
cut off; the next families still get their turn while time is left.

  python3 scripts/run-cuda-bench.py BINARY --out merged.json --log bench.log [--budget-s 90]
                                     [--reps 5] [--filter REGEX]
Exit status: 0 when every benchmark ran (errors reported by a benchmark itself, e.g. an operator
returning a status, are listed in the JSON, not counted here); 1 when something crashed or was
cut off; 2 when the binary could not list its benchmarks or could not start (no GPU).
"""

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import time

FAMILIES = [
    ("reference", r"^op:(d2d_copy|empty_kernel)[./]"),
    ("token_stats", r"^op:token_stats[./]"),
    ("token_stats_backward", r"^op:token_stats_backward[./]"),
    ("checks", r"^op:count_nonfinite[./]"),
    ("similarity", r"^op:group_similarity[./]"),
    ("similarity_from_tokens", r"^op:group_similarity_from_tokens[./]"),
    ("selection", r"^op:(select_critical_tokens|initial_mask|smoothed_entropy|entropy_gradient|gradient_topk|"
                  r"low_similarity_mask|union_mask)[./]"),
    ("advantages", r"^op:group_advantages[./]"),
    ("weight", r"^op:advantage_weight[./]"),
    ("loss", r"^op:gcpo_loss_[a-z_]+[./]"),
    ("sampling", r"^op:generation_step[./]"),
]


def list_names(binary):
    p = subprocess.run([binary, "--benchmark_list_tests=true"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                       universal_newlines=True, timeout=60)
    if p.returncode != 0:
        raise RuntimeError("%s --benchmark_list_tests failed (%d): %s" % (binary, p.returncode, p.stderr.strip()))
    return [line.strip() for line in p.stdout.splitlines() if line.startswith("op:")]


def done_names(console_text):
    """Benchmarks that finished, from the console output (aggregate or error lines)."""
    done = set()
    for line in console_text.splitlines():
        if not line.startswith("op:"):
            continue
        name = line.split()[0]
        for suffix in ("_median", "_mean", "_stddev", "_cv"):
            if name.endswith(suffix):
                name = name[: -len(suffix)]
        done.add(name)
    return done


def exact_regex(names):
    # POSIX extended (what Google Benchmark's std::regex uses): escape the dots; ':' and '/' are plain.
    return "|".join("^" + re.sub(r"([.^$*+?{}\[\]\\|()])", r"\\\1", n) + "$" for n in names)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("binary")
    p.add_argument("--out", required=True, help="merged Google Benchmark JSON")
    p.add_argument("--log", required=True, help="console output of every run, appended")
    p.add_argument("--workdir", help="where the per-run JSON files go (default: next to --out)")
    p.add_argument("--budget-s", type=float, default=120.0)
    p.add_argument("--reps", type=int, default=5)
    p.add_argument("--filter", default="", help="only benchmarks whose name matches this (Python) regex")
    args = p.parse_args(argv)

    deadline = time.monotonic() + args.budget_s
    workdir = args.workdir or os.path.dirname(os.path.abspath(args.out))
    os.makedirs(workdir, exist_ok=True)
    try:
        names = list_names(args.binary)
    except Exception as e:  # noqa: BLE001 - report whatever went wrong
        print("run-cuda-bench: %s" % e, file=sys.stderr)
        return 2
    if args.filter:
        names = [n for n in names if re.search(args.filter, n)]
    stdbuf = shutil.which("stdbuf")
    merged, context = [], {}
    crashed, cut_off, given_up = [], [], []
    fatal = None
    with open(args.log, "a") as log:
        for fam, fam_re in FAMILIES:
            todo = [n for n in names if re.search(fam_re, n)]
            if fatal:
                given_up += todo
                continue
            tries = 0
            while todo and tries < 3:
                tries += 1
                left = deadline - time.monotonic()
                if left < 3:
                    cut_off += todo
                    print("run-cuda-bench: %-24s skipped: no time left (%d benchmarks)" % (fam, len(todo)), flush=True)
                    todo = []
                    break
                json_path = os.path.join(workdir, "bench_%s_%d.json" % (fam, tries))
                cmd = ([stdbuf, "-oL", "-eL"] if stdbuf else []) + [
                    args.binary, "--benchmark_filter=" + exact_regex(todo),
                    "--benchmark_repetitions=%d" % args.reps, "--benchmark_report_aggregates_only=true",
                    "--benchmark_out=" + json_path, "--benchmark_out_format=json"]
                log.write("\n===== %s (try %d, %d benchmarks, %.0f s left)\n" % (fam, tries, len(todo), left))
                log.flush()
                t0 = time.monotonic()
                timed_out = False
                proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, universal_newlines=True)
                try:
                    out, _ = proc.communicate(timeout=left)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    out, _ = proc.communicate()
                    timed_out = True
                log.write(out)
                log.flush()
                rc = proc.returncode
                entries = []
                if os.path.exists(json_path):
                    try:
                        with open(json_path) as f:
                            doc = json.load(f)
                        entries = doc.get("benchmarks", [])
                        context = context or doc.get("context", {})
                    except ValueError:
                        entries = []
                finished = done_names(out)
                status = "timed out" if timed_out else ("ok" if rc == 0 else "crashed (exit %s)" % rc)
                print("run-cuda-bench: %-24s %-20s %3d/%d benchmarks in %.1f s" %
                      (fam, status, len([n for n in todo if n in finished]), len(todo), time.monotonic() - t0),
                      flush=True)
                if rc == 0 and not timed_out:
                    merged += entries
                    todo = []
                    break
                if timed_out:
                    # the JSON of a killed run is lost; what finished is in the log only
                    cut_off += [n for n in todo if n not in finished]
                    todo = []
                    break
                lines = out.strip().splitlines()
                why = [line for line in lines if line.startswith("gcpo_bench_cuda:") or "rror" in line]
                tail = " | ".join((why or lines)[-2:])
                if not finished and rc in (1, 2) and not any(line.startswith("op:") for line in lines):
                    # the binary could not run at all (no GPU, bad arguments): no use going on
                    fatal = "gcpo_bench_cuda did not start (exit %s): %s" % (rc, tail[-300:])
                    print("run-cuda-bench: %s" % fatal, flush=True)
                    given_up += todo
                    todo = []
                    break
                # crashed: the benchmark the abort message names, else the first one that did not
                # finish, is the culprit; run the rest again
                rest = [n for n in todo if n not in finished]
                if not rest:
                    break
                named = [n for n in rest if ("gcpo_bench_cuda: " + n.split("/iterations:")[0] + ":") in out]
                culprit = named[0] if named else rest[0]
                crashed.append({"name": culprit, "exit": rc, "output_tail": tail[-400:]})
                print("run-cuda-bench:   crashed in %s: %s" % (culprit, tail[-300:]), flush=True)
                todo = [n for n in todo if n != culprit]
            else:
                if todo:  # three crashes in this family
                    given_up += todo
    for c in crashed:  # give the summary an error entry for each crashed benchmark
        merged.append({"name": c["name"], "run_name": c["name"], "run_type": "iteration", "error_occurred": True,
                       "error_message": "process crashed (exit %s): %s" % (c["exit"], c["output_tail"])})
    for n in cut_off:
        merged.append({"name": n, "run_name": n, "run_type": "iteration", "error_occurred": True,
                       "error_message": "not run: out of time"})
    for n in given_up:
        merged.append({"name": n, "run_name": n, "run_type": "iteration", "error_occurred": True,
                       "error_message": "not run: " + (fatal or "three crashes in its family")})
    with open(args.out, "w") as f:
        json.dump({"context": context, "benchmarks": merged}, f, indent=1)
    print("run-cuda-bench: %d result entries, %d crashed, %d not run -> %s" %
          (len(merged) - len(crashed) - len(cut_off) - len(given_up), len(crashed), len(cut_off) + len(given_up),
           args.out), flush=True)
    if fatal:
        return 2
    return 1 if (crashed or cut_off or given_up) else 0


if __name__ == "__main__":
    sys.exit(main())
