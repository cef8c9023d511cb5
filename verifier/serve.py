"""`verifier serve`: the lookup server under gunicorn, with sync workers sized to the cores.

Settings come from `settings.load()` (the caller's, or loaded here once, before the workers fork).
A log sequencer runs beside the workers in a process of its own (it dies with the server): it
builds the transparency log's tree and signs checkpoints with the log key, which the workers never
read. Every node runs one and one of them leads (verifier/sequencer.py).
"""

from __future__ import annotations

import os
import subprocess
import sys

import gunicorn
from flask import Flask
from gunicorn.app.base import BaseApplication

from . import processes, settings
from .web import create_app
from .web.state import ServerState


class LookupServer(BaseApplication):  # type: ignore[misc]  # gunicorn is untyped
    """gunicorn running create_app(), configured in code rather than from a file."""

    def __init__(self, options: dict[str, object], loaded: settings.Settings | None = None):
        self.options = options
        self.loaded = loaded
        super().__init__()

    def load_config(self) -> None:
        for key, value in self.options.items():
            self.cfg.set(key, value)

    def load(self) -> Flask:
        app = create_app(loaded=self.loaded or settings.load())
        state: ServerState = app.extensions["verifier"]
        state.resolver.warm_up()  # load the region table once, before the workers fork
        state.settings()  # fail now on unreadable keys, not on the first scan
        return app


def default_workers() -> int:
    """One sync worker a core: measured best tail latency for a write on every request."""
    return max(2, os.cpu_count() or 1)


def start_sequencer() -> subprocess.Popen[bytes]:
    """`verifier sequence` beside this server, in its process group, killed by the kernel if this
    process dies (PR_SET_PDEATHSIG). A process of its own, not a multiprocessing child: gunicorn's
    workers are forked from this process and must not inherit (and, exiting, terminate) it. It
    inherits this process's environment, where the PostgreSQL URL came from (never an argument:
    `ps` would show a password)."""
    return subprocess.Popen(
        [sys.executable, "-m", "verifier", "sequence"],
        stdin=subprocess.DEVNULL,
        preexec_fn=processes.arm_parent_death_signal,  # noqa: PLW1509  (no threads yet: before gunicorn)
    )


def run(
    host: str,
    port: int,
    workers: int | None = None,
    access_log: bool = False,
    loaded: settings.Settings | None = None,
    with_sequencer: bool = True,
) -> None:
    loaded = loaded or settings.load()
    child = start_sequencer() if with_sequencer else None
    starter = os.getpid()
    try:
        _serve(host, port, workers, access_log, loaded)
    finally:
        if child is not None and os.getpid() == starter:  # not in a worker leaving the forked stack
            child.terminate()
            try:
                child.wait(10)
            except subprocess.TimeoutExpired:
                child.kill()


def _serve(host: str, port: int, workers: int | None, access_log: bool, loaded: settings.Settings) -> None:
    gunicorn.SERVER = "verifier"  # the Server header names no version
    LookupServer(
        {
            "bind": f"{host}:{port}",
            "workers": workers or default_workers(),
            "worker_class": "sync",
            "preload_app": True,
            "timeout": 30,
            "graceful_timeout": 10,
            "keepalive": 5,
            # No access log by default: it would hold full IP addresses and codes (docs/operations.md).
            "accesslog": "-" if access_log else None,
            "errorlog": "-",
            "loglevel": "warning",
            "proc_name": "verifier-lookup",
            # gunicorn 27's control socket defaults to one path per user (~/.gunicorn/gunicorn.ctl):
            # two lookup nodes on one host would share it. Nothing of ours uses it.
            "control_socket_disable": True,
        },
        loaded,
    ).run()
