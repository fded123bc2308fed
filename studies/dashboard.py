"""``explore study dashboard``: optuna-dashboard on the study storage and its checkpoint store.

optuna-dashboard (the ``dashboard`` extra) serves the storage read-write, as its own CLI does, with
the checkpoint folder as its ``artifact_store``.

A checkpoint's dashboard card is a *study* system attr ``dashboard:artifacts:{trial_id}:{id}``
holding the artifact's meta (id, file name, MIME type) as JSON: the dashboard lists a trial's
artifacts from those as well as from the trial's own ``artifacts:{id}`` system attrs (what
``optuna.artifacts.upload_artifact`` writes), and skips a value of JSON ``null``. A finished
trial's system attrs can never change again, but a study's can: when ``--keep-checkpoints
pareto`` removes a checkpoint, its card is set to ``null`` with it, so no card ever points to a
removed file. Studies written before this have trial-attached cards: a run that continues them
leaves a note file in place of each checkpoint it removes, and the dashboard serves such a note
for any card whose file is gone (:class:`_NotedStore`), so no download of a study explore made
answers HTTP 500, however old the study and without writing to it.
"""

from __future__ import annotations

import io
import json
import re
from collections.abc import Callable
from pathlib import Path
from socketserver import ThreadingMixIn
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from studies.catalog import open_catalog
from studies.errors import ExploreError
from studies.storage import open_storage, parse_storage

__all__ = ["CARD_PREFIX", "PLACEHOLDER_PREFIX", "card_key", "card_value", "checkpoint_filename",
           "MISSING_NOTE", "dashboard_app", "is_placeholder", "parse_card_key", "placeholder",
           "serve_dashboard"]

CARD_PREFIX = "dashboard:artifacts:"  # optuna-dashboard's study-level list of trial artifacts
CHECKPOINT_MIMETYPE = "application/x-pytorch"
_CARD_KEY = re.compile(r"dashboard:artifacts:(\d+):([0-9a-f-]{36})")


def checkpoint_filename(number: int) -> str:
    """``trial-0007.pt``: the name a trial's checkpoint downloads (and exports) under."""
    return f"trial-{number:04d}.pt"


# Studies from before the cards have a trial-attached card (Optuna's ``artifacts:<id>`` trial
# system attr), which cannot be removed once the trial finished. When their checkpoint goes, a
# short text file takes its place, so that the card downloads a note instead of an HTTP 500.
PLACEHOLDER_PREFIX = b"explore: no checkpoint here."


def placeholder(number: int, study: str) -> bytes:
    """The note left where a removed checkpoint of a trial with a fixed card was."""
    return PLACEHOLDER_PREFIX + (
        f" The checkpoint of trial {number} of study {study!r} was removed when the trial left "
        "the Pareto front (--keep-checkpoints pareto). "
        f"`explore study models {study} --out DIR` retrains the front's from their config and "
        "seed.\n").encode()


def is_placeholder(path: Path) -> bool:
    """Whether the file at ``path`` is such a note, not a checkpoint."""
    try:
        with path.open("rb") as f:
            return f.read(len(PLACEHOLDER_PREFIX)) == PLACEHOLDER_PREFIX
    except OSError:
        return False


def card_key(trial_id: int, artifact_id: str) -> str:
    """The study system attr that shows artifact ``artifact_id`` on trial ``trial_id``'s page
    (the storage's trial id, not the trial number)."""
    return f"{CARD_PREFIX}{trial_id}:{artifact_id}"


def parse_card_key(key: str) -> tuple[int, str] | None:
    """``(trial_id, artifact_id)`` of a checkpoint card's key; None for any other key."""
    match = _CARD_KEY.fullmatch(key)
    return (int(match.group(1)), match.group(2)) if match else None


def card_value(artifact_id: str | None, number: int = 0) -> str:
    """The card's value: the dashboard's artifact meta as JSON; ``None`` gives ``null`` (no
    card: the dashboard skips it)."""
    if artifact_id is None:
        return json.dumps(None)
    return json.dumps({"artifact_id": artifact_id, "filename": checkpoint_filename(number),
                       "mimetype": CHECKPOINT_MIMETYPE, "encoding": None})


class _ThreadingServer(ThreadingMixIn, WSGIServer):
    daemon_threads = True  # a slow browser never keeps the process alive


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 (the base's name)
        pass


MISSING_NOTE = PLACEHOLDER_PREFIX + (
    b" This card's checkpoint file was removed (its trial left the Pareto front under"
    b" --keep-checkpoints pareto, in a study written before explore kept its cards in step with"
    b" its files). `explore study models NAME --out DIR` retrains the front's checkpoints from"
    b" their config and seed.\n")


class _NotedStore:
    """The checkpoint store as the dashboard reads it: a file that is gone reads as a note."""

    def __init__(self, inner: Any) -> None:
        self._inner = inner

    def open_reader(self, artifact_id: str) -> Any:
        from optuna.artifacts.exceptions import ArtifactNotFound

        if self._inner is not None:
            try:
                return self._inner.open_reader(artifact_id)
            except (ArtifactNotFound, FileNotFoundError):
                pass
        return io.BytesIO(MISSING_NOTE)

    def write(self, artifact_id: str, content_body: Any) -> None:
        if self._inner is None:
            raise ExploreError("this study has no checkpoint folder to upload into")
        self._inner.write(artifact_id, content_body)

    def remove(self, artifact_id: str) -> None:
        if self._inner is not None:
            self._inner.remove(artifact_id)


def dashboard_app(storage: str | None) -> Any:
    """optuna-dashboard's WSGI app for ``storage`` (the database must exist)."""
    try:
        import optuna_dashboard
    except ModuleNotFoundError as exc:
        raise ExploreError("optuna-dashboard is not installed: pip install 'explore[dashboard]'"
                           ) from exc
    from optuna.artifacts import FileSystemArtifactStore

    spec = parse_storage(storage)
    with open_catalog(spec):
        pass  # a missing database is a clear error here, and nothing gets created
    backend = open_storage(spec, create=False)
    checkpoints = spec.artifact_dir() / "checkpoints"
    store = FileSystemArtifactStore(str(checkpoints)) if checkpoints.is_dir() else None
    return optuna_dashboard.wsgi(backend, artifact_store=_NotedStore(store))


def serve_dashboard(storage: str | None, host: str, port: int,
                    on_ready: Callable[[str], None]) -> None:
    """Serve the dashboard until interrupted; ``on_ready(url)`` once it accepts requests."""
    app = dashboard_app(storage)
    try:
        httpd = make_server(host, port, app, server_class=_ThreadingServer,
                            handler_class=_QuietHandler)
    except OSError as exc:
        raise ExploreError(f"cannot listen on {host}:{port}: {exc.strerror or exc}; "
                           "pass another --port or --host") from exc
    try:
        on_ready(f"http://{host}:{httpd.server_port}/dashboard/")
        httpd.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        httpd.server_close()
