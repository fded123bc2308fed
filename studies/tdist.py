"""Student's t distribution and t-test power in pure Python (no scipy, no numpy).

- :func:`t_cdf`, :func:`t_sf`, :func:`t_pdf`: from the regularized incomplete beta function
  (continued fraction, modified Lentz). Accurate to ~1e-14 relative for the df that studies
  produce (1 to a few thousand); ``df = math.inf`` is the standard normal.
- :func:`t_ppf`: Newton's method on the upper tail, which is convex for t > 0, so started at the
  normal quantile (never above the t quantile) the iterates rise monotonically to the root.
- :func:`t_power` and :func:`ncp_for_power`: the power of a two-sided one-sample t test (the
  noncentral t distribution), by quadrature over the chi-square of the variance estimate. They
  answer "how large must an effect be, in standard errors, to be detected with 80% power".
"""

from __future__ import annotations

import math
from functools import lru_cache
from statistics import NormalDist

__all__ = ["ncp_for_power", "t_cdf", "t_pdf", "t_power", "t_ppf", "t_sf"]

_NORMAL = NormalDist()
_EPS = 1e-16
_TINY = 1e-300
_MAX_ITER = 100_000  # the continued fraction needs O(sqrt(df)) terms
_QUADRATURE_POINTS = 801


def _check_df(df: float) -> None:
    if not df > 0:  # also rejects NaN
        raise ValueError(f"degrees of freedom must be > 0, got {df}")


def _beta_cf(a: float, b: float, x: float) -> float:
    """Continued fraction of the incomplete beta function (modified Lentz)."""
    qab, qap, qam = a + b, a + 1.0, a - 1.0
    c = 1.0
    d = 1.0 - qab * x / qap
    d = 1.0 / (d if abs(d) > _TINY else _TINY)
    h = d
    for m in range(1, _MAX_ITER):
        m2 = 2 * m
        for aa in (m * (b - m) * x / ((qam + m2) * (a + m2)),
                   -(a + m) * (qab + m) * x / ((a + m2) * (qap + m2))):
            d = 1.0 + aa * d
            d = 1.0 / (d if abs(d) > _TINY else _TINY)
            c = 1.0 + aa / c
            c = c if abs(c) > _TINY else _TINY
            step = c * d
            h *= step
        if abs(step - 1.0) < _EPS:
            break
    return h


def _log_beta_half(a: float) -> float:
    """log B(a, 1/2) = lgamma(a) + lgamma(1/2) - lgamma(a + 1/2), accurate for large ``a`` too.

    The plain difference of lgammas loses ~a·1e-16 to cancellation (1e-11 at df = 1e5); for large
    ``a`` the ratio comes from Stirling's series instead.
    """
    if a < 50.0:
        return math.lgamma(a) + math.lgamma(0.5) - math.lgamma(a + 0.5)

    def series(x: float) -> float:  # lgamma(x) - ((x - 1/2)·log x - x + log(2π)/2)
        x2 = x * x
        return (1.0 / 12.0 - (1.0 / 360.0 - (1.0 / 1260.0 - 1.0 / (1680.0 * x2)) / x2) / x2) / x

    # lgamma(a + 1/2) - lgamma(a) = log(a)/2 + a·log1p(1/(2a)) - 1/2 + series(a+1/2) - series(a)
    ratio = (0.5 * math.log(a) + (a * math.log1p(0.5 / a) - 0.5)
             + series(a + 0.5) - series(a))
    return math.lgamma(0.5) - ratio


def _tail(t: float, df: float) -> float:
    """P(T > t) for t >= 0: I_x(df/2, 1/2) / 2 with x = df / (df + t²)."""
    a, b = 0.5 * df, 0.5
    r = t * t / df
    # x = 1/(1+r) and y = 1 - x = r/(1+r), and their logs, each without cancellation.
    x, y = 1.0 / (1.0 + r), r / (1.0 + r)
    if y <= 0.0:
        return 0.5
    log_x, log_y = -math.log1p(r), math.log(r) - math.log1p(r)
    log_front = a * log_x + b * log_y - _log_beta_half(a)
    if x < (a + 1.0) / (a + b + 2.0):
        return 0.5 * math.exp(log_front) * _beta_cf(a, b, x) / a
    # The fraction converges fast only on this side: use I_x(a,b) = 1 - I_y(b,a).
    return 0.5 * (1.0 - math.exp(log_front) * _beta_cf(b, a, y) / b)


def t_pdf(x: float, df: float) -> float:
    """Density of Student's t with ``df`` degrees of freedom at ``x``."""
    _check_df(df)
    if math.isinf(df):
        return _NORMAL.pdf(x)
    log_c = -_log_beta_half(0.5 * df) - 0.5 * math.log(df)
    return math.exp(log_c - 0.5 * (df + 1.0) * math.log1p(x * x / df))


def t_sf(x: float, df: float) -> float:
    """Upper tail P(T > x); accurate in relative terms far into the tail."""
    _check_df(df)
    if math.isnan(x):
        return math.nan
    if math.isinf(df):
        return _NORMAL.cdf(-x)
    if math.isinf(x):
        return 0.0 if x > 0 else 1.0
    return _tail(x, df) if x >= 0 else 1.0 - _tail(-x, df)


def t_cdf(x: float, df: float) -> float:
    """P(T <= x) for Student's t with ``df`` (> 0, may be fractional or ``math.inf``)."""
    return t_sf(-x, df)


def _tail_quantile(p: float, df: float) -> float:
    """The t > 0 with P(T > t) = p, for 0 < p <= 0.5."""
    t = -_NORMAL.inv_cdf(p)  # the t quantile is never below the normal one: start below the root
    previous = math.inf
    for _ in range(500):
        step = (_tail(t, df) - p) / t_pdf(t, df)  # f(t) = tail - p is convex and decreasing
        # Near the root the steps shrink quadratically; once they stop shrinking, what is left is
        # rounding noise. (Far from it, in heavy tails, the steps grow: t roughly doubles.)
        if abs(step) >= previous and previous < 1e-6 * t:
            break
        t += step
        previous = abs(step)
        if step <= 4 * _EPS * t:
            break
    return t


def t_ppf(q: float, df: float) -> float:
    """Quantile: the x with P(T <= x) = q. ``q`` 0 and 1 give -inf and inf."""
    _check_df(df)
    if not 0.0 <= q <= 1.0:
        raise ValueError(f"probability must be in [0, 1], got {q}")
    if q in (0.0, 1.0):
        return math.copysign(math.inf, q - 0.5)
    if math.isinf(df):
        return _NORMAL.inv_cdf(q)
    if q == 0.5:
        return 0.0
    # 1 - q is exact for q >= 0.5 (Sterbenz), so the small tail keeps its relative precision.
    return _tail_quantile(1.0 - q, df) if q > 0.5 else -_tail_quantile(q, df)


def _chi2_nodes(df: float) -> list[tuple[float, float]]:
    """Quadrature nodes (sqrt(V/df), weight) for V ~ chi-square(df), over u = log(V/df).

    In u the density is smooth and bell-shaped, so the trapezoid rule converges fast; it is
    proportional to exp(-df/2 · (e^u - 1 - u)), written so that nothing cancels at large df, and
    the weights are normalized to sum to 1.
    """
    lo = math.log(max(1.0 - 12.0 * math.sqrt(2.0 / df), 2.0 * math.exp(-70.0 / df) / df))
    hi = math.log(1.0 + 12.0 * math.sqrt(2.0 / df) + 40.0 / df)
    h = (hi - lo) / (_QUADRATURE_POINTS - 1)
    us = [lo + i * h for i in range(_QUADRATURE_POINTS)]
    weights = [math.exp(-0.5 * df * (math.expm1(u) - u)) for u in us]
    total = math.fsum(weights)
    return [(math.exp(0.5 * u), w / total) for u, w in zip(us, weights, strict=True)]


def t_power(ncp: float, df: float, alpha: float = 0.05) -> float:
    """Power of the two-sided level-``alpha`` t test for a true effect of ``ncp`` standard errors.

    That is P(|T'| > t_{df, 1-alpha/2}) for T' noncentral t with noncentrality ``ncp``.
    """
    _check_df(df)
    if math.isinf(df) or df > 1e7:
        z = _NORMAL.inv_cdf(1.0 - alpha / 2.0)
        return _NORMAL.cdf(ncp - z) + _NORMAL.cdf(-ncp - z)
    crit = t_ppf(1.0 - alpha / 2.0, df)
    total = 0.0
    for w, weight in _chi2_nodes(df):
        # Given the variance estimate (w = s/sigma), T' > c  <=>  Z > c·w - ncp.
        total += weight * (_NORMAL.cdf(ncp - crit * w) + _NORMAL.cdf(-ncp - crit * w))
    return total


@lru_cache(maxsize=1024)
def ncp_for_power(df: float, alpha: float = 0.05, power: float = 0.8) -> float:
    """How many standard errors an effect must be for the two-sided t test to detect it with
    probability ``power``: the smallest detectable effect is this times the standard error."""
    if not 0.0 < alpha < 1.0 or not alpha / 2.0 < power < 1.0:
        raise ValueError(f"need 0 < alpha < 1 and alpha/2 < power < 1, got {alpha}, {power}")
    lo, hi = 0.0, 1.0
    while t_power(hi, df, alpha) < power:
        lo, hi = hi, 2.0 * hi
    # Illinois (regula falsi) on a monotone function: a few dozen evaluations at most.
    f_lo, f_hi = t_power(lo, df, alpha) - power, t_power(hi, df, alpha) - power
    side = 0
    for _ in range(200):
        mid = hi - f_hi * (hi - lo) / (f_hi - f_lo)
        f_mid = t_power(mid, df, alpha) - power
        if abs(f_mid) < 1e-13 or hi - lo < 1e-12 * hi:
            return mid
        if (f_mid < 0) == (f_lo < 0):
            lo, f_lo = mid, f_mid
            f_hi = f_hi / 2.0 if side == -1 else f_hi
            side = -1
        else:
            hi, f_hi = mid, f_mid
            f_lo = f_lo / 2.0 if side == 1 else f_lo
            side = 1
    return mid
