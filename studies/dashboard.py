"""``explore study dashboard``: optuna-dashboard on the study storage and its checkpoint store.

optuna-dashboard (the ``dashboard`` extra) serves the storage read-write, as its own CLI does; the
checkpoints the runner uploads appear as trial artifacts because the same
``FileSystemArtifactStore`` directory is passed as ``artifact_store``.
"""

from __future__ import annotations

from collections.abc import Callable
from socketserver import ThreadingMixIn
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from studies.catalog import open_catalog
from studies.errors import ExploreError
from studies.storage import open_storage, parse_storage

__all__ = ["dashboard_app", "serve_dashboard"]


class _ThreadingServer(ThreadingMixIn, WSGIServer):
    daemon_threads = True  # a slow browser never keeps the process alive


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 (the base's name)
        pass


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
    return optuna_dashboard.wsgi(backend, artifact_store=store)


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
