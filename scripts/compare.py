#!/usr/bin/env python3
"""GRPO, GCPO and GCPO's ablations with the example trainer, on paired seeds.

Every arm of a seed starts from the same warm start with the same seed, so it sees the same
prompts at every step and is evaluated on the same draws; arms are compared seed by seed
(scripts/paired_stats.py). The arms:

  grpo           --algo grpo                                    every token, no weight
  gcpo           --algo gcpo                                    the official GCPO
  gcpo-detached  --algo gcpo --weight detached                  the weight without its gradient
  critical-w1    --algo gcpo --mask-mode critical --weight one  the critical tokens, weight 1
  random-w1      --algo gcpo --mask-mode random --weight one    as many tokens, drawn uniformly
  complement-w1  --algo gcpo --mask-mode complement --weight one  the other tokens

Runs `janus_trainer rl` once per (arm, seed) into OUT/<arm>-seed<seed> (`--jobs` at a time, one
thread each). A run directory that already holds a finished run of the same command is kept
(so the arms can be run in several calls, e.g. 12 seeds of grpo/gcpo and 6 of the ablations); any
other non-empty run directory stops the script before anything starts. Then, from every
finished run in OUT, it writes
  <docs>/images/comparison[-TAG].png  training-reward curves per seed, the per-seed values of
                                      every arm, and the paired differences with their bounds
  <docs>/comparison-results[-TAG].md  per-seed tables, the paired differences, the
                                      pre-registered verdict, the commands and the settings

  scripts/compare.py --trainer build-demo/examples/janus/janus_trainer \\
      --init examples/janus/checkpoints/demo-8x8.safetensors --steps 150 --seeds 0-11 \\
      --arms grpo gcpo --out runs/compare-8x8 --tag 8x8 -- --grid 8 ...

Primary metric: the mean training reward over the run (every step's mean reward). Secondary:
held-out accuracy at the end (the run's final evaluation: --eval-samples images per held-out
prompt). `--plot-only` redraws from the runs in OUT. The figure needs python3-matplotlib
(scripts/install-deps.sh --compare).
"""
import argparse
import json
import os
import re
import shlex
import statistics
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import paired_stats  # noqa: E402

ARMS = {
    "grpo": ["--algo", "grpo"],
    "gcpo": ["--algo", "gcpo"],
    "gcpo-detached": ["--algo", "gcpo", "--weight", "detached"],
    "critical-w1": ["--algo", "gcpo", "--mask-mode", "critical", "--weight", "one"],
    "random-w1": ["--algo", "gcpo", "--mask-mode", "random", "--weight", "one"],
    "complement-w1": ["--algo", "gcpo", "--mask-mode", "complement", "--weight", "one"],
}
LABELS = {"grpo": "GRPO", "gcpo": "GCPO", "gcpo-detached": "GCPO, weight detached",
          "critical-w1": "critical, weight 1", "random-w1": "random, weight 1",
          "complement-w1": "complement, weight 1"}
COLOURS = {"grpo": "#1f77b4", "gcpo": "#d62728", "gcpo-detached": "#ff7f0e", "critical-w1": "#2ca02c",
           "random-w1": "#7f7f7f", "complement-w1": "#9467bd"}
# (a, b, what a - b measures); the first two are the pre-registered criteria's.
COMPARISONS = [
    ("gcpo", "grpo", "GCPO - GRPO"),
    ("critical-w1", "random-w1", "critical - random (weight 1): does the selection matter?"),
    ("critical-w1", "complement-w1", "critical - complement (weight 1)"),
    ("gcpo", "critical-w1", "GCPO - critical at weight 1: the weight's effect"),
    ("gcpo", "gcpo-detached", "GCPO - detached weight: the weight's gradient"),
]
# config.json keys that may differ between the runs of one comparison
PER_RUN_KEYS = {"seed", "out", "algo", "mask_mode", "weight_mode", "detach_weight"}


def seed_list(text):
    seeds = []
    for part in text:
        for piece in part.split(","):
            m = re.fullmatch(r"(\d+)(?:-(\d+))?", piece.strip())
            if not m:
                raise argparse.ArgumentTypeError(f"--seeds: '{piece}' is not a seed or a range like 0-11")
            lo, hi = int(m.group(1)), int(m.group(2) or m.group(1))
            if hi < lo:
                raise argparse.ArgumentTypeError(f"--seeds: range '{piece}' runs backwards")
            seeds += range(lo, hi + 1)
    return sorted(set(seeds))


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--trainer", help="path of the janus_trainer binary (not needed with --plot-only)")
    p.add_argument("--init", help="warm-start model.safetensors shared by every run (not needed with --plot-only)")
    p.add_argument("--out", default="runs/compare", help="folder of the runs")
    p.add_argument("--docs", default="docs", help="where the PNG (images/) and the table go")
    p.add_argument("--steps", type=int, default=150)
    p.add_argument("--seeds", nargs="+", default=["0-2"], help="seeds and ranges: 0 1 2, 0-11, 0-5,9")
    p.add_argument("--arms", nargs="+", default=["grpo", "gcpo"], choices=sorted(ARMS))
    p.add_argument("--jobs", type=int, default=2, help="runs at a time (one thread each)")
    p.add_argument("--eval-every", type=int, default=0, help="held-out evaluation every K steps (0: start and end)")
    p.add_argument("--tag", default="", help="suffix of the output names: images/comparison-TAG.png, "
                   "comparison-results-TAG.md (several comparisons side by side)")
    p.add_argument("--title", default="", help="the figure's and the table's title (default: from the settings)")
    p.add_argument("--plot-only", action="store_true", help="no runs: redraw from the finished runs in --out")
    p.add_argument("trainer_args", nargs=argparse.REMAINDER,
                   help="after --: further rl options given to every run (e.g. -- --grid 16 --lr 5e-4)")
    a = p.parse_args(argv)
    if a.trainer_args and a.trainer_args[0] == "--":
        a.trainer_args = a.trainer_args[1:]
    try:
        a.seeds = seed_list(a.seeds)
    except argparse.ArgumentTypeError as e:
        p.error(str(e))
    if a.steps < 1:
        p.error("--steps must be >= 1")
    if a.jobs < 1:
        p.error("--jobs must be >= 1")
    if a.eval_every < 0:
        p.error("--eval-every must be >= 0")
    if not a.plot_only and (not a.trainer or not a.init):
        p.error("--trainer and --init are needed to run (or give --plot-only)")
    for bad in ("--algo", "--seed", "--out", "--init", "--steps", "--mask-mode", "--weight", "--detach-weight"):
        if bad in a.trainer_args:
            p.error(f"{bad} after -- : the script sets it per arm and seed")
    return a


def run_dir(out, arm, seed):
    return os.path.join(out, f"{arm}-seed{seed}")


def command(a, arm, seed):
    return ([a.trainer, "-q", "rl"] + ARMS[arm] + ["--seed", str(seed), "--init", a.init, "--steps", str(a.steps),
            "--eval-every", str(a.eval_every), "--threads", "1", "--save-every", "0",
            "--out", run_dir(a.out, arm, seed)] + a.trainer_args)


def steps_done(path):
    try:
        with open(os.path.join(path, "metrics.jsonl")) as f:
            return sum(1 for line in f if line.strip())
    except OSError:
        return 0


def finished(path):
    return os.path.isfile(os.path.join(path, "summary.json"))


def plan(a):
    """(todo, kept): the runs to start, and the finished runs of the same commands to keep.
    Exits, touching nothing, when a run directory holds anything else."""
    todo, kept, conflicts = [], [], []
    for s in a.seeds:
        for arm in a.arms:
            d = run_dir(a.out, arm, s)
            if not (os.path.isdir(d) and os.listdir(d)):
                todo.append((arm, s))
                continue
            try:
                with open(os.path.join(d, "command.json")) as f:
                    before = json.load(f)
            except (OSError, ValueError):
                before = None
            if before == command(a, arm, s) and finished(d):
                kept.append((arm, s))
            elif before == command(a, arm, s):
                conflicts.append(f"{d} (the same command, unfinished: see {d}/trainer.log; move it away to rerun)")
            else:
                conflicts.append(f"{d} (another command: see {d}/command.json)")
    if conflicts:
        sys.exit("compare.py: --out already holds runs this call would overwrite: " + "; ".join(conflicts) +
                 ". Give another --out, move them away, or --plot-only to redraw from them")
    return todo, kept


def run_all(a):
    if not (os.path.isfile(a.trainer) and os.access(a.trainer, os.X_OK)):
        sys.exit(f"compare.py: --trainer {a.trainer!r} is not an executable file")
    if not os.path.isfile(a.init):
        sys.exit(f"compare.py: --init {a.init!r} does not exist")
    todo, kept = plan(a)
    if kept:
        sys.stderr.write(f"compare.py: keeping {len(kept)} finished runs of the same commands in {a.out}\n")
    os.makedirs(a.out, exist_ok=True)
    running, failed = [], []
    total = len(todo) * a.steps
    started = list(todo)
    t0 = time.time()
    while todo or running:
        while todo and len(running) < a.jobs:
            arm, s = todo.pop(0)
            d = run_dir(a.out, arm, s)
            os.makedirs(d, exist_ok=True)
            cmd = command(a, arm, s)
            with open(os.path.join(d, "command.json"), "w") as f:
                json.dump(cmd, f)
            log = open(os.path.join(d, "trainer.log"), "w")
            log.write("$ " + " ".join(shlex.quote(c) for c in cmd) + "\n")
            log.flush()
            running.append((arm, s, subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT), log))
        time.sleep(2)
        for r in list(running):
            arm, s, proc, log = r
            if proc.poll() is not None:
                log.close()
                running.remove(r)
                if proc.returncode != 0:
                    failed.append(f"{arm} seed {s} (exit {proc.returncode}, see {run_dir(a.out, arm, s)}/trainer.log)")
        done = sum(min(a.steps, steps_done(run_dir(a.out, arm, s))) for arm, s in started)
        el = time.time() - t0
        eta = el / done * (total - done) if done else 0.0
        bar = "#" * int(30 * done / max(1, total))
        sys.stderr.write(f"\r[{bar:<30}] {done}/{total} steps  {el / 60:5.1f} min  ETA {eta / 60:5.1f} min ")
        sys.stderr.flush()
    sys.stderr.write("\n")
    if failed:
        sys.exit("compare.py: runs failed: " + "; ".join(failed))


# ------------------------------------------------------------------------------------------
# Reading the runs


def load_run(path):
    metrics = []
    with open(os.path.join(path, "metrics.jsonl")) as f:
        for line in f:
            if line.strip():
                m = json.loads(line)
                if "skipped" not in m:
                    metrics.append(m)
    if not metrics:
        raise SystemExit(f"compare.py: {path}/metrics.jsonl holds no training step")
    with open(os.path.join(path, "summary.json")) as f:
        summary = json.load(f)
    with open(os.path.join(path, "config.json")) as f:
        config = json.load(f)
    cmd = None
    if os.path.isfile(os.path.join(path, "command.json")):
        with open(os.path.join(path, "command.json")) as f:
            cmd = json.load(f)
    final = summary.get("eval_final") or {}
    return {"metrics": metrics, "summary": summary, "config": config, "command": cmd,
            "primary": statistics.mean(m["reward"] for m in metrics),
            "heldout": final.get("accuracy", float("nan")), "heldout_n": final.get("n"),
            "heldout_start": (summary.get("eval_initial") or {}).get("accuracy", float("nan")),
            "kl": statistics.mean(m["kl"] for m in metrics),
            # the KL on every token (trainers from issue 15 on); `kl` is over the trained tokens
            "kl_all": (statistics.mean(m["kl_all"] for m in metrics) if all("kl_all" in m for m in metrics)
                       else float("nan")),
            "crit": statistics.mean(m["critical_fraction"] for m in metrics),
            "sps": summary.get("mean_step_seconds", float("nan"))}


def load_runs(out):
    """{arm: {seed: run}} of every finished run in `out`; the settings must agree."""
    runs = {}
    if not os.path.isdir(out):
        raise SystemExit(f"compare.py: --out {out!r} does not exist")
    for name in sorted(os.listdir(out)):
        m = re.fullmatch(r"(.+)-seed(\d+)", name)
        if not m or m.group(1) not in ARMS or not finished(os.path.join(out, name)):
            continue
        runs.setdefault(m.group(1), {})[int(m.group(2))] = load_run(os.path.join(out, name))
    if not runs:
        raise SystemExit(f"compare.py: no finished run (<arm>-seed<N>/summary.json) in {out!r}")
    ref_name, ref = None, None
    for arm, by_seed in runs.items():
        for s, r in by_seed.items():
            shared = {k: v for k, v in r["config"].items() if k not in PER_RUN_KEYS}
            if ref is None:
                ref_name, ref = f"{arm}-seed{s}", shared
                continue
            diff = sorted(k for k in set(ref) | set(shared) if ref.get(k) != shared.get(k))
            if diff:
                raise SystemExit(f"compare.py: {out}/{arm}-seed{s} and {out}/{ref_name} differ in "
                                 f"{', '.join(diff)} (config.json): not one comparison; use separate --out folders")
    return runs


def comparisons(runs, key):
    out = []
    for x, y, what in COMPARISONS:
        if x in runs and y in runs:
            r = paired_stats.paired({s: v[key] for s, v in runs[x].items()}, {s: v[key] for s, v in runs[y].items()})
            if r["n"]:
                out.append((x, y, what, r))
    return out


def find(comps, x, y):
    for a, b, _, r in comps:
        if (a, b) == (x, y):
            return r
    return None


def rolling(xs, k):
    return [statistics.mean(xs[max(0, i - k + 1): i + 1]) for i in range(len(xs))]


# ------------------------------------------------------------------------------------------
# Figure and table


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


def fmt(x, p=3, sign=False):
    if x != x:
        return "n/a"
    return f"{x:+.{p}f}" if sign else f"{x:.{p}f}"


def settings_line(cfg, steps):
    return (f"{cfg.get('grid_height')}x{cfg.get('grid_width')} grid, {steps} steps of {cfg.get('prompts')} prompts x "
            f"{cfg.get('group')} samples, lr {cfg.get('lr'):g} {cfg.get('schedule')}, beta {cfg.get('beta'):g}, "
            f"weight clip {cfg.get('weight_clip'):g}, CFG {cfg.get('cfg_scale'):g}, reward {cfg.get('reward')}")


def plot_and_table(a):
    runs = load_runs(a.out)
    arms = [arm for arm in ARMS if arm in runs]
    any_run = next(iter(runs[arms[0]].values()))
    cfg, steps = any_run["config"], any_run["config"].get("steps")
    prim, sec = comparisons(runs, "primary"), comparisons(runs, "heldout")
    # the k3 KL on every token (kl_all), the same tokens for every arm: runs of a trainer that
    # did not record it are left out of these rows
    kl_runs = {arm: {s: r for s, r in by_seed.items() if r["kl_all"] == r["kl_all"]} for arm, by_seed in runs.items()}
    kl_all = comparisons({arm: by_seed for arm, by_seed in kl_runs.items() if by_seed}, "kl_all")
    verdict, reasons = paired_stats.verdict(find(prim, "gcpo", "grpo"), find(prim, "critical-w1", "random-w1"))
    verdict2, reasons2 = paired_stats.verdict(find(sec, "gcpo", "grpo"), find(sec, "critical-w1", "random-w1"))
    title = a.title or settings_line(cfg, steps)

    matplotlib = import_matplotlib()
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(2, 2, figsize=(15, 10), dpi=100)
    ax1, ax2, ax3, ax4 = axes.ravel()
    # (1) training reward against steps: a thin line per seed, the mean over seeds thick
    for arm in arms:
        c = COLOURS[arm]
        curves = []
        for s, r in sorted(runs[arm].items()):
            x = [m["step"] for m in r["metrics"]]
            y = rolling([m["reward"] for m in r["metrics"]], 10)
            ax1.plot(x, y, color=c, alpha=0.18, lw=0.7)
            curves.append((x, y))
        n = min(len(y) for _, y in curves)
        ax1.plot(curves[0][0][:n], [statistics.mean(y[i] for _, y in curves) for i in range(n)], color=c, lw=2.2,
                 label=f"{LABELS[arm]} ({len(curves)} seeds)")
    ax1.set(title="training reward, 10-step moving average\n(thin: one seed, thick: mean)", xlabel="RL step",
            ylabel=f"mean reward ({cfg.get('reward')})")
    ax1.legend(fontsize=8, loc="lower right")
    # (2) the primary metric per seed and arm, a line per seed across the arms
    seeds = sorted(set().union(*[set(runs[arm]) for arm in arms]))
    for s in seeds:
        xs = [i for i, arm in enumerate(arms) if s in runs[arm]]
        ax2.plot(xs, [runs[arms[i]][s]["primary"] for i in xs], color="#555555", alpha=0.35, lw=0.8, marker=".")
    for i, arm in enumerate(arms):
        vals = [r["primary"] for r in runs[arm].values()]
        ax2.scatter([i], [statistics.mean(vals)], color=COLOURS[arm], s=90, zorder=3, marker="D")
    ax2.set_xticks(range(len(arms)), [LABELS[arm].replace(", ", ",\n") for arm in arms], fontsize=8)
    ax2.set(title="mean training reward over the run, per seed\n(grey lines join one seed's arms; diamond: mean)",
            ylabel="mean training reward")
    ax2.title.set_fontsize(9)

    # (3, 4) paired differences: a dot per seed, the mean and its two one-sided 95% bounds
    def diff_panel(ax, comps, what):
        for k, (x, y, label, r) in enumerate(comps):
            ax.scatter(r["diffs"], [k + (j % 5 - 2) * 0.05 for j in range(r["n"])], color=COLOURS[x], s=14, alpha=0.6)
            if r["n"] >= 2:
                ax.plot([r["lower"], r["upper"]], [k, k], color="black", lw=2)
            ax.scatter([r["mean"]], [k], color="black", s=50, zorder=3, marker="|")
            ax.text(0.99, k - 0.22, f"mean {fmt(r['mean'], sign=True)}, bounds [{fmt(r['lower'], sign=True)}, "
                    f"{fmt(r['upper'], sign=True)}], n {r['n']}, wins {r['wins']}", transform=ax.get_yaxis_transform(),
                    fontsize=7, ha="right", va="bottom")
        ax.axvline(0, color="#888888", lw=1)
        ax.axvline(paired_stats.MARGIN, color="#d62728", lw=0.8, ls="--")
        ax.set_yticks(range(len(comps)), [c[2].split(":")[0].replace(" (weight 1)", "\n(weight 1)") for c in comps],
                      fontsize=8)
        ax.set_ylim(len(comps) - 0.5, -0.7)
        ax.set(title=f"paired differences, {what}\n(dots: seeds; bar: the one-sided 95% bounds; dashed: -0.02)",
               xlabel="difference")
        ax.title.set_fontsize(9)
    diff_panel(ax3, prim, "mean training reward (primary)")
    n_eval = any_run["heldout_n"]
    diff_panel(ax4, sec, f"held-out accuracy at the end, {n_eval} images (secondary)")
    for ax in (ax1, ax2, ax3, ax4):
        ax.grid(alpha=0.3)
    fig.suptitle(f"{title}\nverdict (pre-registered, primary metric): {verdict}", fontsize=10)
    fig.tight_layout()
    suffix = f"-{a.tag}" if a.tag else ""
    os.makedirs(os.path.join(a.docs, "images"), exist_ok=True)
    png = os.path.join(a.docs, "images", f"comparison{suffix}.png")
    fig.savefig(png)

    L = [f"# Paired comparison{': ' + a.tag if a.tag else ''}", "",
         "Written by `scripts/compare.py` from the runs (do not edit by hand; the discussion is in "
         f"[comparison.md](comparison.md)). Figure: [images/comparison{suffix}.png](images/comparison{suffix}.png).", "",
         f"Settings: {settings_line(cfg, steps)}.", "",
         f"**Verdict by the pre-registered criteria, primary metric (mean training reward over the run): {verdict}** "
         f"({'; '.join(reasons)}).", "",
         f"The same criteria on the secondary metric (held-out accuracy): {verdict2} ({'; '.join(reasons2)}).", "",
         "## Paired differences", "",
         "Per seed d = first arm - second arm; mean, standard error, and the one-sided 95% bounds "
         "mean -/+ t(0.95, n-1) se; wins: seeds with d > 0. The KL rows compare the mean over the run of "
         "each step's k3 KL on every token (`kl_all`), the same tokens in every arm (the trainer's `kl` "
         "averages the trained tokens only).", "",
         "| comparison | metric | n | mean | se | lower bound | upper bound | wins |", "|---|---|---|---|---|---|---|---|"]
    for comps, metric in ((prim, "mean train reward"), (sec, "held-out accuracy"), (kl_all, "mean KL, all tokens")):
        for x, y, what, r in comps:
            L.append(f"| {what} | {metric} | {r['n']} | {fmt(r['mean'], 4, True)} | {fmt(r['se'], 4)} | "
                     f"{fmt(r['lower'], 4, True)} | {fmt(r['upper'], 4, True)} | {r['wins']}/{r['n']} |")
    L += ["", "## Per arm and seed", "",
          "| arm | seed | mean train reward | held-out start | held-out end | mean KL, trained tokens | "
          "mean KL, all tokens | trained fraction | s/step |",
          "|---|---|---|---|---|---|---|---|---|"]
    for arm in arms:
        for s, r in sorted(runs[arm].items()):
            L.append(f"| {LABELS[arm]} | {s} | {fmt(r['primary'])} | {fmt(r['heldout_start'])} | {fmt(r['heldout'])} | "
                     f"{fmt(r['kl'], 4)} | {fmt(r['kl_all'], 4)} | {fmt(r['crit'], 3)} | {fmt(r['sps'], 2)} |")
        vals = list(runs[arm].values())

        def ms(k, p=3):
            xs = [v[k] for v in vals]
            if any(x != x for x in xs):
                return "n/a"
            return f"{statistics.mean(xs):.{p}f} ± {statistics.stdev(xs):.{p}f}" if len(xs) > 1 else fmt(xs[0], p)
        L.append(f"| **{LABELS[arm]}** | mean ± sd | {ms('primary')} | {ms('heldout_start')} | {ms('heldout')} | "
                 f"{ms('kl', 4)} | {ms('kl_all', 4)} | {ms('crit')} | {ms('sps', 2)} |")
    L += ["", f"Held-out accuracy: GenEval binary accuracy over the {n_eval} images of the run's final evaluation "
          "(prompts never trained on); its sampling seed follows the run's seed, so the arms of a seed are "
          "evaluated on the same draws.", "", "## Commands", ""]
    for arm in arms:
        r = next(iter(runs[arm].values()))
        if r["command"]:
            cmd = [("<seed>" if i > 0 and r["command"][i - 1] == "--seed" else
                    "<out>" if i > 0 and r["command"][i - 1] == "--out" else c) for i, c in enumerate(r["command"])]
            L += [f"{LABELS[arm]}:", "", "```", " ".join(shlex.quote(c) for c in cmd), "```", ""]
    L += ["Settings shared by every run (config.json, the per-arm keys aside):", "", "```json",
          json.dumps({k: v for k, v in cfg.items() if k not in PER_RUN_KEYS}, indent=1, sort_keys=True), "```", ""]
    md = os.path.join(a.docs, f"comparison-results{suffix}.md")
    with open(md, "w") as f:
        f.write("\n".join(L))
    print(f"wrote {png}\nwrote {md}")
    print(f"verdict (primary): {verdict}: {'; '.join(reasons)}")
    for comps, metric in ((prim, "train reward"), (sec, "held-out")):
        for x, y, what, r in comps:
            print(f"  {metric:12s} {x} - {y}: {fmt(r['mean'], 4, True)} [{fmt(r['lower'], 4, True)}, "
                  f"{fmt(r['upper'], 4, True)}] n {r['n']}")


def main():
    a = parse_args()
    if not a.plot_only:
        run_all(a)
    plot_and_table(a)


if __name__ == "__main__":
    main()
