"""What every `verifier` command shares: its error type, the settings and the clock it reads
once, who is running it, the registry's connection (verifier/cli.py and verifier/cli_events.py)."""

from __future__ import annotations

import datetime as dt

import click

from . import clock, db, errors, settings


class CliError(errors.VerifierError):
    """A failure of the command line itself (an unreadable image, a missing passphrase...)."""

    def __init__(self, message: str, exit_code: int = 1):
        super().__init__(message)
        self.exit_code = exit_code


class Run:
    """What one command reads once: the time it started, and the settings (on first use, so a
    command that needs none is not stopped by an unrelated bad variable)."""

    def __init__(self) -> None:
        self.now = clock.now()
        self._settings: settings.Settings | None = None

    @property
    def settings(self) -> settings.Settings:
        if self._settings is None:
            self._settings = settings.load()
        return self._settings


def _run() -> Run:
    return click.get_current_context().find_root().ensure_object(Run)


def _settings() -> settings.Settings:
    return _run().settings


def _now() -> dt.datetime:
    """The command's time: read once, when the command started."""
    return _run().now


def _actor() -> str:
    import getpass

    try:
        return "cli:" + getpass.getuser()
    except (KeyError, OSError):
        return "cli"


def _open_registry(create: bool = False) -> db.Conn:
    """The registry's connection, with interrupted batches recovered first."""
    from . import issue

    conn: db.Conn = db.connect(_settings().database, create=create)
    issue.recover_interrupted(conn, _now())
    return conn


def read_upto(path: str, limit: int) -> bytes:
    """A file's bytes (`-`: standard input), at most `limit` + 1 of them: more than `limit` says it is
    too large without reading it all. Unreadable: a CliError with exit status 2."""
    try:
        with click.open_file(path, "rb") as fh:
            data: bytes = fh.read(limit + 1)
    except OSError as exc:
        raise CliError(f"cannot read {path}: {exc.strerror}", 2) from None
    return data
