#!/usr/bin/env python3
"""scripts/compare.py end to end on the trainer's small test warm start:
  test_compare_e2e.py <janus_trainer> <warm start .safetensors> <scratch dir>
Two arms x two seeds x 3 steps, a second call that keeps the finished runs and adds a third arm,
the refusals (a foreign run in the way, mixed settings), then the table's numbers recomputed here
from each run's metrics.jsonl and summary.json (not from compare.py's code)."""
import json
import math
import os
import re
import shutil
import subprocess
import sys
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
COMPARE = os.path.join(HERE, "..", "compare.py")
TRAINER, WARM, SCRATCH = sys.argv[1:4]
del sys.argv[1:4]
COMMON = ["--grid", "8", "--tags", "single_object", "--heldout-fraction", "0", "--cfg", "1", "--prompts", "2",
          "--group", "4", "--eval-samples", "2", "--image-every", "0", "--lr", "1e-3"]


def compare(out, docs, seeds, arms, extra=(), steps=3):
    cmd = [sys.executable, COMPARE, "--trainer", TRAINER, "--init", WARM, "--steps", str(steps), "--seeds", seeds,
           "--arms", *arms, "--out", out, "--docs", docs, "--tag", "t", *extra, "--", *COMMON]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=600)


def jload(path):
    with open(path) as f:
        return json.load(f)


def mean_metric(run, key="reward"):
    """The mean over the run's steps of one metrics.jsonl key."""
    with open(os.path.join(run, "metrics.jsonl")) as f:
        xs = [json.loads(l)[key] for l in f if l.strip()]
    return sum(xs) / len(xs)


class CompareEndToEnd(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        shutil.rmtree(SCRATCH, ignore_errors=True)
        os.makedirs(SCRATCH)
        cls.out, cls.docs = os.path.join(SCRATCH, "runs"), os.path.join(SCRATCH, "docs")
        cls.first = compare(cls.out, cls.docs, "0-1", ["grpo", "gcpo"])
        cls.second = compare(cls.out, cls.docs, "0-1", ["grpo", "gcpo", "random-w1"])

    def test_runs_and_outputs(self):
        self.assertEqual(self.first.returncode, 0, self.first.stderr)
        self.assertEqual(self.second.returncode, 0, self.second.stderr)
        self.assertIn("keeping 4 finished runs", self.second.stderr)
        for arm in ("grpo", "gcpo", "random-w1"):
            for s in (0, 1):
                d = os.path.join(self.out, f"{arm}-seed{s}")
                self.assertTrue(os.path.isfile(os.path.join(d, "summary.json")), d)
                cfg = jload(os.path.join(d, "config.json"))
                self.assertEqual(cfg["seed"], s)
                self.assertEqual(cfg["steps"], 3)
                self.assertEqual(cfg["schedule"], "linear")  # the official default (issue 15)
        self.assertEqual(jload(os.path.join(self.out, "random-w1-seed0", "config.json"))["mask_mode"], "random")
        self.assertEqual(jload(os.path.join(self.out, "grpo-seed1", "config.json"))["algo"], "grpo")
        png = os.path.join(self.docs, "images", "comparison-t.png")
        with open(png, "rb") as f:
            self.assertEqual(f.read(8), b"\x89PNG\r\n\x1a\n")

    def test_paired_rows_recomputed(self):
        self.assertEqual(self.second.returncode, 0, self.second.stderr)
        with open(os.path.join(self.docs, "comparison-results-t.md")) as f:
            md = f.read()
        # GCPO - GRPO on the mean training reward, recomputed from the runs' own metrics
        d = [mean_metric(os.path.join(self.out, f"gcpo-seed{s}")) - mean_metric(os.path.join(self.out, f"grpo-seed{s}"))
             for s in (0, 1)]
        mean = sum(d) / 2
        se = abs(d[0] - d[1]) / 2  # sd of two values = |a - b| / sqrt(2); se = sd / sqrt(2)
        t = 6.313752  # t(0.95, 1) from the tables
        row = re.search(r"^\| GCPO - GRPO \| mean train reward \| 2 \| (\S+) \| (\S+) \| (\S+) \| (\S+) \|", md, re.M)
        self.assertIsNotNone(row, md)
        self.assertAlmostEqual(float(row.group(1)), mean, places=4)
        self.assertAlmostEqual(float(row.group(2)), se, places=4)
        self.assertAlmostEqual(float(row.group(3)), mean - t * se, places=3)
        self.assertAlmostEqual(float(row.group(4)), mean + t * se, places=3)
        # GCPO - GRPO on the KL over every token, recomputed from the runs' kl_all
        dk = [mean_metric(os.path.join(self.out, f"gcpo-seed{s}"), "kl_all")
              - mean_metric(os.path.join(self.out, f"grpo-seed{s}"), "kl_all") for s in (0, 1)]
        row = re.search(r"^\| GCPO - GRPO \| mean KL, all tokens \| 2 \| (\S+) \| (\S+) \|", md, re.M)
        self.assertIsNotNone(row, md)
        self.assertAlmostEqual(float(row.group(1)), sum(dk) / 2, places=4)
        self.assertAlmostEqual(float(row.group(2)), abs(dk[0] - dk[1]) / 2, places=4)
        # the held-out column is the summary's final evaluation
        acc = jload(os.path.join(self.out, "gcpo-seed1", "summary.json"))["eval_final"]["accuracy"]
        self.assertRegex(md, r"\| GCPO \| 1 \| [0-9.]+ \| [0-9.]+ \| %s \|" % re.escape(f"{acc:.3f}"))
        # without critical-w1 the verdict cannot be reached
        self.assertIn("not enough seeds", md)

    def test_a_foreign_run_is_never_touched(self):
        self.assertEqual(self.first.returncode, 0, self.first.stderr)
        log = os.path.join(self.out, "gcpo-seed0", "trainer.log")
        with open(log) as f:
            before = f.read()
        r = compare(self.out, self.docs, "0", ["gcpo"], steps=4)  # another command for the same folder
        self.assertNotEqual(r.returncode, 0)
        self.assertIn("gcpo-seed0", r.stderr)
        self.assertIn("another command", r.stderr)
        with open(log) as f:
            self.assertEqual(f.read(), before)

    def test_mixed_settings_are_refused(self):
        self.assertEqual(self.first.returncode, 0, self.first.stderr)
        out = os.path.join(SCRATCH, "mixed")
        shutil.copytree(os.path.join(self.out, "grpo-seed0"), os.path.join(out, "grpo-seed0"))
        shutil.copytree(os.path.join(self.out, "gcpo-seed0"), os.path.join(out, "gcpo-seed0"))
        p = os.path.join(out, "gcpo-seed0", "config.json")
        cfg = jload(p)
        cfg["lr"] = 0.5
        with open(p, "w") as f:
            json.dump(cfg, f)
        r = subprocess.run([sys.executable, COMPARE, "--plot-only", "--out", out, "--docs", os.path.join(SCRATCH, "d2")],
                           capture_output=True, text=True)
        self.assertNotEqual(r.returncode, 0)
        self.assertIn("differ in lr", r.stderr)

    def test_bad_seeds_are_named(self):
        r = subprocess.run([sys.executable, COMPARE, "--plot-only", "--seeds", "5-2"], capture_output=True, text=True)
        self.assertNotEqual(r.returncode, 0)
        self.assertIn("--seeds", r.stderr)
        r = subprocess.run([sys.executable, COMPARE, "--trainer", TRAINER, "--init", WARM, "--", "--seed", "3"],
                           capture_output=True, text=True)
        self.assertNotEqual(r.returncode, 0)
        self.assertIn("--seed after --", r.stderr)


if __name__ == "__main__":
    unittest.main()
