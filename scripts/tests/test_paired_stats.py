#!/usr/bin/env python3
"""Tests of scripts/paired_stats.py against published values (t tables, a worked example)."""
import math
import os
import sys
import unittest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
import paired_stats as ps  # noqa: E402

# One-sided 95% quantiles of Student's t (any statistics table, e.g. NIST/SEMATECH e-Handbook
# 1.3.6.7.2), to the six decimals the tables give.
T95 = {1: 6.313752, 2: 2.919986, 3: 2.353363, 5: 2.015048, 6: 1.943180, 11: 1.795885,
       12: 1.782288, 30: 1.697261}


class TDistribution(unittest.TestCase):
    def test_quantiles_match_the_tables(self):
        for df, want in T95.items():
            self.assertAlmostEqual(ps.t_quantile(0.95, df), want, places=5, msg=f"df {df}")

    def test_two_sided_975_and_symmetry(self):
        self.assertAlmostEqual(ps.t_quantile(0.975, 11), 2.200985, places=5)
        self.assertAlmostEqual(ps.t_quantile(0.05, 5), -2.015048, places=5)

    def test_cdf_closed_forms(self):
        # df 1 is Cauchy: F(t) = 1/2 + atan(t)/pi; df 2: F(t) = 1/2 + t / (2 sqrt(2 + t^2)).
        for t in (-3.0, -0.5, 0.0, 0.7, 4.0):
            self.assertAlmostEqual(ps.t_cdf(t, 1), 0.5 + math.atan(t) / math.pi, places=12)
            self.assertAlmostEqual(ps.t_cdf(t, 2), 0.5 + t / (2 * math.sqrt(2 + t * t)), places=12)

    def test_bad_arguments_are_named(self):
        with self.assertRaisesRegex(ValueError, "p"):
            ps.t_quantile(1.0, 3)
        with self.assertRaisesRegex(ValueError, "df"):
            ps.t_cdf(1.0, 0)


class Paired(unittest.TestCase):
    def test_worked_example(self):
        # differences 1, 2, 3, 4, 5 (by hand): mean 3, sd sqrt(2.5), se sqrt(0.5),
        # lower = 3 - 2.131847 * 0.707107 (t(0.95, 4) = 2.131847 from the tables)
        a = {s: 10.0 + s for s in range(5)}
        b = {s: 9.0 for s in range(5)}
        r = ps.paired(a, b)
        self.assertEqual(r["n"], 5)
        self.assertEqual(r["diffs"], [1.0, 2.0, 3.0, 4.0, 5.0])
        self.assertAlmostEqual(r["mean"], 3.0)
        self.assertAlmostEqual(r["sd"], math.sqrt(2.5))
        self.assertAlmostEqual(r["se"], math.sqrt(0.5))
        self.assertAlmostEqual(r["lower"], 3.0 - 2.131847 * math.sqrt(0.5), places=5)
        self.assertAlmostEqual(r["upper"], 3.0 + 2.131847 * math.sqrt(0.5), places=5)
        self.assertEqual(r["wins"], 5)

    def test_only_common_seeds_are_paired(self):
        r = ps.paired({0: 1.0, 1: 2.0, 7: 5.0}, {1: 1.5, 7: 4.0, 9: 0.0})
        self.assertEqual(r["seeds"], [1, 7])
        self.assertEqual(r["diffs"], [0.5, 1.0])

    def test_one_seed_has_no_bounds(self):
        r = ps.paired({3: 1.0}, {3: 0.25})
        self.assertEqual(r["mean"], 0.75)
        self.assertTrue(math.isnan(r["lower"]) and math.isnan(r["upper"]))

    def test_nan_is_refused(self):
        with self.assertRaisesRegex(ValueError, "seed 2"):
            ps.paired({2: float("nan")}, {2: 1.0})


def summary(mean, lower, upper, n=12):
    return {"n": n, "mean": mean, "lower": lower, "upper": upper}


class Verdict(unittest.TestCase):
    def test_reproduced(self):
        v, _ = ps.verdict(summary(0.0, -0.015, 0.02), summary(0.05, 0.01, 0.09))
        self.assertEqual(v, "reproduced")

    def test_inconclusive_when_the_margin_is_not_cleared(self):
        v, _ = ps.verdict(summary(0.0, -0.03, 0.03), summary(0.05, 0.01, 0.09))
        self.assertEqual(v, "inconclusive")

    def test_inconclusive_when_the_selection_interval_holds_zero(self):
        v, _ = ps.verdict(summary(0.0, -0.01, 0.01), summary(0.02, -0.01, 0.05))
        self.assertEqual(v, "inconclusive")

    def test_refuted_by_gcpo_below_grpo(self):
        v, why = ps.verdict(summary(-0.05, -0.08, -0.01), summary(0.05, 0.01, 0.09))
        self.assertEqual(v, "refuted")
        self.assertIn("upper bound", why[0])

    def test_refuted_by_random_at_least_as_good(self):
        v, why = ps.verdict(summary(0.01, -0.01, 0.03), summary(0.0, -0.03, 0.03))
        self.assertEqual(v, "refuted")
        self.assertIn("critical - random", why[0])

    def test_needs_two_seeds(self):
        v, _ = ps.verdict(summary(0.1, 0.0, 0.2, n=1), summary(0.1, 0.0, 0.2))
        self.assertEqual(v, "not enough seeds")


if __name__ == "__main__":
    unittest.main()
