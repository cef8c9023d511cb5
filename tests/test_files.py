"""Files with secrets or personal data are private: 0600 files in 0700 folders, whatever the umask."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest
from conftest import database_env
from together import run_together

from verifier import db, files
from verifier.cli import cli
from verifier.web import _instance_secret


def mode_of(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.fixture
def open_umask():
    """umask 0: every mode asserted below is set by the code, not inherited from the umask."""
    previous = os.umask(0)
    yield
    os.umask(previous)


@pytest.fixture
def registry(instance, new_database, monkeypatch):
    """A new database of the test's engine that the instance's commands use (on SQLite the
    instance's own file); its location."""
    location = new_database("instance/verifier.db")
    for name, value in database_env(location).items():
        monkeypatch.setenv(name, value)
    return location


@pytest.mark.sqlite_only("the modes of the SQLite database file and its side files")
def test_database_files_are_private(instance, registry, open_umask):
    conn = db.connect(instance / "verifier.db")
    with db.transaction(conn):
        conn.execute("INSERT INTO enterprises (name, created_at) VALUES ('x', '2026-11-22')")
    side = [Path(f"{instance / 'verifier.db'}{suffix}") for suffix in ("", "-wal", "-shm", "-writer.lock")]
    assert {p.name: mode_of(p) for p in side} == {p.name: 0o600 for p in side}
    assert mode_of(instance) == 0o700
    conn.close()


@pytest.mark.sqlite_only("the modes of the SQLite database file and its side files")
def test_loose_database_is_tightened_on_connect(instance, registry, open_umask):
    db.connect(instance / "verifier.db").close()
    side = [Path(f"{instance / 'verifier.db'}{suffix}") for suffix in ("", "-wal", "-shm", "-writer.lock")]
    for path in side:
        path.touch()
        os.chmod(path, 0o666)
    conn = db.connect(instance / "verifier.db")  # open: SQLite removes -wal and -shm on the last close
    assert {p.name: mode_of(p) for p in side} == {p.name: 0o600 for p in side}
    conn.close()


def test_backups_are_private(registry, runner, open_umask, tmp_path):
    """A backup is a SQLite file on both engines (PostgreSQL's is copied into one)."""
    db.connect(registry).close()
    target = tmp_path / "backups" / "daily" / "verifier.db"
    result = runner.invoke(cli, ["db", "backup", str(target)])
    assert result.exit_code == 0, result.stderr
    assert mode_of(target) == 0o600
    assert (mode_of(target.parent), mode_of(target.parent.parent)) == (0o700, 0o700)  # folders we made


@pytest.mark.sqlite_only("restore replaces the SQLite file (PostgreSQL restores with `db copy` into a new database)")
def test_a_restored_database_is_private(instance, registry, runner, open_umask, tmp_path):
    db.connect(registry).close()
    target = tmp_path / "backups" / "daily" / "verifier.db"
    assert runner.invoke(cli, ["db", "backup", str(target)]).exit_code == 0
    os.chmod(target, 0o644)
    assert runner.invoke(cli, ["db", "restore", str(target)]).exit_code == 0
    assert mode_of(instance / "verifier.db") == 0o600  # the restored database, whatever the backup's mode


def test_existing_folders_are_left_as_they_are(tmp_path, open_umask):
    shared = tmp_path / "shared"
    shared.mkdir(mode=0o755)
    files.make_private_dir(shared / "instance")
    assert (mode_of(shared), mode_of(shared / "instance")) == (0o755, 0o700)


def test_secret_key_is_private(tmp_path, open_umask):
    secret = _instance_secret(tmp_path / "instance")
    assert len(secret) == 64 and mode_of(tmp_path / "instance" / "secret.key") == 0o600
    assert mode_of(tmp_path / "instance") == 0o700


def test_loose_secret_key_is_tightened(tmp_path):
    (tmp_path / "secret.key").write_text("ab" * 32)
    os.chmod(tmp_path / "secret.key", 0o644)
    assert _instance_secret(tmp_path) == b"ab" * 32 and mode_of(tmp_path / "secret.key") == 0o600


def test_empty_secret_key_is_a_clear_error(tmp_path):
    (tmp_path / "secret.key").touch()
    with pytest.raises(ValueError, match="secret.key is empty"):
        _instance_secret(tmp_path)


def test_processes_starting_at_once_read_the_same_secret(tmp_path):
    instance = tmp_path / "instance"
    job = (
        "from pathlib import Path\nfrom verifier.web import _instance_secret",
        f"print(_instance_secret(Path({str(instance)!r})).decode())",
    )
    done = run_together([job] * 8)
    assert [p.returncode for p in done] == [0] * 8, [p.stderr[-2000:] for p in done]
    secrets_read = {p.stdout.strip() for p in done}
    assert secrets_read == {(instance / "secret.key").read_text()} and len(secrets_read.pop()) == 64
    assert os.listdir(instance) == ["secret.key"]  # no temporary file left
