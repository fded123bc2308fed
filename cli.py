"""The ``explore`` command line: parse options, call one library function, render its result.

Data goes to stdout (tables, JSON, CSV); diagnostics to stderr. Errors a user can act on are one
line on stderr with exit code 1 (failure) or 2 (bad input); tracebacks only with ``--debug``.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Sequence
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer
from rich.console import Console
from typer.core import TyperGroup

from studies.errors import ExploreError, UsageError


class _Group(TyperGroup):
    """The top command, with every parse error (a value a typed option cannot take, an unknown
    option or choice) as one line on stderr, exit code 2, like the errors the commands raise."""

    def main(self, args: Sequence[str] | None = None, prog_name: str | None = None,
             complete_var: str | None = None, standalone_mode: bool = True,
             windows_expand_args: bool = True, **extra: Any) -> Any:
        if not standalone_mode:  # the caller handles errors itself
            return super().main(args, prog_name, complete_var, False, windows_expand_args,
                                **extra)
        try:
            code = super().main(args, prog_name, complete_var, False, windows_expand_args,
                                **extra)
        except typer.Abort:
            sys.stderr.write("Aborted!\n")
            sys.exit(1)
        except typer.exceptions.TyperException as exc:  # the usage errors of Typer's click
            fmt = getattr(exc, "format_message", None)
            message = fmt() if callable(fmt) else str(exc)
            if type(exc).__name__ == "NoArgsIsHelpError":  # bare `explore study`: the help
                sys.stdout.write(f"{message}\n")
                sys.exit(2)
            ctx = getattr(exc, "ctx", None)
            hint = f" (`{ctx.command_path} --help` lists the options)" if ctx else ""
            sys.stderr.write(f"error: {' '.join(str(message).split())}{hint}\n")
            sys.exit(getattr(exc, "exit_code", 2))
        sys.exit(code if isinstance(code, int) else 0)


app = typer.Typer(
    name="explore",
    cls=_Group,
    help="Find the best external-attention designs for a dataset and a device.",
    context_settings={"help_option_names": ["-h", "--help"]},
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
study_app = typer.Typer(help="Create, run, browse and export studies.", no_args_is_help=True)
app.add_typer(study_app, name="study")

out = Console(soft_wrap=True)
err = Console(stderr=True, soft_wrap=True)
_state = {"debug": False}
T = TypeVar("T")

StorageOpt = Annotated[str | None, typer.Option(
    "--storage", envvar="EXPLORE_STORAGE", show_envvar=True,
    help="Study database: sqlite:///FILE.db (default explore.db here), postgresql+psycopg://…, "
         "mysql+pymysql://…, journal:FILE.log or redis://…")]
class Format(StrEnum):
    """``-f``: checked when the options are parsed (``-f yaml`` is refused by every command)."""

    TABLE = "table"
    JSON = "json"


class DataFormat(StrEnum):
    TABLE = "table"
    JSON = "json"
    CSV = "csv"


FormatOpt = Annotated[Format, typer.Option("-f", "--format", help="table or json")]
CompileOpt = Annotated[bool, typer.Option(
    "--compile/--no-compile",
    help="torch.compile the model first (as a study with [train] compile = true does)."
)]

PrecisionOpt = Annotated[str | None, typer.Option(
    help="auto (bf16 on CUDA, fp32 on CPU), fp32 or bf16 ([train] precision): training, "
         "evaluation and throughput.")]
DeviceOpt = Annotated[str, typer.Option(help="auto, cpu, cuda or cuda:K.")]
# The options `study run` and `study worker` share.
TimeoutOpt = Annotated[float | None, typer.Option(
    help="Start no new trial after this many seconds.")]
MaxFailuresOpt = Annotated[int, typer.Option(
    help="Stop after this many consecutive failed trials.")]
KeepCheckpointsOpt = Annotated[str, typer.Option(
    help="Keep trained weights of: pareto (the observed front and every configuration "
         "not confidently dominated), all or none.")]


def _version(value: bool) -> None:
    if value:
        from extattn import __version__

        typer.echo(f"explore {__version__}")
        raise typer.Exit()


@app.callback()
def main(
    version: Annotated[bool, typer.Option("--version", callback=_version, is_eager=True,
                                          help="Print the version and exit.")] = False,
    debug: Annotated[bool, typer.Option("--debug", help="Show tracebacks on errors.")] = False,
) -> None:
    """explore: multi-objective search of external-attention designs (accuracy vs images/s)."""
    _state["debug"] = debug


def guarded(fn: Callable[[], T]) -> T:
    """Run ``fn``; turn errors into one line on stderr and an exit code."""
    from rich.markup import escape

    from studies.storage import mask_secrets

    try:
        return fn()
    except typer.Exit:
        raise
    except ExploreError as exc:
        if _state["debug"]:
            raise
        # Escaped: messages name TOML sections ("[train] epochs"), which Rich reads as markup.
        err.print(f"[red]error:[/] {escape(mask_secrets(str(exc)))}", highlight=False)
        raise typer.Exit(code=exc.exit_code) from None
    except KeyboardInterrupt:
        raise typer.Exit(code=130) from None
    except Exception as exc:
        if _state["debug"]:
            raise
        from studies.diskfull import disk_full

        if (full := disk_full(exc)) is not None:  # any command writing a file on a full disk
            err.print(f"[red]error:[/] {escape(mask_secrets(str(full)))}", highlight=False)
            raise typer.Exit(code=1) from None
        text = mask_secrets(f"{exc.__class__.__name__}: {exc}".splitlines()[0])
        err.print(f"[red]error:[/] {escape(text)} (run with --debug for the traceback)",
                  highlight=False)
        raise typer.Exit(code=1) from None


@study_app.command("run")
def study_run(
    name: Annotated[str | None, typer.Option(
        "--name", "-n", help="Study name (default: the dataset's name)."
    )] = None,
    storage: StorageOpt = None,
    config: Annotated[Path | None, typer.Option(
        "--config", "-c",
        help="Settings file (TOML): [study] [data] [model] [train] [measure] [space]."
    )] = None,
    dataset: Annotated[str | None, typer.Option(
        help="digits (bundled), mnist, fashion-mnist, kmnist, cifar10, cifar100, svhn or "
             "imagefolder:PATH."
    )] = None,
    data_dir: Annotated[str | None, typer.Option(
        help="Where torchvision datasets are (default ./data)."
    )] = None,
    download: Annotated[bool | None, typer.Option(
        "--download/--no-download", help="Let torchvision download missing dataset files."
    )] = None,
    trials: Annotated[int | None, typer.Option(
        help="Total finished trials (COMPLETE + PRUNED) the study aims for."
    )] = None,
    timeout: TimeoutOpt = None,
    epochs: Annotated[int | None, typer.Option(help="Training epochs per trial.")] = None,
    sampler: Annotated[str | None, typer.Option(
        help="tpe (default), nsga2, nsga3, random, grid, gp or bruteforce."
    )] = None,
    seed: Annotated[int | None, typer.Option(help="Study seed (sampler and training).")] = None,
    replicates: Annotated[str | None, typer.Option(
        help='Training runs per configuration: "race" (seeds where they change the answer, '
             "the default) or K (every configuration K times; 1: one seed each)."
    )] = None,
    device: DeviceOpt = "auto",
    max_failures: MaxFailuresOpt = 5,
    keep_checkpoints: KeepCheckpointsOpt = "pareto",
    prune: Annotated[bool | None, typer.Option(
        "--prune/--no-prune",
        help="Multi-objective early stopping (MO-ASHA) of weak trials (default: off)."
    )] = None,
    dedup: Annotated[bool | None, typer.Option(
        "--dedup/--no-dedup",
        help="Answer repeated configurations from the study for free, and keep the sampler "
             "from proposing them (default: on)."
    )] = None,
    warm_start: Annotated[int | None, typer.Option(
        help="A new study probes every configuration's throughput (no training) and trains "
             "the N fastest first (default 3; 0: off)."
    )] = None,
    compile_: Annotated[bool | None, typer.Option(
        "--compile/--no-compile",
        help="torch.compile each trial's model ([train] compile_mode); compile time counts in "
             "neither objective (default: off)."
    )] = None,
    precision: PrecisionOpt = None,
    workers: Annotated[str, typer.Option(
        help="Worker processes on this machine: N or auto (one per core, or one per GPU)."
    )] = "1",
    devices: Annotated[str | None, typer.Option(
        help="One worker per listed device, e.g. cuda:0,cuda:1."
    )] = None,
    quiet: Annotated[bool, typer.Option(
        "--quiet", "-q", help="Print only the final summary."
    )] = False,
    fmt: FormatOpt = Format.TABLE,
) -> None:
    """Create a study, or continue it, and run trials until it has --trials finished ones."""
    from explore.config import explicit_settings
    from explore.run.opening import RunRequest
    from explore.run.progress import make_reporter
    from explore.run.runner import run_study
    from explore.run.workers import run_parallel

    explicit = explicit_settings({
        "dataset": dataset, "data_dir": data_dir, "download": download, "trials": trials,
        "epochs": epochs, "sampler": sampler, "seed": seed, "prune": prune, "dedup": dedup,
        "warm_start": warm_start, "compile": compile_, "precision": precision,
        "replicates": _replicates_value(replicates)})

    def go() -> Any:
        request = RunRequest(name=name, storage=storage, config_file=config, explicit=explicit,
                             timeout=timeout, device=device, max_failures=max_failures,
                             keep_checkpoints=keep_checkpoints)
        reporter = make_reporter(quiet or fmt == "json")
        if workers != "1" or devices:
            return run_parallel(request, reporter, workers, devices)
        return run_study(request, reporter)

    _print_summary(guarded(go), fmt)


@study_app.command("worker")
def study_worker(
    name: Annotated[str, typer.Option("--name", "-n", help="The study to join.")],
    storage: StorageOpt = None,
    device: DeviceOpt = "auto",
    timeout: TimeoutOpt = None,
    worker_index: Annotated[int, typer.Option(
        help="This worker's index on its machine (varies the sampler seed)."
    )] = 0,
    workers: Annotated[int, typer.Option(
        help="Workers sharing this machine (splits the CPU threads between them)."
    )] = 1,
    max_failures: MaxFailuresOpt = 5,
    keep_checkpoints: KeepCheckpointsOpt = "pareto",
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="Print only the summary.")] = False,
    fmt: FormatOpt = Format.TABLE,
) -> None:
    """Join an existing study (from any machine) with its stored settings and budget."""
    from explore.run.opening import RunRequest
    from explore.run.progress import make_reporter
    from explore.run.runner import run_study

    def go() -> Any:
        request = RunRequest(name=name, storage=storage, device=device, timeout=timeout,
                             worker=worker_index, workers=workers, max_failures=max_failures,
                             keep_checkpoints=keep_checkpoints, join_only=True,
                             shared_lock=True)
        return run_study(request, make_reporter(quiet or fmt == "json"))

    summary = guarded(go)
    if not quiet:
        _print_summary(summary, fmt)
    elif summary.exit_code:
        raise typer.Exit(code=summary.exit_code)


def _replicates_value(text: str | None) -> str | int | None:
    """``--replicates``: "race" or an integer (the settings check the range)."""
    if text is None:
        return None
    return int(text) if text.strip().isdigit() else text.strip()


def _print_summary(summary: Any, fmt: str) -> None:
    from studies.views import print_run_summary

    print_run_summary(summary, fmt, out)
    if summary.exit_code:
        err.print(f"interrupted: continue with `explore study run --name {summary.study_name} "
                  f"--storage {summary.storage_url}`", highlight=False)
        raise typer.Exit(code=summary.exit_code)


model_app = typer.Typer(help="One configuration, without a study.", no_args_is_help=True)
app.add_typer(model_app, name="model")

ModelParamOpt = Annotated[list[str] | None, typer.Option(
    "--set", "-s", help="A model or training field, e.g. -s mem_size=32 -s norm=softmax."
)]


def _parse_sets(items: list[str] | None) -> dict[str, Any]:
    """``field=value`` pairs; values are read as JSON when they parse (numbers, true/false)."""
    out: dict[str, Any] = {}
    for item in items or []:
        if "=" not in item:
            raise UsageError(f"--set {item!r}: use FIELD=VALUE, e.g. --set mem_size=32")
        key, raw = item.split("=", 1)
        try:
            out[key.strip()] = json.loads(raw)
        except json.JSONDecodeError:
            out[key.strip()] = raw
    return out


def _train_options(compile_: bool, precision: str | None) -> dict[str, Any]:
    """``[train]`` settings of ``model bench|train``'s --compile and --precision."""
    return {**({"compile": True} if compile_ else {}),
            **({"precision": precision} if precision is not None else {})}


@model_app.command("list")
def model_list(fmt: FormatOpt = Format.TABLE) -> None:
    """The registered model presets."""
    from extattn import list_models
    from studies.views import print_models

    presets = {name: cfg.to_dict() for name, cfg in list_models().items()}
    print_models(presets, fmt, out)


@model_app.command("bench")
def model_bench(
    sets: ModelParamOpt = None,
    dataset: Annotated[str, typer.Option(help="Dataset whose image shape to use.")] = "digits",
    device: DeviceOpt = "auto",
    threads: Annotated[int, typer.Option(help="torch threads (0: torch's default).")] = 0,
    compile_: CompileOpt = False,
    precision: PrecisionOpt = None,
    fmt: FormatOpt = Format.TABLE,
) -> None:
    """Inference throughput, FLOPs and parameters of one configuration."""
    from explore.run.single import bench_model
    from studies.views import print_bench

    explicit: dict[str, dict[str, Any]] = {"data": {"dataset": dataset},
                                           "train": _train_options(compile_, precision)}
    result = guarded(lambda: bench_model(explicit, _parse_sets(sets), device, threads))
    print_bench(result, fmt, out)


@model_app.command("train")
def model_train(
    sets: ModelParamOpt = None,
    dataset: Annotated[str, typer.Option(help="Dataset to train on.")] = "digits",
    data_dir: Annotated[str | None, typer.Option(help="Where torchvision datasets are.")] = None,
    epochs: Annotated[int | None, typer.Option(help="Training epochs.")] = None,
    seed: Annotated[int, typer.Option(help="Seed (with the configuration).")] = 0,
    device: DeviceOpt = "auto",
    out_path: Annotated[Path | None, typer.Option(
        "--out", help="Save the trained checkpoint here."
    )] = None,
    compile_: CompileOpt = False,
    precision: PrecisionOpt = None,
    fmt: FormatOpt = Format.TABLE,
) -> None:
    """Train one configuration exactly as a study trial would (same seed, same result)."""
    from explore.run.single import train_one
    from studies.views import print_trained

    explicit: dict[str, dict[str, Any]] = {"data": {"dataset": dataset}, "study": {"seed": seed}}
    if data_dir:
        explicit["data"]["data_dir"] = data_dir
    explicit["train"] = _train_options(compile_, precision)
    if epochs is not None:
        explicit["train"]["epochs"] = epochs

    def show(record: Any) -> None:
        if fmt != "json":
            err.print(f"epoch {record.epoch}: accuracy {record.accuracy:.4f}  "
                      f"loss {record.loss:.4f}  {record.seconds:.2f}s")

    result = guarded(lambda: train_one(explicit, _parse_sets(sets), device, out_path, show))
    print_trained(result, fmt, out, out_path)


# ---- browsing commands: thin wrappers over studies/ (list, show, pareto, history, export, plot,
# ---- compare, report, delete, copy, dashboard, models) ----

DataFormatOpt = Annotated[DataFormat, typer.Option("-f", "--format",
                                                   help="table, json or csv")]
StudyArg = Annotated[str, typer.Argument(help="Study name.", show_default=False)]


def _out(help_text: str) -> Any:
    """The required ``--out/-o`` of a command that writes a file or folder."""
    return typer.Option("--out", "-o", help=help_text, show_default=False)


def _wrote(label: str, write: Callable[[], Path]) -> None:
    """Run ``write`` under :func:`guarded` and name what it wrote on stderr."""
    err.print(f"{label}: {guarded(write)}")


@study_app.command("list")
def study_list(storage: StorageOpt = None, fmt: DataFormatOpt = DataFormat.TABLE) -> None:
    """Every study: trials by state, front size, best accuracy and throughput, activity."""
    from studies.catalog import list_studies
    from studies.views import print_list

    rows = guarded(lambda: list_studies(storage))
    if not rows and fmt == "table":
        err.print("no studies yet: create one with `explore study run`")
        return
    print_list(rows, fmt, out)


@study_app.command("show")
def study_show(
    name: StudyArg,
    storage: StorageOpt = None,
    settings: Annotated[bool, typer.Option(
        "--settings", help="Also list every stored setting.")] = False,
    fmt: FormatOpt = Format.TABLE,
) -> None:
    """A study's trials by state, its noise-aware Pareto front, failures with reasons (and with
    --settings its stored settings)."""
    from studies.catalog import show_study
    from studies.views import print_show

    detail = guarded(lambda: show_study(storage, name))
    print_show(detail, fmt, out, settings)


@study_app.command("pareto")
def study_pareto(
    name: StudyArg,
    storage: StorageOpt = None,
    all_rows: Annotated[bool, typer.Option(
        "--all", help="Every configuration with its status (plausible, undecided, dominated); "
                      "with --observed, every COMPLETE trial with a pareto column."
    )] = False,
    observed: Annotated[bool, typer.Option(
        "--observed", help="Optuna's observed front instead (study.best_trials): single "
                           "trials, no noise model."
    )] = False,
    fmt: DataFormatOpt = DataFormat.TABLE,
) -> None:
    """The noise-aware Pareto front: each configuration's replicates pooled into means with 95%
    intervals and P(Pareto-optimal); the plausible ones (P >= 0.5) by default."""
    from studies.catalog import configured_study, pareto_front
    from studies.views import print_configured, print_front

    if observed:
        front = guarded(lambda: pareto_front(storage, name, include_dominated=all_rows))
        print_front(front, fmt, out, with_flag=all_rows)
        return
    result = guarded(lambda: configured_study(storage, name))
    print_configured(result, fmt, out, every=all_rows)


@study_app.command("history")
def study_history_cmd(
    name: StudyArg,
    storage: StorageOpt = None,
    plot: Annotated[Path | None, typer.Option(
        "--plot", help="Also draw hypervolume against trials and time into this PNG file."
    )] = None,
    fmt: DataFormatOpt = DataFormat.TABLE,
) -> None:
    """The recorded Pareto-front snapshots: finished trials, time, hypervolume, front size."""
    from studies.history import study_history
    from studies.views import print_history

    history = guarded(lambda: study_history(storage, name, plot))
    if not history.snapshots:
        err.print(f"study {name!r} has no snapshots yet (one is recorded when a trial "
                  "changes the front)")
    print_history(history, fmt, out)
    if history.plot is not None:
        err.print(f"plot: {history.plot}")


@study_app.command("export")
def study_export(
    name: StudyArg,
    out_path: Annotated[Path, _out("FILE.csv (one flattened row per trial) or FILE.json.")],
    storage: StorageOpt = None,
) -> None:
    """Every trial with params, values, state, times and user attrs, to CSV or JSON."""
    from studies.export import export_study

    result = guarded(lambda: export_study(storage, name, out_path))
    err.print(f"wrote {result.trials} trials of {name} to {result.path}")


@study_app.command("plot")
def study_plot(
    name: StudyArg,
    out_path: Annotated[Path, _out(
        "FILE.png (matplotlib) or FILE.html (interactive, needs plotly).")],
    storage: StorageOpt = None,
) -> None:
    """Accuracy against throughput: the front highlighted and connected, the rest grey."""
    from studies.plots import plot_study

    _wrote("plot", lambda: plot_study(storage, name, out_path))


@study_app.command("compare")
def study_compare(
    names: Annotated[list[str], typer.Argument(help="Two or more study names.",
                                               show_default=False)],
    storage: StorageOpt = None,
    out_path: Annotated[Path | None, typer.Option(
        "--out", "-o", help="Also draw the fronts overlaid into FILE.png or FILE.html."
    )] = None,
    fmt: DataFormatOpt = DataFormat.TABLE,
) -> None:
    """Hypervolume against one common reference point, front sizes and best values.

    Hypervolume is taken in (accuracy, throughput / T), T the highest throughput in any of the
    compared studies, against (0, 0): comparable across the studies of one comparison, in [0, 1].
    """
    from studies.compare import compare_studies
    from studies.views import print_compare

    result = guarded(lambda: compare_studies(storage, names, out_path))
    for note in result.notes:
        err.print(f"note: {note}")
    print_compare(result, fmt, out)
    if result.plot is not None:
        err.print(f"plot: {result.plot}")


@study_app.command("report")
def study_report(
    name: StudyArg,
    out_path: Annotated[Path, _out(
        "FILE.md (images written beside it) or FILE.html (self-contained).")],
    storage: StorageOpt = None,
) -> None:
    """Findings: the front, plots, hypervolume history, double vs softmax, S, heads, EA vs SA."""
    from studies.report import write_report

    _wrote("report", lambda: write_report(storage, name, out_path))


@study_app.command("delete")
def study_delete(
    name: StudyArg,
    storage: StorageOpt = None,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask.")] = False,
) -> None:
    """Delete a study, its Pareto snapshots and its checkpoints."""
    from studies.transfer import delete_study

    def ask(what: str) -> bool:
        if yes:
            return True
        try:
            return typer.confirm(f"Delete {what}, its snapshots and checkpoints?",
                                 default=False, err=True)
        except typer.Abort:  # end of input (Ctrl-D, no terminal): the answer is no
            return False

    result = guarded(lambda: delete_study(storage, name, confirm=ask))
    if not result.deleted:
        err.print("not deleted")
        raise typer.Exit(code=1)
    err.print(f"deleted {name} from {result.where}: {result.trials} trials, "
              f"{result.snapshots} snapshots, {result.checkpoints} checkpoints")


@study_app.command("copy")
def study_copy(
    name: StudyArg,
    to_storage: Annotated[str, typer.Option(
        "--to-storage", help="The storage URL to copy into (created when missing).",
        show_default=False,
    )],
    storage: StorageOpt = None,
    to_name: Annotated[str | None, typer.Option(
        "--to-name", help="Name of the copy (default: the same name)."
    )] = None,
) -> None:
    """Copy a study (optuna.copy_study) with its Pareto snapshots and checkpoints."""
    from studies.transfer import copy_study

    result = guarded(lambda: copy_study(storage, name, to_storage, to_name))
    shared = (f" ({result.shared} shared with {name}: one artifact folder; deleting either "
              "study keeps them while the other uses them)" if result.shared else "")
    err.print(f"copied {name} to {result.to_study} in {result.where}: {result.trials} trials, "
              f"{result.snapshots} snapshots, {result.checkpoints + result.shared} "
              f"checkpoints{shared}")


@study_app.command("dashboard")
def study_dashboard(
    storage: StorageOpt = None,
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on (0: any free port).")] = 8080,
) -> None:
    """optuna-dashboard on the study storage, with the checkpoints as trial artifacts."""
    from studies.dashboard import serve_dashboard

    def ready(url: str) -> None:
        out.print(url, highlight=False)
        sys.stdout.flush()
        err.print("serving optuna-dashboard; Ctrl-C stops it")

    guarded(lambda: serve_dashboard(storage, host, port, ready))


@study_app.command("confirm")
def study_confirm(
    name: StudyArg,
    storage: StorageOpt = None,
    seeds: Annotated[int, typer.Option(
        help="Fresh seeds per plausible configuration (never used by the search).")] = 3,
    device: DeviceOpt = "auto",
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="Print only the result.")] = False,
    fmt: FormatOpt = Format.TABLE,
) -> None:
    """Train the plausible front again on fresh seeds and set the search's estimates against
    theirs (the winner's optimism); the runs are kept in study NAME-confirm."""
    from explore.run.confirm import confirm_study
    from explore.run.progress import make_reporter
    from studies.views import print_confirm

    result = guarded(lambda: confirm_study(storage, name, seeds, device,
                                           make_reporter(quiet or fmt == "json")))
    print_confirm(result, fmt, out)


@study_app.command("models")
def study_models(
    name: StudyArg,
    out_dir: Annotated[Path, _out(
        "Directory for one checkpoint per plausible configuration (its most accurate "
        "replicate) + index.json.")],
    storage: StorageOpt = None,
    retrain: Annotated[bool, typer.Option(
        "--retrain/--no-retrain",
        help="Retrain a trial whose checkpoint was not kept (same config and seed).",
    )] = True,
    observed: Annotated[bool, typer.Option(
        "--observed", help="One per trial of Optuna's observed front (study.best_trials) "
                           "instead.")] = False,
    device: Annotated[str, typer.Option(help="Device for retraining: auto, cpu, cuda.")] = "cpu",
    fmt: FormatOpt = Format.TABLE,
) -> None:
    """Checkpoints of the plausible front, loadable with extattn.load_checkpoint."""
    from explore.run.export_models import export_models
    from studies.views import print_exported

    def note(message: str) -> None:
        err.print(message, highlight=False)

    result = guarded(lambda: export_models(storage, name, out_dir, retrain=retrain,
                                           device=device, on_note=note, observed=observed))
    print_exported(result.index, result.index_path, fmt, out)


if __name__ == "__main__":
    app()
