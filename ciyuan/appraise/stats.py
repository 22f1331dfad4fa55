"""Small statistics shared by the utility measures: a mean with a Student-t confidence interval.

Why our own: the few t quantiles we need are a table, which keeps scipy out of the core install.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

# two-sided 95 % Student-t quantiles t_{0.975, df}, df = 1..30; above 30 the normal 1.96 is used
_T975 = [
    12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228,
    2.201, 2.179, 2.160, 2.145, 2.131, 2.120, 2.110, 2.101, 2.093, 2.086,
    2.080, 2.074, 2.069, 2.064, 2.060, 2.056, 2.052, 2.048, 2.045, 2.042,
]  # fmt: skip


def t975(df: int) -> float:
    """The 97.5 % quantile of Student's t with ``df`` degrees of freedom."""
    if df < 1:
        return math.inf
    return _T975[df - 1] if df <= 30 else 1.96


def mean_ci(xs: Sequence[float]) -> dict:
    """Mean and 95 % interval ``mean ± t * sd / sqrt(n)``; one sample gives an infinite interval."""
    n = len(xs)
    if n == 0:
        return {"mean": None, "low": None, "high": None, "n": 0, "sd": None}
    m = sum(xs) / n
    if n == 1:
        return {"mean": m, "low": None, "high": None, "n": 1, "sd": None}
    sd = math.sqrt(sum((x - m) ** 2 for x in xs) / (n - 1))
    half = t975(n - 1) * sd / math.sqrt(n)
    return {"mean": m, "low": m - half, "high": m + half, "n": n, "sd": sd}
