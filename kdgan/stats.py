"""Paired comparisons over seeds: a Student t interval on per-seed differences, and its verdict.

Two configurations run on the same seeds (common random numbers) give per-seed differences
d_i = a_i - b_i. Their mean, with the interval

    mean(d) +- t_{(1 + level) / 2, n - 1} * sd(d) / sqrt(n)        (sd with n - 1)

is the usual paired t-interval: it assumes the differences are independent draws from one
normal distribution. The t quantile is computed exactly for integer degrees of freedom (the
closed form of Abramowitz & Stegun 26.7.3-4, inverted by bisection); no scipy. Imports
neither torch nor pandas.
"""

from __future__ import annotations

import math
from typing import Sequence

BETTER, SAME, WORSE = "better than", "not distinguishable from", "worse than"
TOO_FEW = "too few seeds to tell"


def t_two_sided(t: float, df: int) -> float:
    """P(|T| <= t) for Student's T with `df` degrees of freedom (A&S 26.7.3 odd, 26.7.4 even).

    With theta = atan(t / sqrt(df)): for odd df, (2/pi) (theta + sin theta (c + 2/3 c^3 + ...
    + [2 4 ... (df-3)] / [1 3 ... (df-2)] c^(df-2))), c = cos theta; for even df,
    sin theta (1 + 1/2 c^2 + ... + [1 3 ... (df-3)] / [2 4 ... (df-2)] c^(df-2))."""
    if df < 1 or int(df) != df:
        raise ValueError(f"df={df}: expected an integer >= 1")
    theta = math.atan(abs(t) / math.sqrt(df))
    c, s = math.cos(theta), math.sin(theta)
    if df % 2:
        term, total = c, 0.0
        if df > 1:
            total = c
            for k in range(3, df - 1, 2):  # term k multiplies the previous by (k - 1) / k c^2
                term *= (k - 1) / k * c * c
                total += term
        return 2 / math.pi * (theta + s * total)
    term, total = 1.0, 1.0
    for k in range(2, df - 1, 2):  # term k multiplies the previous by (k - 1) / k c^2
        term *= (k - 1) / k * c * c
        total += term
    return s * total


def t_quantile(q: float, df: int) -> float:
    """The q-quantile of Student's t with `df` (integer) degrees of freedom, e.g.
    t_quantile(0.975, 10) = 2.228; exact to about 1e-12 (bisection on theta in (0, pi/2))."""
    if not 0.0 < q < 1.0:
        raise ValueError(f"q={q}: expected a probability in (0, 1)")
    if q == 0.5:
        return 0.0
    target = abs(2 * q - 1)  # P(|T| <= t) of the quantile's absolute value
    lo, hi = 0.0, math.pi / 2
    for _ in range(200):
        mid = (lo + hi) / 2
        if t_two_sided(math.sqrt(df) * math.tan(mid), df) < target:
            lo = mid
        else:
            hi = mid
        if hi - lo < 1e-15:
            break
    t = math.sqrt(df) * math.tan((lo + hi) / 2)
    return t if q > 0.5 else -t


def paired_interval(a: Sequence[float], b: Sequence[float],
                    level: float = 0.95) -> tuple[float, float, float, int]:
    """(mean of a_i - b_i, low, high, n): the paired t-interval at `level` over the n pairs
    where both values are finite (a pair with a NaN, e.g. a run that diverged, is left out).
    With n < 2 the interval is (nan, nan); with n = 0 the mean too."""
    if len(a) != len(b):
        raise ValueError(f"paired values: {len(a)} against {len(b)}; expected one per seed each")
    if not 0.0 < level < 1.0:
        raise ValueError(f"level={level}: expected a value in (0, 1)")
    pairs = [(float(x), float(y)) for x, y in zip(a, b)]
    d = [x - y for x, y in pairs if math.isfinite(x) and math.isfinite(y)]
    n = len(d)
    if n == 0:
        return math.nan, math.nan, math.nan, 0
    mean = sum(d) / n
    if n < 2:
        return mean, math.nan, math.nan, n
    sd = math.sqrt(sum((x - mean) ** 2 for x in d) / (n - 1))
    half = t_quantile((1 + level) / 2, n - 1) * sd / math.sqrt(n)
    return mean, mean - half, mean + half, n


def verdict(low: float, high: float, reference: str = "the defaults") -> str:
    """'better than <reference>' (the interval above 0), 'worse than <reference>' (below 0),
    'not distinguishable from <reference>' (it holds 0, ends included), or 'too few seeds to
    tell' (no interval)."""
    if not (math.isfinite(low) and math.isfinite(high)):
        return TOO_FEW
    if low > 0:
        return f"{BETTER} {reference}"
    if high < 0:
        return f"{WORSE} {reference}"
    return f"{SAME} {reference}"
