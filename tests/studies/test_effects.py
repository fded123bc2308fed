"""studies.effects against scipy: paired t tests, one-sample t tests on pair means, power."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from scipy import stats

from studies.effects import (
    Effect,
    Noise,
    measured_effect,
    measured_trend,
    paired_effect,
    trend,
)
from studies.verdicts import trend_verdict, verdict

MINUS = "\u2212"


def _power(ncp: float, df: int, alpha: float = 0.05) -> float:
    crit = stats.t.ppf(1 - alpha / 2, df)
    return float(stats.nct.sf(crit, df, ncp) + stats.nct.cdf(-crit, df, ncp))


def _pairs(rng: np.random.Generator, count: int, shared: int, effect: float = 0.01,
           spread: float = 0.01, noise: float = 0.03) -> dict[str, tuple[dict[int, float],
                                                                       dict[int, float]]]:
    out = {}
    for p in range(count):
        base, true = rng.uniform(0.7, 0.9), effect + rng.normal(0, spread)
        seed = rng.normal(0, noise, shared)
        a = {r: float(base + true + seed[r] + rng.normal(0, noise / 2)) for r in range(shared)}
        b = {r: float(base + seed[r] + rng.normal(0, noise / 2)) for r in range(shared)}
        out[f"p{p}"] = (a, b)
    return out


def test_one_pair_equals_scipy_ttest_rel() -> None:
    rng = np.random.default_rng(0)
    a, b = rng.normal(0.85, 0.03, 6), rng.normal(0.84, 0.03, 6)
    effect = paired_effect({"only": (dict(enumerate(a)), dict(enumerate(b)))}, confidence=0.9)
    ref = stats.ttest_rel(a, b)
    ci = ref.confidence_interval(confidence_level=0.9)
    assert effect.mean == pytest.approx(float(np.mean(a - b)), rel=1e-12)
    assert (effect.low, effect.high) == pytest.approx((ci.low, ci.high), rel=1e-9)
    assert effect.df == ref.df == 5
    assert (effect.pairs, effect.differences) == (1, 6)
    assert effect.se == pytest.approx(np.std(a - b, ddof=1) / math.sqrt(6), rel=1e-12)
    # P(a better) is the t cdf of the estimate in standard errors: 1 - one-sided p of "a > b".
    assert effect.p_better == pytest.approx(1 - stats.ttest_rel(a, b, alternative="greater").pvalue,
                                            rel=1e-9)
    assert effect.within_var == pytest.approx(np.var(a - b, ddof=1), rel=1e-12)
    assert effect.between_var is None


def test_one_pair_uses_only_the_shared_replicates() -> None:
    a = {0: 0.80, 1: 0.83, 2: 0.85, 7: 0.99}
    b = {0: 0.79, 1: 0.81, 2: 0.80, 5: 0.10}
    effect = paired_effect({"x": (a, b)})
    ref = stats.ttest_rel([0.80, 0.83, 0.85], [0.79, 0.81, 0.80])
    assert (effect.low, effect.high) == pytest.approx(tuple(ref.confidence_interval()), rel=1e-9)
    assert effect.differences == 3


def test_one_pair_without_two_shared_replicates_has_no_interval() -> None:
    effect = paired_effect({"x": ({0: 0.8, 1: 0.82}, {2: 0.79, 3: 0.78})})
    assert effect.mean == pytest.approx(0.81 - 0.785)
    assert (effect.se, effect.low, effect.high, effect.p_better, effect.detectable) == (
        None, None, None, None, None)
    assert not effect.known and effect.df == 0
    assert effect.seeds_needed(0.01) is None
    assert verdict(effect, "double", "softmax").startswith("too few data: double vs softmax")


def test_several_pairs_equal_ttest_1samp_on_pair_mean_differences() -> None:
    rng = np.random.default_rng(1)
    pairs = _pairs(rng, 7, 3)
    pairs["p1"][0].pop(2)  # unequal replicate counts: p1 has 2 shared indices
    pairs["unshared"] = ({5: 0.84, 6: 0.86}, {8: 0.83})  # no shared index: difference of means
    effect = paired_effect(pairs)
    units = []
    for a, b in pairs.values():
        shared = sorted(set(a) & set(b))
        units.append(np.mean([a[i] - b[i] for i in shared]) if shared
                     else np.mean(list(a.values())) - np.mean(list(b.values())))
    ref = stats.ttest_1samp(units, 0.0)
    ci = ref.confidence_interval()
    assert effect.mean == pytest.approx(float(np.mean(units)), rel=1e-12)
    assert (effect.low, effect.high) == pytest.approx((ci.low, ci.high), rel=1e-9)
    assert (effect.df, effect.pairs, effect.differences) == (7, 8, 7 * 3 - 1)
    assert effect.se is not None
    assert effect.p_better == pytest.approx(stats.t.cdf(effect.mean / effect.se, 7), rel=1e-10)


def test_variance_split_between_pairs_and_seeds() -> None:
    pairs = {"a": ({0: 0.80, 1: 0.84}, {0: 0.78, 1: 0.80}),
             "b": ({0: 0.70, 1: 0.71, 2: 0.69}, {0: 0.71, 1: 0.70, 2: 0.70}),
             "c": ({0: 0.90}, {0: 0.86})}
    effect = paired_effect(pairs)
    diffs = {"a": [0.02, 0.04], "b": [-0.01, 0.01, -0.01], "c": [0.04]}
    within = (sum(np.var(d, ddof=1) * (len(d) - 1) for d in diffs.values() if len(d) > 1)
              / (1 + 2))
    means = [np.mean(d) for d in diffs.values()]
    between = max(0.0, np.var(means, ddof=1) - within * np.mean([1 / len(d)
                                                                for d in diffs.values()]))
    assert effect.within_var == pytest.approx(within, rel=1e-9)
    assert effect.between_var == pytest.approx(between, rel=1e-9, abs=1e-15)


def test_log_effects_are_ratios_of_geometric_means() -> None:
    rng = np.random.default_rng(2)
    a, b = 1200 * np.exp(rng.normal(0, 0.2, 5)), 1000 * np.exp(rng.normal(0, 0.2, 5))
    effect = paired_effect({"x": (dict(enumerate(a)), dict(enumerate(b)))}, log=True)
    ci = stats.ttest_rel(np.log(a), np.log(b)).confidence_interval()
    assert effect.log
    assert effect.ratio == pytest.approx(stats.gmean(a / b), rel=1e-12)
    assert (effect.ratio_low, effect.ratio_high) == pytest.approx(
        (math.exp(ci.low), math.exp(ci.high)), rel=1e-9)
    data = json.loads(json.dumps(effect.to_dict()))
    assert data["ratio"] == pytest.approx(effect.ratio)
    assert paired_effect({"x": ({0: 0.8}, {0: 0.7})}).ratio is None
    with pytest.raises(ValueError):
        paired_effect({"x": ({0: 0.0}, {0: 10.0})}, log=True)


def test_detectable_has_80_percent_power_by_the_noncentral_t() -> None:
    rng = np.random.default_rng(3)
    for count, shared in [(1, 3), (1, 8), (4, 2), (12, 3)]:
        effect = paired_effect(_pairs(rng, count, shared), confidence=0.95)
        assert effect.se is not None and effect.detectable is not None and effect.se > 0
        assert _power(effect.detectable / effect.se, effect.df) == pytest.approx(0.8, abs=1e-8)
    effect = paired_effect(_pairs(rng, 6, 2), confidence=0.9)
    assert effect.se is not None and effect.detectable is not None
    assert _power(effect.detectable / effect.se, effect.df, alpha=0.1) == pytest.approx(0.8,
                                                                                        abs=1e-8)


def _brute_seeds(delta: float, pairs: int, within: float, between: float) -> int | None:
    for m in range(1 if pairs > 1 else 2, 5000):
        if pairs == 1:
            ncp, df = delta / math.sqrt(within / m), m - 1
        else:
            ncp, df = delta / math.sqrt((between + within / m) / pairs), pairs - 1
        if _power(ncp, df) >= 0.8:
            return m
    return None


def _effect(pairs: int, within: float, between: float | None) -> Effect:
    return Effect(0.0, 0.01, max(pairs - 1, 1), -0.02, 0.02, 0.5, pairs, 3 * pairs, 0.03,
                  between_var=between, within_var=within)


@pytest.mark.parametrize(("pairs", "within", "between", "delta"), [
    (1, 0.03 ** 2, None, 0.01), (1, 0.03 ** 2, None, 0.002), (1, 0.02 ** 2, None, 0.05),
    (6, 0.03 ** 2, 0.0, 0.01), (6, 0.03 ** 2, 0.002 ** 2, 0.01), (20, 0.04 ** 2, 0.0, 0.005),
    (3, 0.03 ** 2, 1e-6, 0.03)])
def test_seeds_needed_equals_a_brute_force_power_search(pairs: int, within: float,
                                                        between: float | None,
                                                        delta: float) -> None:
    effect = _effect(pairs, within, between)
    assert effect.seeds_needed(delta) == _brute_seeds(delta, pairs, within, between or 0.0)
    assert effect.seeds_needed(-delta) == effect.seeds_needed(delta)


def test_seeds_cannot_beat_the_between_pair_spread() -> None:
    # tau = 1 point over 6 pairs: even infinitely many seeds leave se = tau / sqrt(6).
    effect = _effect(6, 0.03 ** 2, 0.01 ** 2)
    assert effect.seeds_needed(0.005) is None
    needed = effect.pairs_needed(0.005, seeds=3)
    assert needed is not None
    var = 0.01 ** 2 + 0.03 ** 2 / 3
    brute = next(p for p in range(2, 10_000)
                 if _power(0.005 / math.sqrt(var / p), p - 1) >= 0.8)
    assert needed == brute
    assert _effect(1, 0.03 ** 2, None).pairs_needed(0.005, 3) is None
    assert _effect(6, 0.03 ** 2, None).seeds_needed(0.005) is None
    assert effect.seeds_needed(0.0) is None


def test_empty_input_is_an_error() -> None:
    with pytest.raises(ValueError):
        paired_effect({})
    with pytest.raises(ValueError):
        paired_effect({"x": ({}, {0: 0.5})})
    with pytest.raises(ValueError):
        paired_effect({"x": ({0: 0.5}, {0: 0.4})}, confidence=0.0)


# --- trends --------------------------------------------------------------------------------------

def test_trend_over_groups_equals_ttest_1samp_on_group_slopes() -> None:
    rng = np.random.default_rng(4)
    levels = [8.0, 16.0, 32.0, 64.0]
    groups = {}
    slopes = []
    for g in range(5):
        base, slope = rng.uniform(0.7, 0.9), 0.004 + rng.normal(0, 0.002)
        seeds = rng.normal(0, 0.03, 3)
        data = {s: {r: float(base + slope * math.log2(s) + seeds[r] + rng.normal(0, 0.01))
                    for r in range(3)} for s in levels}
        groups[f"g{g}"] = data
        per_rep = [stats.linregress(np.log2(levels), [data[s][r] for s in levels]).slope
                   for r in range(3)]
        slopes.append(np.mean(per_rep))
    result = trend(groups)
    ci = stats.ttest_1samp(slopes, 0.0).confidence_interval()
    e = result.per_doubling
    assert e.mean == pytest.approx(float(np.mean(slopes)), rel=1e-10)
    assert (e.low, e.high) == pytest.approx((ci.low, ci.high), rel=1e-9)
    assert (e.pairs, e.differences, e.df) == (5, 15, 4)
    assert [lv.value for lv in result.levels] == levels
    # Levels: the mean over groups, with the pooled within-cell sd.
    cells = [list(groups[g][s].values()) for g in groups for s in levels]
    s_pooled = math.sqrt(np.mean([np.var(c, ddof=1) for c in cells]))
    df = len(cells) * 2
    first = result.levels[0]
    mean = np.mean([np.mean(list(groups[g][8.0].values())) for g in groups])
    half = stats.t.ppf(0.975, df) * s_pooled * math.sqrt(5 / 3) / 5
    assert (first.configs, first.replicates) == (5, 15)
    assert first.estimate.mean == pytest.approx(mean, rel=1e-12)
    assert (first.estimate.low, first.estimate.high) == pytest.approx((mean - half, mean + half),
                                                                      rel=1e-10)
    assert json.loads(json.dumps(result.to_dict()))["levels"][0]["value"] == 8.0


def test_trend_of_one_group_is_over_its_per_replicate_slopes() -> None:
    data = {8: {0: 0.80, 1: 0.78, 2: 0.81}, 16: {0: 0.82, 1: 0.80, 2: 0.81},
            32: {0: 0.83, 1: 0.83, 2: 0.84}, 64: {0: 0.86, 2: 0.85}}  # index 1 lacks 64
    result = trend({"only": data})
    xs = np.log2([8, 16, 32, 64])
    slopes = [stats.linregress(xs, [data[s][r] for s in (8, 16, 32, 64)]).slope for r in (0, 2)]
    ci = stats.ttest_1samp(slopes, 0.0).confidence_interval()
    e = result.per_doubling
    assert (e.pairs, e.differences, e.df) == (1, 2, 1)
    assert (e.mean, e.low, e.high) == pytest.approx((np.mean(slopes), ci.low, ci.high), rel=1e-9)


def test_exact_linear_trend_of_throughput_on_the_log_scale() -> None:
    # throughput halves per doubling of S in every group: ratio 0.5 per doubling, exactly.
    groups = {g: {s: {r: 1e5 / s * (1 + 0.1 * g) * (1 + 0.05 * r) for r in range(2)}
                  for s in (8, 16, 32)} for g in range(3)}
    e = trend(groups, log=True).per_doubling
    assert e.ratio == pytest.approx(0.5, rel=1e-12)
    assert e.se == pytest.approx(0.0, abs=1e-12)


def test_trend_skips_groups_without_two_levels_and_refuses_nonsense() -> None:
    groups = {"a": {8: {0: 0.8}, 16: {0: 0.82}}, "b": {8: {0: 0.7}}, "c": {8: {}, 16: {0: 0.9}}}
    result = trend(groups)
    assert result.per_doubling.pairs == 1 and result.per_doubling.se is None
    assert result.per_doubling.mean == pytest.approx(0.02)
    assert "too few data" in trend_verdict(result, "S")
    with pytest.raises(ValueError):
        trend({"b": {8: {0: 0.7}}})
    with pytest.raises(ValueError):
        trend({"a": {0: {0: 0.8}, 16: {0: 0.82}}})


# --- verdicts ------------------------------------------------------------------------------------

def _made(mean: float, low: float, high: float, log: bool = False) -> Effect:
    return Effect(mean, 0.001, 9, low, high, 0.9, 10, 30, 0.004, log=log)


def test_verdicts_claim_only_what_the_interval_shows() -> None:
    assert verdict(_made(0.004, 0.001, 0.007), "double", "softmax") == (
        "double is 0.4 points more accurate than softmax [0.1, 0.7]")
    assert verdict(_made(-0.004, -0.007, -0.001), "double", "softmax") == (
        "softmax is 0.4 points more accurate than double [0.1, 0.7]")
    assert verdict(_made(-0.0005, -0.005, 0.004), "double", "softmax") == (
        f"no difference detectable between double and softmax: [{MINUS}0.5, +0.4] points "
        "(80% power for \u00b10.4 points)")
    fast = _made(math.log(1.12), math.log(1.05), math.log(1.20), log=True)
    assert verdict(fast, "double", "softmax") == "double is 1.12x as fast as softmax [1.05, 1.20]"
    slow = _made(-math.log(1.12), -math.log(1.20), -math.log(1.05), log=True)
    assert verdict(slow, "double", "softmax") == "softmax is 1.12x as fast as double [1.05, 1.20]"
    same = _made(0.01, math.log(0.95), math.log(1.08), log=True)
    assert verdict(same, "double", "softmax") == (
        "no throughput difference detectable between double and softmax: \u00d7[0.95, 1.08]")
    assert verdict(_made(0.0004, 0.0001, 0.0007), "a", "b") == (
        "a is 0.04 points more accurate than b [0.01, 0.07]")


def test_trend_verdicts() -> None:
    rising = {g: {s: {r: 0.8 + 0.004 * math.log2(s) + 0.001 * ((r + g) % 3) for r in range(3)}
                  for s in (8, 16, 32, 64)} for g in range(4)}
    assert trend_verdict(trend(rising), "S").startswith("accuracy rises 0.4")
    falling = {g: {s: {r: 0.8 - 0.004 * math.log2(s) + 0.001 * ((r * g) % 3) for r in range(3)}
                   for s in (8, 16, 32, 64)} for g in range(4)}
    assert trend_verdict(trend(falling), "S").startswith("accuracy falls 0.4")
    flat = {g: {s: {r: 0.8 + 0.01 * ((r + g + s) % 3) for r in range(3)} for s in (8, 16)}
            for g in range(4)}
    assert trend_verdict(trend(flat), "heads").startswith("no trend detectable over heads: [")
    speed = {g: {s: {r: 1e4 / s * (1 + 0.01 * r + 0.02 * g) for r in range(2)} for s in (8, 16)}
             for g in range(3)}
    assert trend_verdict(trend(speed, log=True), "S").startswith("throughput changes \u00d70.50")


# --- over the measured pairs, with the study's pooled noise --------------------------------------


def test_measured_effect_of_one_pair_with_its_own_pooled_sd_is_the_two_sample_t_test() -> None:
    rng = np.random.default_rng(11)
    a, b = rng.normal(0.86, 0.03, 5), rng.normal(0.84, 0.03, 3)
    sd = math.sqrt((4 * np.var(a, ddof=1) + 2 * np.var(b, ddof=1)) / 6)
    effect = measured_effect({"x": (dict(enumerate(a)), dict(enumerate(b)))}, Noise(sd, 6),
                             confidence=0.9)
    ref = stats.ttest_ind(a, b, equal_var=True)
    ci = ref.confidence_interval(confidence_level=0.9)
    assert effect.scope == "measured" and effect.df == 6
    assert effect.mean == pytest.approx(float(a.mean() - b.mean()), rel=1e-12)
    assert (effect.low, effect.high) == pytest.approx((ci.low, ci.high), rel=1e-9)
    assert effect.p_better == pytest.approx(
        1 - stats.ttest_ind(a, b, alternative="greater").pvalue, rel=1e-9)
    assert (effect.pairs, effect.differences) == (1, 3)  # indices 0-2 are shared


def test_measured_effect_over_pairs_uses_all_runs_and_the_given_noise() -> None:
    pairs = {"p": ({0: 0.80, 1: 0.82, 2: 0.84}, {0: 0.79}),
             "q": ({0: 0.90, 5: 0.92}, {1: 0.85, 2: 0.87})}
    effect = measured_effect(pairs, Noise(0.02, 40))
    means = [0.82 - 0.79, 0.91 - 0.86]
    se = 0.02 * math.sqrt((1 / 3 + 1) + (1 / 2 + 1 / 2)) / 2
    half = stats.t.ppf(0.975, 40) * se
    assert effect.mean == pytest.approx(sum(means) / 2, rel=1e-12)
    assert effect.se == pytest.approx(se, rel=1e-12)
    assert (effect.low, effect.high) == pytest.approx((effect.mean - half, effect.mean + half),
                                                      rel=1e-9)
    assert effect.differences == 1  # only p shares an index (0)
    assert effect.between_var == 0.0 and effect.within_var == pytest.approx(2 * 0.02 ** 2)
    # A known sd (a prior): the normal interval.
    known = measured_effect(pairs, Noise(0.02, math.inf))
    assert known.high - known.mean == pytest.approx(stats.norm.ppf(0.975) * se, rel=1e-9)
    # Detectable effect and seeds: by the noncentral t at the noise's df, brute force.
    detect = effect.detectable
    assert detect is not None and _power(detect / se, 40) == pytest.approx(0.8, abs=1e-6)
    seeds = effect.seeds_needed(0.01)
    brute = next(m for m in range(1, 10_000)
                 if _power(0.01 / (0.02 * math.sqrt(2 / m / 2)), 40) >= 0.8)
    assert seeds == brute
    with pytest.raises(ValueError):
        measured_effect({}, Noise(0.02, 40))
    with pytest.raises(ValueError):
        Noise(0.02, 0)


def test_measured_effect_on_throughput_is_a_ratio_of_geometric_means() -> None:
    pairs = {"p": ({0: 2000.0, 1: 2200.0}, {0: 1000.0, 1: 1100.0}),
             "q": ({0: 500.0}, {0: 400.0, 1: 440.0})}
    effect = measured_effect(pairs, Noise(0.1, 30), log=True)
    geo = math.sqrt(2000 * 2200) / math.sqrt(1000 * 1100) * 500 / math.sqrt(400 * 440)
    assert effect.ratio == pytest.approx(math.sqrt(geo), rel=1e-12)
    assert effect.ratio_low is not None and effect.ratio_low < effect.ratio < effect.ratio_high
    assert verdict(effect, "a", "b").startswith("a is ")
    assert "as fast as b over the 2 pairs measured [" in verdict(effect, "a", "b")


def test_measured_trend_slope_variance_is_the_brute_force_one() -> None:
    groups = {"g": {8: {0: 0.80, 1: 0.81}, 16: {0: 0.83}, 64: {0: 0.86, 1: 0.84, 2: 0.85}},
              "h": {8: {0: 0.70}, 32: {0: 0.74, 3: 0.72}}}
    sd = 0.01
    effect = measured_trend(groups, Noise(sd, math.inf)).per_doubling
    rng = np.random.default_rng(12)
    slopes = []
    for _ in range(20_000):  # the same design, runs redrawn around 0 with the noise's sd
        drawn = {k: {s: {r: float(rng.normal(0, sd)) for r in reps} for s, reps in g.items()}
                 for k, g in groups.items()}
        slopes.append(measured_trend(drawn, Noise(sd, math.inf)).per_doubling.mean)
    assert effect.se is not None
    assert float(np.std(slopes)) == pytest.approx(effect.se, rel=0.03)
    assert float(np.mean(slopes)) == pytest.approx(0.0, abs=4 * effect.se / math.sqrt(20_000))
    # Per group: the least-squares slope of the level means on log2(S).
    g_slope = stats.linregress([3, 4, 6], [0.805, 0.83, 0.85]).slope
    h_slope = stats.linregress([3, 5], [0.70, 0.73]).slope
    assert effect.mean == pytest.approx((g_slope + h_slope) / 2, rel=1e-9)
    assert trend_verdict(measured_trend(groups, Noise(sd, math.inf)), "S").startswith(
        "accuracy rises ")
    assert " per doubling of S in the 2 groups measured [" in trend_verdict(
        measured_trend(groups, Noise(sd, math.inf)), "S")


def test_measured_verdicts_say_what_they_are_about() -> None:
    one = measured_effect({"x": ({0: 0.80, 1: 0.81}, {0: 0.80, 1: 0.79})}, Noise(0.02, 30))
    assert verdict(one, "double", "softmax").startswith(
        "no difference detectable between double and softmax over the one pair measured: [")
