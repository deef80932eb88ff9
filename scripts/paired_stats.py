"""Paired-seed statistics for scripts/compare.py (standard library only).

Two arms run with the same seed share the warm start, the prompts of every step and the
evaluation draws, so the comparison is made per seed: d_i = arm_a(seed i) - arm_b(seed i). The
summary of the d_i is their mean, standard error sd / sqrt(n) and one-sided 95% bounds from
Student's t with n - 1 degrees of freedom: lower = mean - t(0.95, n-1) * se, upper = mean + ... .

The pre-registered criteria of docs/comparison.md are `verdict()`.
"""
import math

# The criteria, fixed before the runs (docs/comparison.md, "What counts"):
#   reproduced: lower bound of GCPO - GRPO above MARGIN, and critical - random with its one-sided
#               95% interval above 0;
#   refuted:    upper bound of GCPO - GRPO below 0, or critical - random <= 0 on average;
#   otherwise:  inconclusive.
MARGIN = -0.02
CONFIDENCE = 0.95


def _betacf(a, b, x):
    """Continued fraction of the incomplete beta function (modified Lentz)."""
    tiny = 1e-300
    qab, qap, qam = a + b, a + 1.0, a - 1.0
    c, d = 1.0, 1.0 - qab * x / qap
    d = 1.0 / (d if abs(d) > tiny else tiny)
    h = d
    for m in range(1, 1000):
        m2 = 2 * m
        aa = m * (b - m) * x / ((qam + m2) * (a + m2))
        d = 1.0 + aa * d
        d = 1.0 / (d if abs(d) > tiny else tiny)
        c = 1.0 + aa / c
        c = c if abs(c) > tiny else tiny
        h *= d * c
        aa = -(a + m) * (qab + m) * x / ((a + m2) * (qap + m2))
        d = 1.0 + aa * d
        d = 1.0 / (d if abs(d) > tiny else tiny)
        c = 1.0 + aa / c
        c = c if abs(c) > tiny else tiny
        delta = d * c
        h *= delta
        if abs(delta - 1.0) < 1e-15:
            return h
    raise ArithmeticError(f"incomplete beta: no convergence for a={a}, b={b}, x={x}")


def betainc(a, b, x):
    """The regularized incomplete beta function I_x(a, b), a, b > 0, 0 <= x <= 1."""
    if not (a > 0 and b > 0):
        raise ValueError(f"betainc: a ({a}) and b ({b}) must be positive")
    if not 0.0 <= x <= 1.0:
        raise ValueError(f"betainc: x ({x}) must be in [0, 1]")
    if x in (0.0, 1.0):
        return x
    lfront = math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b) + a * math.log(x) + b * math.log1p(-x)
    if x < (a + 1.0) / (a + b + 2.0):
        return math.exp(lfront) * _betacf(a, b, x) / a
    return 1.0 - math.exp(lfront) * _betacf(b, a, 1.0 - x) / b


def t_cdf(t, df):
    """P(T <= t) for Student's t with df > 0 degrees of freedom."""
    if df <= 0:
        raise ValueError(f"t_cdf: df ({df}) must be positive")
    tail = 0.5 * betainc(df / 2.0, 0.5, df / (df + t * t))
    return 1.0 - tail if t > 0 else tail


def t_quantile(p, df):
    """The p-quantile of Student's t with df degrees of freedom (bisection on t_cdf)."""
    if not 0.0 < p < 1.0:
        raise ValueError(f"t_quantile: p ({p}) must be in (0, 1)")
    if p < 0.5:
        return -t_quantile(1.0 - p, df)
    lo, hi = 0.0, 1.0
    while t_cdf(hi, df) < p:
        hi *= 2.0
    for _ in range(200):
        mid = 0.5 * (lo + hi)
        if t_cdf(mid, df) < p:
            lo = mid
        else:
            hi = mid
    return 0.5 * (lo + hi)


def paired(a, b, confidence=CONFIDENCE):
    """Per-seed differences a[s] - b[s] over the seeds both dicts hold, and their summary.

    Returns {"seeds", "diffs", "n", "mean", "sd", "se", "t", "lower", "upper", "wins"}; sd, se and
    the bounds are NaN with fewer than two seeds. NaN values (not recorded) are refused.
    """
    seeds = sorted(set(a) & set(b))
    for s in seeds:
        for name, d in (("first", a), ("second", b)):
            if not (d[s] == d[s]):
                raise ValueError(f"paired: the {name} arm's value for seed {s} is NaN")
    diffs = [a[s] - b[s] for s in seeds]
    n = len(diffs)
    out = {"seeds": seeds, "diffs": diffs, "n": n, "mean": float("nan"), "sd": float("nan"),
           "se": float("nan"), "t": float("nan"), "lower": float("nan"), "upper": float("nan"),
           "wins": sum(1 for d in diffs if d > 0)}
    if n == 0:
        return out
    mean = sum(diffs) / n
    out["mean"] = mean
    if n >= 2:
        sd = math.sqrt(sum((d - mean) ** 2 for d in diffs) / (n - 1))
        se = sd / math.sqrt(n)
        t = t_quantile(confidence, n - 1)
        out.update(sd=sd, se=se, t=t, lower=mean - t * se, upper=mean + t * se)
    return out


def verdict(main, selection, margin=MARGIN):
    """The pre-registered verdict from the paired summaries of GCPO - GRPO (`main`) and
    critical - random at weight 1 (`selection`): "reproduced", "refuted" or "inconclusive"
    (or "not enough seeds" when a bound is missing), with the reasons."""
    if main is None or selection is None or main["n"] < 2 or selection["n"] < 2:
        return "not enough seeds", ["each comparison needs at least two paired seeds"]
    reasons = []
    refuted = False
    if main["upper"] < 0:
        refuted = True
        reasons.append(f"GCPO - GRPO: upper bound {main['upper']:+.4f} < 0")
    if selection["mean"] <= 0:
        refuted = True
        reasons.append(f"critical - random: mean {selection['mean']:+.4f} <= 0")
    if refuted:
        return "refuted", reasons
    ok_main = main["lower"] > margin
    ok_sel = selection["lower"] > 0
    reasons.append(f"GCPO - GRPO: lower bound {main['lower']:+.5f} {'>' if ok_main else '<='} {margin}")
    reasons.append(f"critical - random: lower bound {selection['lower']:+.5f} {'>' if ok_sel else '<='} 0")
    return ("reproduced" if ok_main and ok_sel else "inconclusive"), reasons
