"""studies.tdist, studies.confidence and studies.noisyfront against scipy, brute force and
analytic results."""

from __future__ import annotations

import itertools
import json
import math
import random
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from scipy import stats

from studies.confidence import ConfigEstimate, Estimate, NoiseModel, Replicate, estimate, pooled_sd
from studies.noisyfront import _hypervolume_rows, front_mask, noisy_front, pareto_mask
from studies.pareto import hypervolume_2d, pareto_indices
from studies.tdist import ncp_for_power, t_cdf, t_pdf, t_power, t_ppf, t_sf

QS = [0.5, 0.5001, 0.51, 0.55, 0.6, 0.7, 0.75, 0.8, 0.9, 0.95, 0.975, 0.99, 0.995, 0.999, 0.9999]


# --- the t distribution --------------------------------------------------------------------------

@pytest.mark.parametrize("df", [*range(1, 201), 0.5, 1.5, 2.5, 7.25, 500, 1000, 10_000, 100_000])
def test_t_ppf_and_cdf_match_scipy(df: float) -> None:
    for q in QS:
        expected = stats.t.ppf(q, df)
        got = t_ppf(q, df)
        assert got == pytest.approx(expected, rel=1e-8, abs=1e-12), (df, q)
        assert t_ppf(1.0 - q, df) == pytest.approx(-expected, rel=1e-8, abs=1e-12), (df, q)
    for x in [0.0, 0.1, 0.5, 1.0, 2.0, 3.5, 8.0, 30.0]:
        for value in (x, -x):
            assert t_cdf(value, df) == pytest.approx(stats.t.cdf(value, df), rel=1e-8), (df, value)
            assert t_sf(value, df) == pytest.approx(stats.t.sf(value, df), rel=1e-8), (df, value)
        assert t_pdf(x, df) == pytest.approx(stats.t.pdf(x, df), rel=1e-10), (df, x)


def test_t_extremes_and_normal_limit() -> None:
    assert t_ppf(1e-12, 3) == pytest.approx(stats.t.ppf(1e-12, 3), rel=1e-8)
    assert t_sf(50.0, 2) == pytest.approx(stats.t.sf(50.0, 2), rel=1e-8)  # a far tail, relative
    assert t_ppf(0.975, math.inf) == pytest.approx(stats.norm.ppf(0.975), rel=1e-12)
    assert t_cdf(1.3, math.inf) == pytest.approx(stats.norm.cdf(1.3), rel=1e-12)
    assert t_ppf(0.0, 4) == -math.inf and t_ppf(1.0, 4) == math.inf
    assert t_cdf(math.inf, 4) == 1.0 and t_cdf(-math.inf, 4) == 0.0
    with pytest.raises(ValueError):
        t_ppf(1.5, 3)
    with pytest.raises(ValueError):
        t_cdf(0.0, 0)


def test_t_ppf_near_the_median_against_the_cauchy_closed_form() -> None:
    # scipy itself is off by ~1e-10 here; df = 1 has an exact form: tan(pi (q - 1/2)).
    for q in [0.5 + 1e-9, 0.5 + 1e-7, 0.5 + 1e-4]:
        assert t_ppf(q, 1) == pytest.approx(math.tan(math.pi * (q - 0.5)), rel=1e-8)


@pytest.mark.parametrize("df", [1, 2, 3, 5, 9, 20, 60, 250, 5000])
def test_power_matches_scipy_noncentral_t(df: int) -> None:
    crit = stats.t.ppf(0.975, df)
    for ncp in [0.0, 0.5, 1.5, 3.0, 6.0]:
        expected = stats.nct.sf(crit, df, ncp) + stats.nct.cdf(-crit, df, ncp)
        assert t_power(ncp, df) == pytest.approx(expected, abs=1e-9)
    ncp = ncp_for_power(df, 0.05, 0.8)
    assert stats.nct.sf(crit, df, ncp) + stats.nct.cdf(-crit, df, ncp) == pytest.approx(0.8,
                                                                                         abs=1e-8)


# --- estimates -----------------------------------------------------------------------------------

def _replicates(rng: random.Random, configs: int, sizes: tuple[int, ...]) -> list[Replicate]:
    out = []
    trial = 0
    for c in range(configs):
        acc, thr = rng.uniform(0.7, 0.95), rng.uniform(200, 5000)
        for r in range(rng.choice(sizes)):
            out.append(Replicate(f"c{c:02d}", r, acc + rng.gauss(0, 0.03),
                                 thr * math.exp(rng.gauss(0, 0.2)), trial))
            trial += 1
    return out


def test_estimate_equals_a_pooled_t_computation_with_scipy() -> None:
    reps = _replicates(random.Random(3), 12, (1, 2, 3, 4))
    noise, ests = estimate(reps, confidence=0.9)
    by: dict[str, list[Replicate]] = {}
    for r in reps:
        by.setdefault(r.config, []).append(r)
    acc = {c: np.array([r.accuracy for r in v]) for c, v in by.items()}
    logt = {c: np.log([r.throughput for r in v]) for c, v in by.items()}
    df = sum(len(v) - 1 for v in acc.values())
    s_acc = math.sqrt(sum(((v - v.mean()) ** 2).sum() for v in acc.values()) / df)
    s_log = math.sqrt(sum(((v - v.mean()) ** 2).sum() for v in logt.values()) / df)
    q = stats.t.ppf(0.95, df)
    assert (noise.df, noise.source, noise.known) == (df, "pooled", True)
    assert noise.accuracy_sd == pytest.approx(s_acc, rel=1e-12)
    assert noise.log_throughput_sd == pytest.approx(s_log, rel=1e-12)
    assert [e.config for e in ests] == sorted(by)
    for e in ests:
        n = len(acc[e.config])
        se_a, se_t = s_acc / math.sqrt(n), s_log / math.sqrt(n)
        mean_a, mean_t = acc[e.config].mean(), logt[e.config].mean()
        assert e.n == e.accuracy.n == e.throughput.n == n
        assert e.trials == tuple(r.trial for r in by[e.config])
        assert (e.accuracy.mean, e.accuracy.se) == pytest.approx((mean_a, se_a), rel=1e-12)
        assert (e.accuracy.low, e.accuracy.high) == pytest.approx(
            (mean_a - q * se_a, mean_a + q * se_a), rel=1e-10)
        # Throughput: geometric mean, se of the mean log, interval the exp of a log interval.
        assert e.throughput.mean == pytest.approx(stats.gmean([r.throughput for r in by[e.config]]),
                                                  rel=1e-12)
        assert e.throughput.se == pytest.approx(se_t, rel=1e-12)
        assert (e.throughput.low, e.throughput.high) == pytest.approx(
            (math.exp(mean_t - q * se_t), math.exp(mean_t + q * se_t)), rel=1e-10)


def test_pooled_sd_of_equal_sized_samples_is_the_root_mean_variance() -> None:
    samples = [[1.0, 2.0, 4.0], [3.0, 3.5, 2.0], [7.0]]
    sd, df = pooled_sd(samples)
    assert df == 4
    assert sd == pytest.approx(math.sqrt(np.mean([np.var(s, ddof=1) for s in samples[:2]])))
    assert pooled_sd([[1.0], [2.0]]) == (None, 0)


def test_one_replicate_each_means_unknown_noise() -> None:
    reps = [Replicate(f"c{i}", 0, 0.8 + 0.01 * i, 1000.0 - 10 * i, i) for i in range(5)]
    noise, ests = estimate(reps)
    assert (noise.known, noise.df, noise.source, noise.multiplier) == (False, 0, "unknown", None)
    for e in ests:
        for est in (e.accuracy, e.throughput):
            assert (est.se, est.low, est.high) == (None, None, None)
    front = noisy_front(reps)
    assert not front.noise.known and front.draws == 0 and front.dominated == []
    observed = pareto_indices([(r.accuracy, r.throughput) for r in reps])
    assert front.probability == {f"c{i}": 1.0 if i in observed else 0.0 for i in range(5)}
    assert front.hypervolume_low is None and front.hypervolume_high is None
    assert front.hypervolume == pytest.approx(
        hypervolume_2d([(reps[i].accuracy, reps[i].throughput) for i in observed]))


def test_prior_sd_is_used_only_while_the_replicates_give_no_noise_figure() -> None:
    single = [Replicate("a", 0, 0.8, 1000.0, 0), Replicate("b", 0, 0.7, 2000.0, 1)]
    noise, ests = estimate(single, prior_sd=(0.03, 0.2))
    z = stats.norm.ppf(0.975)
    assert (noise.source, noise.known, noise.df) == ("prior", True, 0)
    assert ests[0].accuracy.low == pytest.approx(0.8 - z * 0.03)
    assert ests[0].throughput.high == pytest.approx(1000.0 * math.exp(z * 0.2))
    pooled = [*single, Replicate("a", 1, 0.82, 1100.0, 2)]
    noise, _ = estimate(pooled, prior_sd=(0.03, 0.2))
    assert noise.source == "pooled" and noise.df == 1
    assert noise.accuracy_sd == pytest.approx(np.std([0.8, 0.82], ddof=1))


def test_bad_replicates_are_refused() -> None:
    with pytest.raises(ValueError):
        Replicate("a", 0, 0.8, 0.0, 0)
    with pytest.raises(ValueError):
        Replicate("a", -1, 0.8, 10.0, 0)
    with pytest.raises(ValueError):
        Replicate("a", 0, math.nan, 10.0, 0)
    with pytest.raises(ValueError, match="same index"):
        estimate([Replicate("a", 0, 0.8, 10.0, 0), Replicate("a", 0, 0.7, 10.0, 1)])
    with pytest.raises(ValueError):
        estimate([], confidence=1.0)
    with pytest.raises(ValueError):
        noisy_front([], draws=0)


def test_input_order_does_not_matter() -> None:
    reps = _replicates(random.Random(8), 10, (1, 2, 3))
    shuffled = list(reps)
    random.Random(1).shuffle(shuffled)
    assert estimate(reps) == estimate(shuffled)
    assert noisy_front(reps, seed=4).probability == noisy_front(shuffled, seed=4).probability


def test_results_are_json_ready() -> None:
    front = noisy_front(_replicates(random.Random(2), 6, (2, 3)), draws=500)
    data = json.loads(json.dumps(front.to_dict()))
    assert data["noise"]["known"] is True
    assert set(data["probability"]) == {e.config for e in front.estimates}
    assert data["estimates"][0]["accuracy"]["low"] < data["estimates"][0]["accuracy"]["high"]
    assert isinstance(front.estimates[0], ConfigEstimate)
    assert isinstance(front.estimates[0].accuracy, Estimate)
    assert isinstance(front.noise, NoiseModel)


# --- the vectorized Pareto check and hypervolume --------------------------------------------------

def test_pareto_mask_equals_pareto_indices_with_ties() -> None:
    rng = np.random.default_rng(0)
    for _ in range(3000):
        k = int(rng.integers(0, 12))
        levels = int(rng.integers(1, 5))  # few distinct values: many ties and equal points
        a = rng.integers(0, levels, k).astype(float)
        b = rng.integers(0, levels, k).astype(float)
        assert list(np.flatnonzero(pareto_mask(a, b))) == pareto_indices(list(zip(a, b,
                                                                                  strict=True)))


def test_pareto_mask_works_row_by_row() -> None:
    rng = np.random.default_rng(1)
    a, b = rng.integers(0, 6, (50, 9)).astype(float), rng.normal(size=(50, 9)).round(1)
    mask = pareto_mask(a, b)
    for row in range(50):
        expected = pareto_indices(list(zip(a[row], b[row], strict=True)))
        assert list(np.flatnonzero(mask[row])) == expected


def _tolerant_front(points: list[tuple[float, float]], tolerance: float) -> set[int]:
    """The rule of front_mask by its definition, point by point: i stays when no other point
    that stays is at least as fast and at most ``tolerance`` less accurate (faster first)."""
    order = sorted(range(len(points)), key=lambda i: (-points[i][1], -points[i][0]))
    kept: list[int] = []
    for i in order:
        if all(points[i][0] > points[j][0] + tolerance for j in kept):
            kept.append(i)
    return set(kept)


def test_front_mask_with_a_tolerance_follows_its_definition() -> None:
    rng = np.random.default_rng(5)
    for _ in range(2000):
        k = int(rng.integers(1, 10))
        a, b = rng.normal(0.9, 0.02, k), rng.normal(7.0, 1.0, k)
        tolerance = float(rng.choice([0.001, 0.005, 0.02]))
        mask = front_mask(a, b, tolerance)
        points = list(zip(a, b, strict=True))
        assert set(np.flatnonzero(mask)) == _tolerant_front(points, tolerance)
        kept = [points[i] for i in np.flatnonzero(mask)]
        for i in np.flatnonzero(~mask):  # a dropped point: a member is faster and close enough
            assert any(q[1] >= points[i][1] and q[0] >= points[i][0] - tolerance for q in kept)
        for p in kept:  # members: none faster is within the tolerance of it
            assert not any(q[1] > p[1] and q[0] >= p[0] - tolerance for q in kept)
        assert set(np.flatnonzero(mask)) <= set(pareto_indices(points))  # a subset of Pareto's


def test_front_mask_without_tolerance_is_the_pareto_mask_and_rows_are_independent() -> None:
    rng = np.random.default_rng(6)
    a, b = rng.integers(0, 6, (40, 8)).astype(float), rng.normal(size=(40, 8)).round(1)
    assert (front_mask(a, b, 0.0) == pareto_mask(a, b)).all()
    a = rng.normal(0.9, 0.02, (40, 8))
    mask = front_mask(a, b, 0.01)
    for row in range(40):
        assert set(np.flatnonzero(mask[row])) == _tolerant_front(
            list(zip(a[row], b[row], strict=True)), 0.01)
    with pytest.raises(ValueError, match="tolerance"):
        front_mask(a, b, -0.01)
    with pytest.raises(ValueError, match="tolerance"):
        front_mask(a, b, math.nan)


def test_a_chain_of_small_steps_keeps_the_clearly_better_end() -> None:
    # A 94 (fastest), B 94.8, C 95.6 (slowest), one point of tolerance: B is within a point of
    # A and goes; C is 1.6 points above A, the only faster member left, and stays.
    a = np.array([0.940, 0.948, 0.956])
    b = np.log([3000.0, 2000.0, 1000.0])
    assert list(front_mask(a, b, 0.01)) == [True, False, True]


def test_ties_go_to_the_faster_design_under_a_tolerance() -> None:
    # Ten configurations whose true accuracies tie; throughput from 10x down to 1x. Without a
    # tolerance the slowest keeps P(front) near 1/10 however many runs it gets; with half a
    # point it is confidently dominated, and the fastest stays confidently on the front.
    # Every configuration gets the same eight deviations: equal means, a pooled sd of 0.3
    # points (se 0.1 per configuration), as if the truth tied exactly.
    dev = [0.003, -0.003, 0.002, -0.002, 0.004, -0.004, 0.0, 0.0]
    reps = [Replicate(f"c{c}", r, 0.94 + d, 1000.0 * (10 - c) * math.exp(d), 10 * c + r)
            for c in range(10) for r, d in enumerate(dev)]
    strict = noisy_front(reps, draws=4000, seed=1)
    tolerant = noisy_front(reps, draws=4000, seed=1, tolerance=0.005)
    assert strict.probability["c9"] == pytest.approx(0.1, abs=0.03)
    assert "c9" not in strict.dominated
    assert "c9" in tolerant.dominated and tolerant.probability["c0"] >= 0.95
    assert set(tolerant.dominated) > set(strict.dominated)
    assert tolerant.tolerance == 0.005 and tolerant.to_dict()["tolerance"] == 0.005
    # With the noise unknown (one run each) the observed front follows the same rule.
    first = [r for r in reps if r.index == 0]
    observed = noisy_front(first, tolerance=0.005)
    points = [(e.accuracy.mean, math.log(e.throughput.mean)) for e in observed.estimates]
    expected = {observed.estimates[i].config for i in _tolerant_front(points, 0.005)}
    assert {c for c, p in observed.probability.items() if p == 1.0} == expected


def test_vectorized_hypervolume_equals_hypervolume_2d() -> None:
    rng = np.random.default_rng(2)
    a, b = rng.uniform(-0.2, 1.0, (200, 7)), rng.uniform(-50.0, 500.0, (200, 7))
    a[:, 0] = a[:, 1]  # ties in the first objective
    areas = _hypervolume_rows(a, b, (0.0, 0.0))
    for row in range(200):
        points = list(zip(a[row], b[row], strict=True))
        assert areas[row] == pytest.approx(hypervolume_2d(points, (0.0, 0.0)), rel=1e-12, abs=1e-12)


# --- P(Pareto-optimal) ---------------------------------------------------------------------------

def _two_configs(n_a: int, n_b: int) -> list[Replicate]:
    rng = random.Random(11)
    reps = [Replicate("a", r, 0.85 + rng.gauss(0, 0.03), 1000 * math.exp(rng.gauss(0, 0.2)), r)
            for r in range(n_a)]
    reps += [Replicate("b", r, 0.87 + rng.gauss(0, 0.03), 1100 * math.exp(rng.gauss(0, 0.2)),
                       10 + r) for r in range(n_b)]
    return reps


def test_two_configurations_with_a_known_sigma_match_the_normal_probability() -> None:
    reps = [Replicate("a", 0, 0.85, 1000.0, 0), Replicate("b", 0, 0.87, 1100.0, 1)]
    front = noisy_front(reps, draws=40_000, seed=3, prior_sd=(0.03, 0.2))
    # b dominates a with probability P(b_acc > a_acc) P(b_log > a_log), independent normals.
    p_acc = stats.norm.cdf(0.02 / (0.03 * math.sqrt(2)))
    p_thr = stats.norm.cdf(math.log(1.1) / (0.2 * math.sqrt(2)))
    mc = 4 * math.sqrt(0.25 / 40_000)
    assert front.probability["a"] == pytest.approx(1 - p_acc * p_thr, abs=mc)
    assert front.probability["b"] == pytest.approx(1 - (1 - p_acc) * (1 - p_thr), abs=mc)


def test_two_configurations_with_a_pooled_sigma_match_the_t_probability() -> None:
    # With sigma drawn from its posterior, each true difference is mean + se·t_df: the two
    # objectives' sigmas are drawn independently, so the events stay independent.
    reps = _two_configs(3, 2)
    noise, (a, b) = estimate(reps)
    assert noise.accuracy_sd is not None and noise.log_throughput_sd is not None
    scale = math.sqrt(1 / a.n + 1 / b.n)
    p_acc = stats.t.cdf((b.accuracy.mean - a.accuracy.mean) / (noise.accuracy_sd * scale),
                        noise.df)
    p_thr = stats.t.cdf(math.log(b.throughput.mean / a.throughput.mean)
                        / (noise.log_throughput_sd * scale), noise.df)
    front = noisy_front(reps, draws=40_000, seed=5)
    mc = 4 * math.sqrt(0.25 / 40_000)
    assert front.probability["a"] == pytest.approx(1 - p_acc * p_thr, abs=mc)
    assert front.probability["b"] == pytest.approx(1 - (1 - p_acc) * (1 - p_thr), abs=mc)


def test_three_configurations_match_numerical_integration() -> None:
    # P(i optimal) = ∫∫ f_i(x, y) Π_{j≠i} (1 - P(X_j > x) P(Y_j > y)) dx dy, known sigma.
    means = [(0.85, math.log(1000.0)), (0.87, math.log(900.0)), (0.86, math.log(1050.0))]
    sd_a, sd_t = 0.02, 0.1
    reps = [Replicate(f"c{i}", 0, m[0], math.exp(m[1]), i) for i, m in enumerate(means)]
    front = noisy_front(reps, draws=40_000, seed=9, prior_sd=(sd_a, sd_t), pooling="none")
    x = np.linspace(0.70, 1.02, 801)
    y = np.linspace(math.log(1000.0) - 1.2, math.log(1000.0) + 1.2, 801)
    for i, (mx, my) in enumerate(means):
        fx, fy = stats.norm.pdf(x, mx, sd_a), stats.norm.pdf(y, my, sd_t)
        inner = np.ones((x.size, y.size))
        for j, (nx, ny) in enumerate(means):
            if j != i:
                inner *= 1 - np.outer(stats.norm.sf(x, nx, sd_a), stats.norm.sf(y, ny, sd_t))
        expected = np.trapezoid(np.trapezoid(inner * fy, y, axis=1) * fx, x)
        assert front.probability[f"c{i}"] == pytest.approx(expected, abs=0.01)


def _hierarchical_posterior(means: np.ndarray, sd: float, tau_top: float, rng: np.random.Generator,
                            draws: int) -> np.ndarray:
    """Brute force for one objective, one replicate each, known sd: p(tau | means) on a fine grid
    from the marginal likelihood N(means; mu·1, tau²·I + sd²·I) with mu integrated out (by its
    flat prior), then theta | tau from the joint Gaussian posterior written as a matrix."""
    k = len(means)
    taus = np.linspace(0.0, tau_top, 2001)[1:]
    logp = []
    for tau in taus:
        cov = (tau ** 2 + sd ** 2) * np.eye(k)
        inv = np.linalg.inv(cov)
        ones = np.ones(k)
        a = ones @ inv @ ones
        mu = ones @ inv @ means / a
        r = means - mu
        logp.append(-0.5 * np.linalg.slogdet(cov)[1] - 0.5 * r @ inv @ r - 0.5 * math.log(a))
    p = np.exp(np.array(logp) - max(logp))
    chosen = rng.choice(taus, size=draws, p=p / p.sum())
    out = np.empty((draws, k))
    for tau in np.unique(chosen):
        rows = np.flatnonzero(chosen == tau)
        # theta and mu jointly Gaussian: prior precision of theta given mu is I/tau², mu flat.
        # Posterior precision of (theta, mu): [[I/tau² + I/sd², -1/tau²], [-1ᵀ/tau², k/tau²]].
        prec = np.zeros((k + 1, k + 1))
        prec[:k, :k] = np.eye(k) * (1 / tau ** 2 + 1 / sd ** 2)
        prec[:k, k] = prec[k, :k] = -1 / tau ** 2
        prec[k, k] = k / tau ** 2
        cov = np.linalg.inv(prec)
        centre = cov @ np.concatenate([means / sd ** 2, [0.0]])
        out[rows] = rng.multivariate_normal(centre, cov, size=rows.size)[:, :k]
    return out


def test_partial_pooling_matches_a_brute_force_hierarchical_posterior() -> None:
    # Five configurations, one replicate each, known noise (a prior sd): P(front) from the
    # tool's sequential draws (tau, then mu, then theta) against the joint Gaussian posterior
    # of (theta, mu) at each tau of a fine grid, weighted by the exact p(tau | means).
    rng = np.random.default_rng(12)
    acc = np.array([0.90, 0.93, 0.91, 0.95, 0.92])
    log_thr = np.log([3000.0, 2500.0, 2800.0, 1200.0, 2000.0])
    sd_a, sd_t = 0.02, 0.15
    reps = [Replicate(f"c{i}", 0, float(a), float(math.exp(t)), i)
            for i, (a, t) in enumerate(zip(acc, log_thr, strict=True))]
    front = noisy_front(reps, draws=40_000, seed=2, prior_sd=(sd_a, sd_t))
    top_a = 4 * float(np.std(acc, ddof=1)) + 4 * sd_a
    top_t = 4 * float(np.std(log_thr, ddof=1)) + 4 * sd_t
    a_true = _hierarchical_posterior(acc, sd_a, top_a, rng, 40_000)
    t_true = _hierarchical_posterior(log_thr, sd_t, top_t, rng, 40_000)
    expected = pareto_mask(a_true, t_true).mean(axis=0)
    for i in range(5):
        assert front.probability[f"c{i}"] == pytest.approx(expected[i], abs=0.015)
    flat = noisy_front(reps, draws=40_000, seed=2, prior_sd=(sd_a, sd_t), pooling="none")
    # Pooling matters here: the fast, less accurate c0 is pulled towards the others.
    assert max(abs(flat.probability[f"c{i}"] - expected[i]) for i in range(5)) > 0.03


def test_pooling_must_be_known() -> None:
    with pytest.raises(ValueError, match="pooling"):
        noisy_front(_replicates(random.Random(1), 4, (2, 3)), pooling="full")


def test_with_vanishing_noise_the_front_is_the_observed_front() -> None:
    rng = random.Random(4)
    reps = []
    for c in range(30):
        acc, thr = rng.choice([0.8, 0.85, 0.9]), rng.choice([100.0, 200.0, 400.0])
        reps += [Replicate(f"c{c:02d}", r, acc, thr, c) for r in range(2)]
    front = noisy_front(reps, draws=200)
    assert front.noise.accuracy_sd == 0.0
    means = [(e.accuracy.mean, e.throughput.mean) for e in front.estimates]
    observed = {front.estimates[i].config for i in pareto_indices(means)}
    assert front.probability == {e.config: float(e.config in observed) for e in front.estimates}
    assert set(front.plausible) == observed
    assert set(front.dominated) == {e.config for e in front.estimates} - observed


def test_plausible_falls_back_to_the_most_probable_configurations() -> None:
    # Six configurations with equal means: each is optimal in about H_6 / 6 ≈ 41% of the draws.
    reps = [Replicate(f"c{c}", r, 0.85 + 0.01 * (r - 1), 1000.0 * math.exp(0.1 * (r - 1)), 0)
            for c in range(6) for r in range(3)]
    front = noisy_front(reps, draws=4000, seed=1)
    harmonic = sum(1 / k for k in range(1, 7))
    for p in front.probability.values():
        assert p == pytest.approx(harmonic / 6, abs=0.04)
    top = max(front.probability.values())
    assert top < 0.5
    assert front.plausible == [c for c, p in front.probability.items() if p == top]
    assert front.dominated == []


def test_front_is_deterministic_and_consistent() -> None:
    reps = _replicates(random.Random(5), 40, (1, 2, 3))
    first, again = noisy_front(reps, seed=7), noisy_front(reps, seed=7)
    assert first == again
    other = noisy_front(reps, seed=8)
    assert other.probability != first.probability
    assert max(abs(first.probability[c] - other.probability[c]) for c in first.probability) < 0.08
    assert first.plausible == [c for c, p in first.probability.items() if p >= 0.5]
    assert first.dominated == [c for c, p in first.probability.items() if p <= 0.05]
    plausible = [(e.accuracy.mean, e.throughput.mean) for e in first.estimates
                 if e.config in first.plausible]
    assert first.hypervolume == pytest.approx(hypervolume_2d(plausible))
    assert first.hypervolume_low is not None and first.hypervolume_high is not None
    assert first.hypervolume_low < first.hypervolume_high
    assert sum(first.probability.values()) >= 1.0  # some configuration is optimal in every draw


def test_an_observed_front_member_far_ahead_is_certain() -> None:
    reps = [Replicate(c, r, acc + 0.001 * r, thr, 0)
            for c, acc, thr in [("best", 0.95, 5000.0), ("poor", 0.60, 100.0)] for r in range(3)]
    front = noisy_front(reps)
    assert front.probability == {"best": 1.0, "poor": 0.0}
    assert front.plausible == ["best"] and front.dominated == ["poor"]


def test_many_configurations_are_handled_vectorized() -> None:
    reps = _replicates(random.Random(9), 200, (1, 2, 3))
    front = noisy_front(reps, draws=2000)
    assert len(front.probability) == 200 and front.draws == 2000
    assert all(0.0 <= p <= 1.0 for p in front.probability.values())


def test_studies_statistics_do_not_import_torch_or_scipy() -> None:
    code = ("import sys; import studies.confidence, studies.noisyfront, studies.effects, "
            "studies.tdist; print(sorted(m for m in ('torch', 'scipy') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         cwd=Path(__file__).resolve().parents[2])
    assert out.stdout.strip() == "[]"


def test_tiny_exhaustive_front_of_identical_points() -> None:
    # Every permutation of a small point set gives the same front membership per point.
    points = [(1.0, 1.0), (1.0, 1.0), (2.0, 0.0), (0.0, 2.0), (0.5, 0.5)]
    for perm in itertools.permutations(range(5)):
        a = np.array([points[i][0] for i in perm])
        b = np.array([points[i][1] for i in perm])
        kept = {perm[i] for i in np.flatnonzero(pareto_mask(a, b))}
        assert kept == {0, 1, 2, 3}


def test_one_degree_of_freedom_gives_a_finite_front_without_warnings() -> None:
    """With df = 1 a few sigma draws are huge (s² / chi²_1): no overflow warning (a run prints
    every warning on stderr), a finite hypervolume interval, probabilities in [0, 1]."""
    import warnings

    from studies.confidence import Replicate
    from studies.noisyfront import noisy_front

    reps = [Replicate("a", 0, 0.50, 1000.0, 0), Replicate("a", 1, 0.52, 1500.0, 1),
            Replicate("b", 0, 0.60, 900.0, 2), Replicate("c", 0, 0.40, 3000.0, 3)]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for seed in range(100):
            front = noisy_front(reps, seed=seed)
            assert front.hypervolume_low is not None and front.hypervolume_high is not None
            assert math.isfinite(front.hypervolume_high)
            assert all(0.0 <= p <= 1.0 for p in front.probability.values())
