"""kdgan.stats: t quantiles and paired intervals against reference values, verdicts."""

from __future__ import annotations

import math
import subprocess
import sys
from pathlib import Path

import pytest

from kdgan import stats


# ---------------------------------------------------------------------------- kdgan.stats
@pytest.mark.parametrize("df, t", [(1, 12.706), (2, 4.303), (5, 2.571), (10, 2.228), (30, 2.042)])
def test_t_quantiles_match_the_table(df, t):
    assert stats.t_quantile(0.975, df) == pytest.approx(t, abs=5e-4)
    assert stats.t_quantile(0.025, df) == pytest.approx(-t, abs=5e-4)


def test_t_quantiles_match_the_closed_forms_and_other_levels():
    for q in (0.6, 0.9, 0.975, 0.995):
        assert stats.t_quantile(q, 1) == pytest.approx(math.tan(math.pi * (q - 0.5)), rel=1e-10)
        assert stats.t_quantile(q, 2) == pytest.approx((2 * q - 1) / math.sqrt(2 * q * (1 - q)), rel=1e-10)
    assert stats.t_quantile(0.995, 5) == pytest.approx(4.032, abs=5e-4)
    assert stats.t_quantile(0.95, 30) == pytest.approx(1.697, abs=5e-4)
    assert stats.t_quantile(0.975, 2000) == pytest.approx(1.961, abs=5e-4)  # towards 1.960
    assert stats.t_quantile(0.5, 7) == 0.0
    for bad in ((1.0, 3), (0.0, 3), (0.9, 0), (0.9, 2.5)):
        with pytest.raises(ValueError):
            stats.t_quantile(*bad)


def test_paired_interval_by_hand():
    # differences 2, 3, 1, 4: mean 2.5, sd sqrt(5/3); t(0.975, 3) = 3.182446
    half = 3.182446 * math.sqrt(5 / 3) / 2
    mean, low, high, n = stats.paired_interval([3, 5, 4, 6], [1, 2, 3, 2])
    assert (mean, n) == (2.5, 4)
    assert (low, high) == (pytest.approx(2.5 - half, abs=1e-6), pytest.approx(2.5 + half, abs=1e-6))
    # a pair with a NaN (a diverged run) is left out; one pair gives a mean, no interval
    assert stats.paired_interval([3, math.nan, 4, 6], [1, 2, math.nan, 2])[::3] == (3.0, 2)
    mean, low, high, n = stats.paired_interval([1.0], [0.5])
    assert (mean, n) == (0.5, 1) and math.isnan(low) and math.isnan(high)
    assert stats.paired_interval([], [])[3] == 0
    with pytest.raises(ValueError):
        stats.paired_interval([1, 2], [1])


def test_verdicts():
    assert stats.verdict(0.1, 0.5) == "better than the defaults"
    assert stats.verdict(-0.5, -0.1) == "worse than the defaults"
    assert stats.verdict(-0.1, 0.2) == "not distinguishable from the defaults"
    assert stats.verdict(0.0, 0.3) == "not distinguishable from the defaults"  # ends included
    assert stats.verdict(math.nan, math.nan) == "too few seeds to tell"
    assert stats.verdict(0.1, 0.5, reference="supervised") == "better than supervised"


def test_stats_needs_neither_torch_nor_pandas():
    code = "import sys, kdgan.stats; print(sorted({'torch', 'pandas', 'numpy'} & set(sys.modules)))"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                          cwd=Path(stats.__file__).parent.parent)
    assert done.stdout.strip() == "[]"
