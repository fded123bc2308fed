"""Multi-objective early stopping (MO-ASHA): the ranking maths, then real studies.

The unit tests check ``explore.search.pruning`` against brute-force references on seeded random
points.
The end-to-end tests run ``explore study run --prune`` as real subprocesses on a real SQLite
file and replay every rung decision from the trials' stored histories, so they prove that the
decisions were taken on the points the other trials (of any process) had written.
"""

from __future__ import annotations

import math
import random
import subprocess
import time
from collections.abc import Sequence
from pathlib import Path

import optuna
import pytest
from optuna.trial import FrozenTrial, TrialState

from explore.search.pruning import (
    crowding_distances,
    decide,
    hypervolume_contributions,
    nondominated_ranks,
    rungs,
)
from studies.record import ATTR_CONFIGURATION, ATTR_REPLICATE
from tests.conftest import EXPLORE, clean_env, write_tiny_config

Point = tuple[float, float]


# ---------------------------------------------------------------------------------------------
# rungs


@pytest.mark.parametrize(("epochs", "eta", "expected"), [
    (12, 3, [1, 3, 9]),
    (9, 3, [1, 3]),  # the full budget is never a rung
    (10, 3, [1, 3, 9]),
    (1, 3, []),
    (2, 3, [1]),
    (16, 2, [1, 2, 4, 8]),
    (27, 3, [1, 3, 9]),
])
def test_rungs_are_geometric_and_below_the_budget(epochs: int, eta: int,
                                                  expected: list[int]) -> None:
    assert rungs(epochs, eta) == expected


def test_rungs_can_start_later() -> None:
    assert rungs(20, 3, first=2) == [2, 6, 18]


# ---------------------------------------------------------------------------------------------
# non-dominated sorting


def dominates(a: Point, b: Point) -> bool:
    return a[0] >= b[0] and a[1] >= b[1] and a != b


def brute_force_ranks(points: Sequence[Point]) -> list[int]:
    """Peel fronts off one at a time: front k = the non-dominated points of what is left."""
    ranks = [-1] * len(points)
    left = set(range(len(points)))
    level = 0
    while left:
        front = {i for i in left if not any(dominates(points[j], points[i]) for j in left)}
        for i in front:
            ranks[i] = level
        left -= front
        level += 1
    return ranks


def random_points(rng: random.Random, n: int, grid: int | None) -> list[Point]:
    """Points in the unit square; on a coarse grid when ``grid`` is given (ties, repeats)."""
    if grid is None:
        return [(rng.random(), rng.random()) for _ in range(n)]
    return [(rng.randrange(grid) / grid, rng.randrange(grid) / grid) for _ in range(n)]


@pytest.mark.parametrize("grid", [None, 3, 5])
def test_nondominated_ranks_match_brute_force(grid: int | None) -> None:
    rng = random.Random(1234 + (grid or 0))
    for _ in range(300):
        points = random_points(rng, rng.randrange(0, 25), grid)
        assert nondominated_ranks(points) == brute_force_ranks(points), points


def test_nondominated_ranks_small_cases() -> None:
    assert nondominated_ranks([]) == []
    assert nondominated_ranks([(0.5, 10.0)]) == [0]
    # A chain: each point dominates the next.
    assert nondominated_ranks([(0.9, 3.0), (0.8, 2.0), (0.7, 1.0)]) == [0, 1, 2]
    # A trade-off: nobody dominates.
    assert nondominated_ranks([(0.9, 1.0), (0.8, 2.0), (0.7, 3.0)]) == [0, 0, 0]
    # Equal points do not dominate each other; a tie in one objective still dominates.
    assert nondominated_ranks([(0.5, 5.0), (0.5, 5.0), (0.5, 4.0)]) == [0, 0, 1]


# ---------------------------------------------------------------------------------------------
# crowding distance


def brute_force_crowding(points: Sequence[Point]) -> list[float]:
    """NSGA-II: per objective, the normalized gap between each point's two neighbours."""
    n = len(points)
    if n <= 2:
        return [math.inf] * n
    out = [0.0] * n
    for k in range(2):
        order = sorted(range(n), key=lambda i: points[i][k])
        span = points[order[-1]][k] - points[order[0]][k]
        for pos, i in enumerate(order):
            if pos in (0, n - 1):
                out[i] = math.inf
            elif span > 0 and out[i] != math.inf:
                out[i] += (points[order[pos + 1]][k] - points[order[pos - 1]][k]) / span
    return out


def test_crowding_distances_match_brute_force_on_fronts() -> None:
    rng = random.Random(7)
    for _ in range(200):
        n = rng.randrange(1, 15)
        # A front: accuracy falls as throughput rises (distinct values, no ties in the sort).
        xs = sorted(rng.sample(range(1000), n))
        points = [(1.0 - x / 1000, float(x)) for x in xs]
        rng.shuffle(points)
        got = crowding_distances(points)
        want = brute_force_crowding(points)
        assert [math.isinf(d) for d in got] == [math.isinf(d) for d in want]
        for g, w in zip(got, want, strict=True):
            if not math.isinf(w):
                assert g == pytest.approx(w)


def test_crowding_distances_known_values() -> None:
    # Evenly spaced front of 5: ends infinite; inner points 2/4 + 2/4 = 1.
    front = [(1.0, 0.0), (0.75, 1.0), (0.5, 2.0), (0.25, 3.0), (0.0, 4.0)]
    assert crowding_distances(front) == [math.inf, 1.0, 1.0, 1.0, math.inf]
    # The isolated inner point is the less crowded one.
    uneven = [(1.0, 0.0), (0.9, 1.0), (0.1, 9.0), (0.0, 10.0)]
    d = crowding_distances(uneven)
    assert d[1] < d[2] or d[1] == pytest.approx(d[2])
    assert crowding_distances([(0.5, 1.0), (0.4, 2.0)]) == [math.inf, math.inf]
    # All equal in one objective: that objective adds nothing (no division by zero).
    flat = [(0.5, 1.0), (0.5, 2.0), (0.5, 3.0)]
    assert crowding_distances(flat) == [math.inf, 1.0, math.inf]


# ---------------------------------------------------------------------------------------------
# decide


def test_no_pruning_below_min_trials() -> None:
    worst = (0.0, 0.0)
    others = [(0.9, 100.0), (0.8, 200.0)]
    decision = decide(worst, others, eta=3, min_trials=4)
    assert decision.keep
    assert decision.size == 3
    # With one more trial at the rung the same point is pruned.
    decision = decide(worst, [*others, (0.7, 300.0)], eta=3, min_trials=4)
    assert not decision.keep
    assert (decision.rank, decision.size, decision.allowed) == (4, 4, 1)


def test_dominated_point_at_a_full_rung_is_pruned() -> None:
    others = [(0.9, 1000.0), (0.8, 2000.0), (0.95, 500.0), (0.5, 3000.0), (0.85, 1500.0)]
    decision = decide((0.7, 900.0), others, eta=3, min_trials=2)  # dominated by (0.9, 1000)
    assert not decision.keep
    assert decision.rank > decision.allowed
    assert "ranked" in decision.reason(3) and "epoch 3" in decision.reason(3)


def test_a_point_dominating_everyone_continues() -> None:
    others = [(0.5 + 0.01 * i, 100.0 * (10 - i)) for i in range(10)]
    decision = decide((0.99, 5000.0), others, eta=3, min_trials=2)
    assert decision.keep and decision.rank == 1


@pytest.mark.parametrize("eta", [2, 3, 4])
def test_top_one_over_eta_continue(eta: int) -> None:
    """Judge every point of a random rung against the rest: exactly the best ⌊n/η⌋ continue
    (at least 1), and those are never dominated by a pruned point."""
    rng = random.Random(eta)
    for _ in range(50):
        n = rng.randrange(2, 30)
        points = random_points(rng, n, grid=None)
        kept = [i for i in range(n)
                if decide(points[i], points[:i] + points[i + 1:], eta, min_trials=1).keep]
        assert len(kept) == max(1, n // eta)
        ranks = brute_force_ranks(points)
        worst_kept = max(ranks[i] for i in kept)
        pruned = set(range(n)) - set(kept)
        # Non-dominated sorting comes first: every kept point is on a front no worse than
        # that of any pruned point.
        assert all(ranks[i] >= worst_kept for i in pruned) or not pruned
        assert all(not dominates(points[j], points[i]) for i in kept for j in pruned)


def test_ties_do_not_all_pass() -> None:
    """Equal points: the one being judged goes last among them, so a clone of trials already
    at the rung never takes a place from them, and clones never all pass."""
    same = (0.8, 1000.0)
    for n in range(2, 12):
        decision = decide(same, [same] * (n - 1), eta=3, min_trials=1)
        assert decision.rank == n
        assert not decision.keep
    # Clones behind a better point: judged one by one, no clone passes.
    rung = [(0.9, 2000.0), same, same, same, same, same]
    assert not any(decide(same, rung[:i] + rung[i + 1:], 3, 1).keep for i in range(1, 6))


@pytest.mark.parametrize("grid", [3, 5])
def test_ties_never_let_more_than_one_over_eta_through(grid: int) -> None:
    rng = random.Random(grid)
    for _ in range(100):
        n = rng.randrange(2, 30)
        points = random_points(rng, n, grid)
        kept = [i for i in range(n)
                if decide(points[i], points[:i] + points[i + 1:], 3, min_trials=1).keep]
        assert len(kept) <= max(1, n // 3)
        if len(set(points)) == n:
            assert len(kept) == max(1, n // 3)


def test_hypervolume_contributions() -> None:
    # Against (0, 0): a lone point adds its whole rectangle.
    assert hypervolume_contributions([(0.5, 4.0)]) == [2.0]
    front = [(0.9, 1.0), (0.6, 2.0), (0.3, 4.0)]
    # (thr − previous thr) × (acc − next acc), throughput ascending.
    assert hypervolume_contributions(front) == pytest.approx([1.0 * 0.3, 1.0 * 0.3, 2.0 * 0.3])
    # Equal points: each adds nothing the other does not cover.
    assert hypervolume_contributions([(0.5, 4.0), (0.5, 4.0)]) == [0.0, 0.0]
    # Scaling throughput scales every contribution alike.
    scaled = [(a, t * 1000) for a, t in front]
    assert hypervolume_contributions(scaled) == pytest.approx(
        [1000 * c for c in hypervolume_contributions(front)])


def test_contribution_breaks_the_tie_between_the_two_ends_of_a_front() -> None:
    # Both ends are infinitely isolated; the fast end adds far more hypervolume.
    front = [(0.95, 100.0), (0.9, 900.0), (0.89, 950.0), (0.5, 5000.0)]
    fast = decide(front[3], front[:3], eta=3, min_trials=1)
    accurate = decide(front[0], front[1:], eta=3, min_trials=1)
    assert fast.keep and fast.rank == 1
    assert not accurate.keep and accurate.rank == 2


def test_crowding_breaks_ties_within_a_front() -> None:
    # Six points on one front: the two ends are infinitely isolated, so they are the two that
    # continue (6 // 3 = 2); an inner point is pruned even though nothing dominates it.
    front = [(1.0, 0.0), (0.8, 1.0), (0.79, 1.1), (0.78, 1.2), (0.2, 8.0), (0.0, 10.0)]
    for i, me in enumerate(front):
        decision = decide(me, front[:i] + front[i + 1:], eta=3, min_trials=1)
        assert decision.keep == (i in (0, 5)), (i, decision)


# ---------------------------------------------------------------------------------------------
# end to end: real studies, real processes

PRUNE_SPACE = "mem_size = [8, 16, 32]\nheads = [1, 2, 4]\nnorm = [\"softmax\", \"double\"]"
EPOCHS = 9  # rungs at epochs 1 and 3 (η = 3)
MIN_TRIALS = 2


def make_prune_config(directory: Path) -> Path:
    config = write_tiny_config(directory, space=PRUNE_SPACE)
    text = config.read_text(encoding="utf-8")
    config.write_text(f"[study]\nprune_min_trials = {MIN_TRIALS}\n\n{text}", encoding="utf-8")
    return config


def explore(directory: Path, *args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    proc = subprocess.run([str(EXPLORE), *args], cwd=directory, env=clean_env(),
                          capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc


def run_args(trials: int, seed: int = 5) -> tuple[str, ...]:
    return ("study", "run", "--name", "p", "--config", "tiny.toml", "--epochs", str(EPOCHS),
            "--trials", str(trials), "--seed", str(seed), "--prune", "--sampler", "random",
            "--keep-checkpoints", "none", "-q")


def worker_pid(t: FrozenTrial) -> int:
    return int(t.user_attrs["worker"]["pid"])


def trained(study: optuna.Study) -> list[FrozenTrial]:
    """Trials that trained (not duplicates answered from the study), in creation order."""
    return [t for t in study.get_trials(states=(TrialState.COMPLETE, TrialState.PRUNED))
            if t.user_attrs.get("duplicate_of") is None and t.user_attrs.get("history")]


def replay_decisions(study: optuna.Study) -> list[tuple[FrozenTrial, int, object]]:
    """Recompute every rung decision from the stored histories: with one process at a time,
    a trial at a rung saw exactly the earlier trained trials that reached that rung."""
    seen: list[tuple[FrozenTrial, int, object]] = []
    done = trained(study)
    for t in done:
        history = t.user_attrs["history"]
        me_thr = t.user_attrs["throughput"]["median"]
        for epoch in rungs(EPOCHS, 3):
            if len(history) < epoch:
                break
            others = [(u.user_attrs["history"][epoch - 1]["accuracy"],
                       u.user_attrs["throughput"]["median"])
                      for u in done
                      if u.number < t.number and len(u.user_attrs["history"]) >= epoch]
            decision = decide((history[epoch - 1]["accuracy"], me_thr), others, 3, MIN_TRIALS)
            seen.append((t, epoch, decision))
    return seen


@pytest.fixture(scope="module")
def pruned_study(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, optuna.Study, int]:
    """A pruned study made by two sequential processes (6 trials, then 12 in all)."""
    directory = tmp_path_factory.mktemp("prune")
    make_prune_config(directory)
    first = explore(directory, *run_args(6))
    assert "budget reached" in first.stdout + first.stderr or first.returncode == 0
    explore(directory, *run_args(12, seed=5))
    study = optuna.load_study(study_name="p", storage=f"sqlite:///{directory / 'explore.db'}")
    first_pids = {worker_pid(t) for t in study.trials[:6]}
    assert len(first_pids) == 1
    return directory, study, first_pids.pop()


@pytest.mark.slow
def test_pruned_trials_carry_their_reason_and_never_reach_the_front(
        pruned_study: tuple[Path, optuna.Study, int]) -> None:
    _, study, _ = pruned_study
    pruned = [t for t in trained(study) if t.state == TrialState.PRUNED]
    complete = [t for t in trained(study) if t.state == TrialState.COMPLETE]
    assert pruned, "no trial was pruned"
    assert complete
    for t in pruned:
        epoch = t.user_attrs["pruned_at_epoch"]
        assert epoch in rungs(EPOCHS, 3)
        rank, size = t.user_attrs["rung_rank"]
        assert size >= MIN_TRIALS and rank > max(1, size // 3)
        assert t.user_attrs["prune_reason"].startswith(f"MO-ASHA rung at epoch {epoch}:")
        assert f"ranked {rank} of {size}" in t.user_attrs["prune_reason"]
        # It trained fewer epochs: exactly up to the rung that stopped it.
        assert len(t.user_attrs["history"]) == epoch < EPOCHS
        assert t.values is None
    for t in complete:
        assert len(t.user_attrs["history"]) == EPOCHS
        assert "prune_reason" not in t.user_attrs
    best = {t.number for t in study.best_trials}
    assert best and best.isdisjoint(t.number for t in pruned)
    assert all(study.trials[n].state == TrialState.COMPLETE for n in best)
    # Pruning saved time: a pruned trial trained for less time than the complete ones did.
    mean_full = sum(sum(h["seconds"] for h in t.user_attrs["history"]) for t in complete) / len(
        complete)
    mean_pruned = sum(sum(h["seconds"] for h in t.user_attrs["history"]) for t in pruned) / len(
        pruned)
    assert mean_pruned < mean_full


@pytest.mark.slow
def test_every_rung_decision_replays_from_the_stored_histories(
        pruned_study: tuple[Path, optuna.Study, int]) -> None:
    _, study, _ = pruned_study
    replayed = replay_decisions(study)
    assert replayed
    for t, epoch, decision in replayed:
        if t.state == TrialState.PRUNED and t.user_attrs["pruned_at_epoch"] == epoch:
            assert not decision.keep, (t.number, epoch, decision)
            assert t.user_attrs["rung_rank"] == [decision.rank, decision.size]
        else:
            assert decision.keep, (t.number, epoch, decision)


@pytest.mark.slow
def test_a_trial_of_one_process_is_ranked_against_another_process(
        pruned_study: tuple[Path, optuna.Study, int]) -> None:
    _, study, first_pid = pruned_study
    done = trained(study)
    second = [t for t in done if worker_pid(t) != first_pid]
    assert second, "the second process trained nothing"
    crossed = 0
    for t, epoch, decision in replay_decisions(study):
        if worker_pid(t) == first_pid:
            continue
        from_first = [u for u in done if worker_pid(u) == first_pid
                      and len(u.user_attrs["history"]) >= epoch]
        # The trial's rung held every trial of the first process that reached it.
        assert decision.size >= len(from_first) + 1
        if t.state == TrialState.PRUNED and t.user_attrs.get("pruned_at_epoch") == epoch:
            assert t.user_attrs["rung_rank"][1] == decision.size
            crossed += 1
    assert crossed, "no trial of the second process was pruned"


@pytest.mark.slow
def test_a_duplicate_of_a_pruned_trial_is_pruned_without_training(
        pruned_study: tuple[Path, optuna.Study, int], tmp_path: Path) -> None:
    directory, study, _ = pruned_study
    copy = tmp_path / "explore.db"
    copy.write_bytes((directory / "explore.db").read_bytes())
    (tmp_path / "tiny.toml").write_text((directory / "tiny.toml").read_text())
    url = f"sqlite:///{copy}"
    mine = optuna.load_study(study_name="p", storage=url)
    victim = next(t for t in trained(mine) if t.state == TrialState.PRUNED)
    before = len(mine.trials)
    # The same experiment: its configuration and replicate index too (racing may have pruned a
    # replicate r > 0, whose params alone would ask for replicate 0, another experiment).
    identity = {k: victim.user_attrs[k] for k in (ATTR_CONFIGURATION, ATTR_REPLICATE)
                if k in victim.user_attrs}
    mine.enqueue_trial(victim.params, user_attrs=identity)
    started = time.perf_counter()
    explore(tmp_path, *run_args(13))
    assert time.perf_counter() - started < 120
    mine = optuna.load_study(study_name="p", storage=url)
    twin = mine.trials[before]
    assert twin.params == victim.params
    assert twin.state == TrialState.PRUNED
    assert twin.user_attrs["duplicate_of"] == victim.number
    assert "history" not in twin.user_attrs
    assert twin.duration is not None and twin.duration.total_seconds() < 1.0
