"""The duplicate cache: an experiment already evaluated in the study is never trained again,
and on small discrete spaces the sampler is kept from proposing it at all.

Each test copies a small real study (made once by an ``explore study run`` subprocess), forces a
repeat with ``study.enqueue_trial`` and continues the study with another real ``explore``
process: a restart, as a user would do it. A twin still RUNNING elsewhere is played by a trial
made with ``study.ask`` whose worker attr names a live (or dead) ``sleep`` process.
"""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import optuna
import pytest
from optuna.distributions import CategoricalDistribution
from optuna.trial import FrozenTrial, TrialState

from tests.conftest import EXPLORE, clean_env, spawned, write_tiny_config

NAME = "d"
EPOCHS = 2
SPACE = "mem_size = [8, 16, 32]\nheads = [1, 2]"  # 6 configurations
FINISHED = (TrialState.COMPLETE, TrialState.PRUNED)


def explore(directory: Path, *args: str, timeout: float = 240) -> dict:
    """Run ``explore`` in ``directory``; returns the JSON summary (the command must succeed)."""
    proc = subprocess.run([str(EXPLORE), *args, "-f", "json"], cwd=directory, env=clean_env(),
                          capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout)


def run_args(trials: int, *extra: str) -> tuple[str, ...]:
    return ("study", "run", "--name", NAME, "--trials", str(trials), "--keep-checkpoints",
            "none", "-q", *extra)


def make_base(directory: Path, *extra: str) -> Path:
    write_tiny_config(directory, space=SPACE)
    # No early stopping: every trained trial here trains all its epochs, whatever the default.
    explore(directory, *run_args(2, "--config", "tiny.toml", "--epochs", str(EPOCHS),
                                 "--seed", "11", "--sampler", "random", "--no-prune", *extra))
    return directory / "explore.db"


@pytest.fixture(scope="module")
def base_db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Two trained trials of a 6-configuration space, dedup on (the default)."""
    return make_base(tmp_path_factory.mktemp("dedup"))


@pytest.fixture
def study_dir(base_db: Path, tmp_path: Path) -> Path:
    """A private copy of the base study (tests change it)."""
    shutil.copy(base_db, tmp_path / "explore.db")
    return tmp_path


def load(directory: Path) -> optuna.Study:
    return optuna.load_study(study_name=NAME, storage=f"sqlite:///{directory / 'explore.db'}")


def is_duplicate(t: FrozenTrial) -> bool:
    return t.user_attrs.get("duplicate_of") is not None


def trained(study: optuna.Study) -> list[FrozenTrial]:
    return [t for t in study.get_trials(states=FINISHED) if not is_duplicate(t)]


def config_key(study: optuna.Study, params: dict) -> str:
    """The experiment key explore computes for ``params`` in this study (digits: 8×8, 1, 10)."""
    from explore.config import Settings
    from explore.plan import plan_trial
    from explore.run.opening import ATTR_SETTINGS

    settings = Settings.from_dict(study.user_attrs[ATTR_SETTINGS])
    return plan_trial(params, settings, (8, 1, 10)).key


def untried(study: optuna.Study) -> dict:
    done = [t.params for t in study.trials]
    for mem_size in (8, 16, 32):
        for heads in (1, 2):
            params = {"mem_size": mem_size, "heads": heads}
            if params not in done:
                return params
    raise AssertionError("every configuration was tried")


@pytest.fixture
def sleeper() -> Iterator[subprocess.Popen]:
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
    yield proc
    if proc.poll() is None:
        proc.kill()
    proc.wait()


def running_twin(study: optuna.Study, params: dict, pid: int) -> optuna.Trial:
    """A RUNNING trial of ``params`` owned by process ``pid`` on this host, as another
    ``explore`` process leaves it while it trains."""
    from explore.run.recovery import WorkerIdentity, _process_start

    twin = ask_fixed(study, params)
    twin.set_user_attr("config_key", config_key(study, params))
    twin.set_user_attr("worker", WorkerIdentity(socket.gethostname(), pid,
                                                _process_start(pid)).to_attr())
    return twin


@dataclass(frozen=True)
class BehindTwin:
    study: optuna.Study
    twin: optuna.Trial  # RUNNING, owned by another process
    waiter: FrozenTrial  # the same configuration, RUNNING in ``proc``, its key known
    proc: subprocess.Popen[str]  # ``explore study run`` with a budget of 4


@contextmanager
def behind_twin(directory: Path, pid: int) -> Iterator[BehindTwin]:
    """An untried configuration RUNNING in process ``pid`` (the twin) and enqueued again, and
    ``explore study run`` in the background until its trial of the enqueued configuration (the
    waiter) runs and knows its key (it then looks for twins). Budget 4: the two trained trials,
    a slot the twin holds while it runs, and one for the waiter. The run is killed if it is
    still running when the block ends."""
    study = load(directory)
    params = untried(study)
    twin = running_twin(study, params, pid)
    study.enqueue_trial(params)
    number = len(study.trials) - 1
    with spawned(directory, clean_env()) as start:
        proc = start(*run_args(4), "-f", "json")
        waiter = wait_for_key(study, number, timeout=120)
        yield BehindTwin(study, twin, waiter, proc)


def finished_output(proc: subprocess.Popen[str], timeout: float) -> str:
    """The stdout of ``proc`` once it has ended, which it must do with exit code 0."""
    out, err = proc.communicate(timeout=timeout)
    assert proc.returncode == 0, err[-3000:]
    return out


def ask_fixed(study: optuna.Study, params: dict) -> optuna.Trial:
    """``study.ask`` with ``params`` fixed: enqueue them, then ask takes the queued trial."""
    study.enqueue_trial(params)
    trial = study.ask({"mem_size": CategoricalDistribution([8, 16, 32]),
                       "heads": CategoricalDistribution([1, 2])})
    assert trial.params == params
    return trial


@pytest.mark.slow
def test_a_complete_configuration_is_answered_from_the_study(study_dir: Path) -> None:
    study = load(study_dir)
    original = study.trials[0]
    assert original.state == TrialState.COMPLETE and not is_duplicate(original)
    study.enqueue_trial(original.params)

    summary = explore(study_dir, *run_args(3))  # a new process: the cache survives restarts

    study = load(study_dir)
    repeat = study.trials[2]
    assert repeat.params == original.params
    assert repeat.state == TrialState.COMPLETE
    assert repeat.user_attrs["duplicate_of"] == original.number
    assert repeat.values == original.values
    assert repeat.user_attrs["throughput"] == original.user_attrs["throughput"]
    assert repeat.user_attrs["config_key"] == original.user_attrs["config_key"]
    assert "history" not in repeat.user_attrs  # nothing was trained
    assert repeat.duration is not None and repeat.duration.total_seconds() < 1.0
    # It cost no budget: three experiments were trained besides it.
    assert len(trained(study)) == 3
    assert summary["finished"] == 3
    assert summary["states"] == {"COMPLETE": 4}
    # A duplicate never shows twice on the front.
    assert original.number not in [row["number"] for row in summary["front"]] or \
        repeat.number not in [row["number"] for row in summary["front"]]


@pytest.mark.slow
def test_a_twin_running_elsewhere_is_waited_for_not_trained_twice(
        study_dir: Path, sleeper: subprocess.Popen) -> None:
    with behind_twin(study_dir, sleeper.pid) as run:
        assert run.waiter.user_attrs.get("config_key") == run.twin.user_attrs["config_key"]
        time.sleep(3.0)  # it keeps waiting: the twin's process is alive
        waiter = run.study.trials[run.waiter.number]
        assert waiter.state == TrialState.RUNNING
        assert "history" not in waiter.user_attrs and "model_config" not in waiter.user_attrs
        run.study.tell(run.twin, [0.5, 1234.0])  # the other process finishes the experiment
        out = finished_output(run.proc, timeout=240)
    study = load(study_dir)
    waiter = study.trials[run.waiter.number]
    assert waiter.state == TrialState.COMPLETE
    assert waiter.user_attrs["duplicate_of"] == run.twin.number
    assert waiter.values == [0.5, 1234.0]
    assert "history" not in waiter.user_attrs
    # The budget of 4: two trained before, the twin, one more trained after the wait.
    assert json.loads(out)["finished"] == 4
    assert len(trained(study)) == 4


@pytest.mark.slow
def test_a_twin_whose_process_dies_is_no_longer_waited_for(
        study_dir: Path, sleeper: subprocess.Popen) -> None:
    with behind_twin(study_dir, sleeper.pid) as run:
        time.sleep(1.5)
        sleeper.kill()  # the process training the twin dies mid-trial
        sleeper.wait()
        out = finished_output(run.proc, timeout=180)
    study = load(study_dir)
    assert study.trials[run.twin.number].state == TrialState.FAIL  # recovered as an orphan
    waiter = study.trials[run.waiter.number]
    assert waiter.state == TrialState.COMPLETE
    assert not is_duplicate(waiter)  # nobody else could answer it: trained once, here
    assert len(waiter.user_attrs["history"]) == EPOCHS
    # The dead twin was re-queued; its retry is then answered by the waiter, for free.
    retry = next(t for t in study.trials if t.user_attrs.get("retried_trial") == run.twin.number)
    assert retry.state == TrialState.COMPLETE
    assert retry.user_attrs["duplicate_of"] == waiter.number
    assert json.loads(out)["finished"] == 4
    assert len(trained(study)) == 4


@pytest.mark.slow
def test_no_dedup_trains_a_repeat_again(tmp_path: Path) -> None:
    make_base(tmp_path, "--no-dedup")
    study = load(tmp_path)
    original = study.trials[0]
    study.enqueue_trial(original.params)

    summary = explore(tmp_path, *run_args(3))

    study = load(tmp_path)
    repeat = study.trials[2]
    assert repeat.params == original.params
    assert repeat.state == TrialState.COMPLETE
    assert not is_duplicate(repeat)
    assert len(repeat.user_attrs["history"]) == EPOCHS
    assert summary["finished"] == 3 and len(trained(study)) == 3
    # The training seed comes from the experiment, not the trial number: on CPU the repeat
    # learns exactly what the original learned (only the measured throughput differs).
    assert repeat.user_attrs["seed"] == original.user_attrs["seed"]
    assert repeat.values[0] == original.values[0]


@pytest.mark.slow
def test_a_small_discrete_space_cannot_burn_the_budget(tmp_path: Path) -> None:
    """Two configurations, a budget of 10, one seed each: every configuration is trained once,
    the sampler proposes no repeat, and the run ends when the space is exhausted instead of
    retraining."""
    write_tiny_config(tmp_path, space="mem_size = [8, 16]")
    summary = explore(tmp_path, *run_args(10, "--config", "tiny.toml", "--epochs", "1",
                                          "--seed", "2", "--replicates", "1"))
    study = load(tmp_path)
    keys = [t.user_attrs["config_key"] for t in trained(study)]
    assert len(keys) == len(set(keys)) == 2
    assert summary["finished"] == 2
    assert summary["stopped"] == "search space exhausted"
    assert len(study.trials) == 2  # not even a free repeat


@pytest.mark.slow
def test_racing_spends_an_exhausted_space_budget_on_new_replicates(tmp_path: Path) -> None:
    """The same space with racing (the default): the rest of the budget goes to replicates,
    each a new experiment (its own key and seed), none a repeat of another."""
    write_tiny_config(tmp_path, space="mem_size = [8, 16]")
    summary = explore(tmp_path, *run_args(10, "--config", "tiny.toml", "--epochs", "1",
                                          "--seed", "2"))
    study = load(tmp_path)
    runs = trained(study)
    assert summary["finished"] == 10 == len(runs)
    assert len({t.user_attrs["config_key"] for t in runs}) == 10  # ten experiments
    assert len({t.user_attrs["seed"] for t in runs}) == 10
    pairs = {(t.user_attrs["configuration"], t.user_attrs["replicate"]) for t in runs}
    assert len(pairs) == 10 and len({c for c, _ in pairs}) == 2


def wait_for_key(study: optuna.Study, number: int, timeout: float) -> FrozenTrial:
    """Trial ``number`` once it runs and knows its experiment (it then looks for twins)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        trials = study.get_trials(deepcopy=False)
        if (len(trials) > number and trials[number].state == TrialState.RUNNING
                and "config_key" in trials[number].user_attrs):
            return trials[number]
        time.sleep(0.2)
    raise AssertionError(f"trial {number} did not start in {timeout} s")


# ---------------------------------------------------------------------------------------------
# the sampler side: repeats are not proposed


def default_points() -> list[dict]:
    from explore.config import Settings

    settings = Settings()
    return list(settings.space.combinations(settings.model))


def drive(sampler: optuna.samplers.BaseSampler, proposals: int,
          space: dict[str, list]) -> tuple[optuna.Study, int]:
    """Ask ``proposals`` trials; a repeat is answered like the duplicate cache does (the
    original's values, ``duplicate_of``). Returns the study and the number of repeats."""
    study = optuna.create_study(directions=["maximize", "maximize"], sampler=sampler)
    seen: dict[tuple, int] = {}
    repeats = 0
    for _ in range(proposals):
        trial = study.ask()
        point = tuple(trial.suggest_categorical(name, choices) for name, choices in space.items())
        # A fixed landscape: accuracy and throughput trade off with memory and heads.
        values = [0.9 + 0.0001 * point[1] - 0.01 * point[2], 1000.0 / (point[1] * point[2])]
        if point in seen:
            repeats += 1
            trial.set_user_attr("duplicate_of", seen[point])
        else:
            seen[point] = trial.number
        study.tell(trial, values)
    return study, repeats


DEFAULT_SPACE = {"attention": ["external"], "mem_size": [8, 16, 32, 64, 128],
                 "heads": [1, 2, 4, 8], "norm": ["softmax", "double"]}


@pytest.mark.parametrize("name", ["tpe", "random", "nsga2"])
def test_the_sampler_proposes_every_configuration_once(name: str) -> None:
    """40 proposals on the 40-configuration default space: 40 different configurations."""
    from explore.search.sampling import AvoidEvaluated

    base = {"tpe": optuna.samplers.TPESampler, "random": optuna.samplers.RandomSampler,
            "nsga2": optuna.samplers.NSGAIISampler}[name](seed=3)
    study, repeats = drive(AvoidEvaluated(base, default_points(), seed=3), 40, DEFAULT_SPACE)
    assert repeats == 0
    assert len({tuple(sorted(t.params.items())) for t in study.trials}) == 40


def test_without_the_wrapper_tpe_feeds_on_its_repeats() -> None:
    """The reason for the wrapper: answered repeats pull multi-objective TPE back to them."""
    _, repeats = drive(optuna.samplers.TPESampler(seed=3), 40, DEFAULT_SPACE)
    assert repeats >= 5


def test_a_configuration_running_elsewhere_is_not_proposed() -> None:
    from explore.search.sampling import AvoidEvaluated

    space = {"mem_size": [8, 16], "heads": [1, 2]}
    points = [{"mem_size": m, "heads": h} for m in (8, 16) for h in (1, 2)]
    study = optuna.create_study(directions=["maximize", "maximize"],
                                sampler=AvoidEvaluated(optuna.samplers.RandomSampler(seed=0),
                                                       points, seed=0))
    dists = {n: CategoricalDistribution(c) for n, c in space.items()}
    running = []
    for _ in range(4):  # four workers start at once: four different configurations
        trial = study.ask(dists)
        running.append(tuple(sorted(trial.params.items())))
    assert len(set(running)) == 4
    # With every configuration taken, the sampler's own choice stands (the cache answers it).
    fifth = study.ask(dists)
    assert tuple(sorted(fifth.params.items())) in running


def test_the_wrapper_keeps_the_samplers_choice_while_it_leads_somewhere_new() -> None:
    from explore.search.sampling import AvoidEvaluated

    class Fixed(optuna.samplers.RandomSampler):
        """Always the first choice: mem_size 8, heads 1."""

        def sample_independent(self, study, trial, name, dist):  # type: ignore[override]
            return dist.choices[0]

    points = [{"mem_size": m, "heads": h} for m in (8, 16) for h in (1, 2)]
    study = optuna.create_study(directions=["maximize", "maximize"],
                                sampler=AvoidEvaluated(Fixed(seed=0), points, seed=0))
    dists = {"mem_size": CategoricalDistribution([8, 16]),
             "heads": CategoricalDistribution([1, 2])}
    asked = []
    for _ in range(4):
        trial = study.ask(dists)
        asked.append((trial.params["mem_size"], trial.params["heads"]))
        study.tell(trial, [0.5, 1.0])
    # mem_size 8 is kept while (8, 2) is untried; only then does mem_size move to 16.
    assert asked[:2] == [(8, 1), (8, 2)]
    assert sorted(asked[2:]) == [(16, 1), (16, 2)]


def test_conditional_spaces_and_the_choice_of_wrapping() -> None:
    from explore.config import resolve_settings
    from explore.search.sampling import AvoidEvaluated, make_sampler

    ea_vs_sa = resolve_settings({"space": {"attention": ["external", "self"],
                                           "mem_size": [8, 16], "heads": [1, 2]}})
    sampler = make_sampler(ea_vs_sa, seed=0)
    assert isinstance(sampler, AvoidEvaluated)
    # Self-attention has no memory: 2 × 2 external + 2 self configurations.
    assert len(sampler.points) == 6
    study = optuna.create_study(directions=["maximize", "maximize"], sampler=sampler)
    seen = set()
    for _ in range(6):
        trial = study.ask()
        params = ea_vs_sa.space.suggest(trial, ea_vs_sa.model)
        seen.add(tuple(sorted(params.items())))
        study.tell(trial, [0.5, 1.0])
    assert len(seen) == 6
    # --no-dedup asks for repeats; a continuous range has no finite list; grid enumerates.
    no_dedup = resolve_settings({"study": {"dedup": False}})
    assert not isinstance(make_sampler(no_dedup, 0), AvoidEvaluated)
    continuous = resolve_settings({"space": {"lr": {"low": 1e-3, "high": 1e-1, "log": True}}})
    assert not isinstance(make_sampler(continuous, 0), AvoidEvaluated)
    grid = resolve_settings({"study": {"sampler": "grid"}})
    assert isinstance(make_sampler(grid, 0), optuna.samplers.GridSampler)
