#!/usr/bin/env python3
"""GRPO against GCPO with the example trainer: same warm start, same budget, several seeds.

Runs `janus_trainer rl --algo grpo|gcpo` once per (algorithm, seed) with identical settings
(`--jobs` runs at a time, one thread each), then writes
  <docs>/images/grpo-vs-gcpo.png   reward and held-out accuracy against steps (mean over seeds,
                                   band = min..max over seeds, thin lines = single seeds)
  <docs>/comparison-results.md     the table: per algorithm and seed, held-out accuracy at the
                                   start and the end, training reward, KL, critical fraction,
                                   step time; and the exact command and settings
The runs themselves stay in --out (metrics.jsonl, eval/, images/, summary.json per run).

  scripts/compare.py --trainer build-demo/examples/janus/janus_trainer \
      --init examples/janus/checkpoints/demo-8x8.safetensors --steps 60 --seeds 0 1 2

`--plot-only` redraws the figure and the table from the runs already in --out.
Needs python3-matplotlib (scripts/install-deps.sh --compare).
"""
import argparse
import glob
import json
import os
import shlex
import statistics
import subprocess
import sys
import time

ALGOS = ("grpo", "gcpo")
COLOURS = {"grpo": "#1f77b4", "gcpo": "#d62728"}


def parse_args():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--trainer", required=True, help="path of the janus_trainer binary")
    p.add_argument("--init", required=True, help="warm-start model.safetensors shared by every run")
    p.add_argument("--out", default="runs/compare", help="folder of the runs")
    p.add_argument("--docs", default="docs", help="where the PNG (images/) and the table go")
    p.add_argument("--steps", type=int, default=60)
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--jobs", type=int, default=2, help="runs at a time (one thread each)")
    p.add_argument("--eval-every", type=int, default=10)
    p.add_argument("--tag", default="", help="suffix of the output names: images/grpo-vs-gcpo-TAG.png, "
                   "comparison-results-TAG.md (several comparisons side by side)")
    p.add_argument("--plot-only", action="store_true")
    p.add_argument("trainer_args", nargs=argparse.REMAINDER,
                   help="after --: further rl options given to every run (e.g. -- --tags colors --lr 5e-4)")
    a = p.parse_args()
    if a.trainer_args and a.trainer_args[0] == "--":
        a.trainer_args = a.trainer_args[1:]
    if a.steps < 1:
        p.error("--steps must be >= 1")
    if a.jobs < 1:
        p.error("--jobs must be >= 1")
    if a.eval_every < 1:
        p.error("--eval-every must be >= 1")
    return a


def run_dir(a, algo, seed):
    return os.path.join(a.out, f"{algo}-seed{seed}")


def command(a, algo, seed):
    return [a.trainer, "-q", "rl", "--algo", algo, "--seed", str(seed), "--init", a.init,
            "--steps", str(a.steps), "--eval-every", str(a.eval_every), "--threads", "1",
            "--save-every", "0", "--out", run_dir(a, algo, seed)] + a.trainer_args


def steps_done(path):
    try:
        with open(os.path.join(path, "metrics.jsonl")) as f:
            return sum(1 for line in f if line.strip())
    except OSError:
        return 0


def run_all(a):
    if not os.access(a.trainer, os.X_OK):
        sys.exit(f"compare.py: --trainer {a.trainer!r} is not an executable file")
    if not os.path.isfile(a.init):
        sys.exit(f"compare.py: --init {a.init!r} does not exist")
    todo = [(algo, s) for s in a.seeds for algo in ALGOS]
    # an earlier comparison's runs (and their trainer.log) are never touched: refuse before writing
    taken = [run_dir(a, algo, s) for algo, s in todo
             if os.path.isdir(run_dir(a, algo, s)) and os.listdir(run_dir(a, algo, s))]
    if taken:
        sys.exit(f"compare.py: --out {a.out!r} already holds runs ({', '.join(taken)}): give another --out, "
                 "or --plot-only to redraw from them")
    os.makedirs(a.out, exist_ok=True)
    running, failed = [], []
    total = len(todo) * a.steps
    t0 = time.time()
    while todo or running:
        while todo and len(running) < a.jobs:
            algo, s = todo.pop(0)
            d = run_dir(a, algo, s)
            os.makedirs(d, exist_ok=True)
            log = open(os.path.join(d, "trainer.log"), "w")
            cmd = command(a, algo, s)
            log.write("$ " + " ".join(shlex.quote(c) for c in cmd) + "\n")
            log.flush()
            running.append((algo, s, subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT), log))
        time.sleep(2)
        for r in list(running):
            algo, s, proc, log = r
            if proc.poll() is not None:
                log.close()
                running.remove(r)
                if proc.returncode != 0:
                    failed.append(f"{algo} seed {s} (exit {proc.returncode}, see {run_dir(a, algo, s)}/trainer.log)")
        done = sum(steps_done(run_dir(a, algo, s)) for algo in ALGOS for s in a.seeds)
        el = time.time() - t0
        eta = el / done * (total - done) if done else 0.0
        bar = "#" * int(30 * done / total)
        sys.stderr.write(f"\r[{bar:<30}] {done}/{total} steps  {el / 60:5.1f} min  ETA {eta / 60:5.1f} min ")
        sys.stderr.flush()
    sys.stderr.write("\n")
    if failed:
        sys.exit("compare.py: runs failed: " + "; ".join(failed))


def load_run(path):
    metrics = []
    with open(os.path.join(path, "metrics.jsonl")) as f:
        for line in f:
            if line.strip():
                metrics.append(json.loads(line))
    evals = {}
    for e in glob.glob(os.path.join(path, "eval", "step-*.json")):
        j = json.load(open(e))
        evals[int(j["step"])] = j
    summary = json.load(open(os.path.join(path, "summary.json")))
    config = json.load(open(os.path.join(path, "config.json")))
    if not metrics:
        raise SystemExit(f"compare.py: {path}/metrics.jsonl is empty")
    return {"metrics": metrics, "evals": evals, "summary": summary, "config": config}


def rolling(xs, k):
    out = []
    for i in range(len(xs)):
        w = xs[max(0, i - k + 1): i + 1]
        out.append(sum(w) / len(w))
    return out


def mean_sd(xs):
    xs = [x for x in xs if x == x]  # NaN: not recorded
    if not xs:
        return float("nan"), float("nan")
    if len(xs) < 2:
        return xs[0], 0.0
    return statistics.mean(xs), statistics.stdev(xs)


def import_matplotlib():
    try:
        import matplotlib
        return matplotlib
    except ImportError:
        pass
    # Debian's python3-matplotlib belongs to /usr/bin/python3; another python3 (pyenv, venv) may
    # come first on PATH: draw with the system one (the runs are done by then).
    system = "/usr/bin/python3"
    if os.path.exists(system) and os.path.realpath(sys.executable) != os.path.realpath(system):
        argv = [system, os.path.abspath(__file__)] + sys.argv[1:]
        if "--plot-only" not in argv:
            argv.insert(2, "--plot-only")
        sys.stderr.write(f"compare.py: no matplotlib in {sys.executable}; drawing with {system}\n")
        os.execv(system, argv)
    sys.exit("compare.py: matplotlib is missing: scripts/install-deps.sh --compare installs python3-matplotlib")


def plot_and_table(a):
    matplotlib = import_matplotlib()
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    runs = {algo: {s: load_run(run_dir(a, algo, s)) for s in a.seeds} for algo in ALGOS}
    cfg = runs["gcpo"][a.seeds[0]]["config"]
    fig, (ax1, ax2, ax3) = plt.subplots(1, 3, figsize=(15, 4.2), dpi=110)
    for algo in ALGOS:
        c = COLOURS[algo]
        # training reward (moving average over 5 steps)
        curves = []
        for s, r in runs[algo].items():
            steps = [m["step"] for m in r["metrics"]]
            y = rolling([m["reward"] for m in r["metrics"]], 5)
            curves.append((steps, y))
            ax1.plot(steps, y, color=c, alpha=0.25, lw=0.8)
        n = min(len(y) for _, y in curves)
        xs = curves[0][0][:n]
        ys = [[y[i] for _, y in curves] for i in range(n)]
        ax1.fill_between(xs, [min(v) for v in ys], [max(v) for v in ys], color=c, alpha=0.12)
        ax1.plot(xs, [statistics.mean(v) for v in ys], color=c, lw=2, label=algo.upper())
        # held-out accuracy at each evaluation
        common = sorted(set.intersection(*[set(r["evals"]) for r in runs[algo].values()]))
        for s, r in runs[algo].items():
            ax2.plot(common, [r["evals"][k]["accuracy"] for k in common], color=c, alpha=0.25, lw=0.8, marker=".")
        acc = [[r["evals"][k]["accuracy"] for r in runs[algo].values()] for k in common]
        ax2.fill_between(common, [min(v) for v in acc], [max(v) for v in acc], color=c, alpha=0.12)
        ax2.plot(common, [statistics.mean(v) for v in acc], color=c, lw=2, marker="o", label=algo.upper())
        # held-out "clean" accuracy (nothing drawn that was not asked for), where recorded
        if all("clean_accuracy" in r["evals"][k] for r in runs[algo].values() for k in common):
            cl = [[r["evals"][k]["clean_accuracy"] for r in runs[algo].values()] for k in common]
            ax3.fill_between(common, [min(v) for v in cl], [max(v) for v in cl], color=c, alpha=0.12)
            ax3.plot(common, [statistics.mean(v) for v in cl], color=c, lw=2, marker="o", label=algo.upper())
    ax1.set(title="training reward (5-step moving average)", xlabel="RL step", ylabel=f"mean reward ({cfg.get('reward')})")
    ax2.set(title="held-out prompts: GenEval accuracy", xlabel="RL step", ylabel="accuracy")
    ax3.set(title="held-out: correct and nothing unasked drawn", xlabel="RL step", ylabel="clean accuracy")
    for ax in (ax1, ax2, ax3):
        ax.grid(alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(loc="lower right")
    if not ax3.get_legend_handles_labels()[0]:
        ax3.text(0.5, 0.5, "not recorded by these runs", ha="center", va="center", transform=ax3.transAxes)
    fig.suptitle(f"GRPO vs GCPO, {len(a.seeds)} seeds each, {a.steps} steps, {cfg.get('prompts')} prompts x "
                 f"{cfg.get('group')} samples, {cfg.get('grid_height')}x{cfg.get('grid_width')} grid, reward "
                 f"{cfg.get('reward')} (mean, band = min..max over seeds)", fontsize=9)
    fig.tight_layout()
    os.makedirs(os.path.join(a.docs, "images"), exist_ok=True)
    suffix = f"-{a.tag}" if a.tag else ""
    png = os.path.join(a.docs, "images", f"grpo-vs-gcpo{suffix}.png")
    fig.savefig(png)

    lines = ["# GRPO vs GCPO: results table", "",
             "Written by `scripts/compare.py` (do not edit by hand; the discussion is in "
             f"[comparison.md](comparison.md)). Figure: [images/grpo-vs-gcpo{suffix}.png](images/grpo-vs-gcpo{suffix}.png). "
             f"Reward: `{cfg.get('reward')}`.", "",
             "| algorithm | seed | held-out acc. start | held-out acc. end | held-out clean end | train reward first 10 | "
             "train reward last 10 | mean KL last 10 | critical fraction | s/step |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    agg = {}
    for algo in ALGOS:
        for s in a.seeds:
            r = runs[algo][s]
            sm, ms = r["summary"], r["metrics"]
            last = ms[-10:]
            clean = sm["eval_final"].get("clean_accuracy", float("nan"))
            row = {"start": sm["eval_initial"]["accuracy"], "end": sm["eval_final"]["accuracy"], "clean": clean,
                   "r0": sm["reward_first10"], "r1": sm["reward_last10"],
                   "kl": statistics.mean(m["kl"] for m in last),
                   "crit": statistics.mean(m["critical_fraction"] for m in ms),
                   "sps": sm["mean_step_seconds"]}
            for k, v in row.items():
                agg.setdefault(algo, {}).setdefault(k, []).append(v)
            lines.append(f"| {algo.upper()} | {s} | {row['start']:.3f} | {row['end']:.3f} | {row['clean']:.3f} | {row['r0']:.3f} | "
                         f"{row['r1']:.3f} | {row['kl']:.4f} | {row['crit']:.2f} | {row['sps']:.2f} |")
    for algo in ALGOS:
        g = agg[algo]
        f = lambda k, p=3: "%.*f ± %.*f" % (p, mean_sd(g[k])[0], p, mean_sd(g[k])[1])
        lines.append(f"| **{algo.upper()}** | mean ± sd | {f('start')} | {f('end')} | {f('clean')} | {f('r0')} | {f('r1')} | "
                     f"{f('kl', 4)} | {f('crit', 2)} | {f('sps', 2)} |")
    n_eval = runs["gcpo"][a.seeds[0]]["summary"]["eval_final"].get("n")
    lines += ["", "Clean: correct under GenEval's rule *and* nothing drawn that the prompt did not ask for "
              "(not a GenEval rule; nan where the runs predate it).",
              "", f"Held-out accuracy: GenEval binary accuracy over {n_eval} images of the held-out prompts "
              "(prompts never used in training); the evaluation's sampling seed follows the run's seed, so GRPO "
              "and GCPO of the same seed are evaluated on the same draws (the start column differs only by seed).",
              "", "Every run:", "", "```",
              " ".join(shlex.quote(x) for x in command(a, "<algo>", "<seed>")), "```", "",
              "Settings of the GCPO runs (config.json):", "", "```json", json.dumps(cfg, indent=1, sort_keys=True), "```", ""]
    md = os.path.join(a.docs, f"comparison-results{suffix}.md")
    with open(md, "w") as f:
        f.write("\n".join(lines))
    print(f"wrote {png}\nwrote {md}")
    for algo in ALGOS:
        g = agg[algo]
        print(f"{algo.upper()}: held-out accuracy {mean_sd(g['start'])[0]:.3f} -> {mean_sd(g['end'])[0]:.3f} "
              f"(sd {mean_sd(g['end'])[1]:.3f}), train reward {mean_sd(g['r0'])[0]:.3f} -> {mean_sd(g['r1'])[0]:.3f}")


def main():
    a = parse_args()
    if not a.plot_only:
        run_all(a)
    plot_and_table(a)


if __name__ == "__main__":
    main()
