"""The one settings loader: every `VERIFIER_*` environment variable is read here, and only here.

Adapters (the CLI, `create_app`, `serve`) call `load()` once and pass the values they need down;
services and the core never read the environment. Secrets come from a variable or from the file
its `_FILE` twin names. A bad value is an `errors.InvalidInput` naming the variable.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from .errors import InvalidInput

DEFAULT_BASE_URL = "HTTP://127.0.0.1:8000/"
MIN_PIN_SECRET_BYTES = 16
_TRUE = ("1", "true", "yes", "on")


@dataclass(frozen=True)
class Settings:
    """Everything the environment configures, with the documented defaults (README, Settings)."""

    instance: Path
    keys_dir: Path
    database: str  # a SQLite path (VERIFIER_DB) or VERIFIER_DATABASE_URL: sqlite:///path or postgresql://...
    database_pool_size: int  # PostgreSQL connections a server process may hold
    base_urls: tuple[str, ...]  # the first one issues new codes
    jwks_file: Path | None
    key_passphrase: bytes | None
    pin_secret: bytes | None
    secret_key: bytes | None  # of the scan log's keyed hashes; None: the instance's secret.key
    label_font: str | None
    repeat_threshold: int
    ratelimit: str
    trusted_proxies: int
    trust_geo_headers: bool
    report_contact: str
    audit_budget: int  # SQLite VM steps one audit request may use
    audit_seconds: float
    audit_heavy_slots: int
    user_password: str | None  # `verifier users add` without a prompt
    debug: bool  # the CLI shows tracebacks of unexpected errors
    log_signing_key_file: Path | None  # the log key (C2SP note skey); read by the sequencer only, never the web
    log_public_key: str | None  # the log's vkey text (C2SP signed-note): checks checkpoints and receipts
    log_witnesses: tuple[str, ...]  # witness vkeys whose cosignatures the log accepts and serves
    log_checkpoint_seconds: float  # the sequencer signs a checkpoint at most this often


def load(env: Mapping[str, str] | None = None) -> Settings:
    """The settings from `env` (the process environment by default)."""
    env = os.environ if env is None else env
    instance = Path(env.get("VERIFIER_INSTANCE") or "instance")
    passphrase = env.get("VERIFIER_KEY_PASSPHRASE")
    return Settings(
        instance=instance,
        keys_dir=Path(env.get("VERIFIER_KEYS") or instance / "keys"),
        database=database(env, instance),
        database_pool_size=_int(env, "VERIFIER_DATABASE_POOL_SIZE", 4, low=1),
        base_urls=base_urls(env),
        jwks_file=Path(env["VERIFIER_JWKS"]) if env.get("VERIFIER_JWKS") else None,
        key_passphrase=passphrase.encode("utf-8") if passphrase is not None else None,
        pin_secret=pin_secret(env),
        secret_key=secret(env, "VERIFIER_SECRET_KEY"),
        label_font=env.get("VERIFIER_LABEL_FONT") or None,
        repeat_threshold=_int(env, "VERIFIER_REPEAT_THRESHOLD", 4, low=1),
        ratelimit=env.get("VERIFIER_RATELIMIT", "120/minute"),
        trusted_proxies=_int(env, "VERIFIER_TRUSTED_PROXIES", 0, low=0),
        trust_geo_headers=env.get("VERIFIER_TRUST_GEO_HEADERS", "").strip().lower() in _TRUE,
        report_contact=env.get("VERIFIER_REPORT_CONTACT", "12315"),
        audit_budget=_int(env, "VERIFIER_AUDIT_BUDGET", 100_000_000, low=1),
        audit_seconds=_float(env, "VERIFIER_AUDIT_SECONDS", 5.0),
        audit_heavy_slots=_int(env, "VERIFIER_AUDIT_HEAVY_SLOTS", 1, low=1),
        user_password=env.get("VERIFIER_USER_PASSWORD"),
        debug=env.get("VERIFIER_DEBUG", "").strip().lower() in _TRUE,
        log_signing_key_file=Path(env["VERIFIER_LOG_KEY_FILE"]) if env.get("VERIFIER_LOG_KEY_FILE") else None,
        log_public_key=env.get("VERIFIER_LOG_PUBLIC_KEY", "").strip() or None,
        log_witnesses=log_witnesses(env),
        log_checkpoint_seconds=_float(env, "VERIFIER_LOG_CHECKPOINT_SECONDS", 2.0),
    )


def log_witnesses(env: Mapping[str, str]) -> tuple[str, ...]:
    """Witness vkeys, one a line (or comma-separated), from VERIFIER_LOG_WITNESSES or its _FILE twin."""
    raw = secret(env, "VERIFIER_LOG_WITNESSES")
    if raw is None:
        return ()
    text = raw.decode("utf-8").replace(",", "\n")
    return tuple(line.strip() for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#"))


def database(env: Mapping[str, str], instance: Path) -> str:
    """Where the registry is: VERIFIER_DATABASE_URL (or the file VERIFIER_DATABASE_URL_FILE names,
    for a URL holding a password), else the SQLite file VERIFIER_DB, else instance/verifier.db."""
    url = secret(env, "VERIFIER_DATABASE_URL")
    if url is not None:
        text = url.decode("utf-8").strip()
        if text.startswith(("postgresql://", "postgres://")):
            return text
        if text.startswith("sqlite:///") and len(text) > len("sqlite:///"):
            return text.removeprefix("sqlite:///")  # sqlite:///relative, sqlite:////absolute
        raise InvalidInput("VERIFIER_DATABASE_URL must be sqlite:///path or postgresql://user@host:port/name")
    return str(env.get("VERIFIER_DB") or instance / "verifier.db")


def base_urls(env: Mapping[str, str]) -> tuple[str, ...]:
    """The addresses codes are issued under (comma-separated); the first one is used for new codes."""
    raw = env.get("VERIFIER_BASE_URL") or DEFAULT_BASE_URL
    return tuple(part.strip() for part in raw.split(",") if part.strip())


def secret(env: Mapping[str, str], name: str) -> bytes | None:
    """A secret from `name`, or from the file `name_FILE` names (surrounding whitespace dropped)."""
    if env.get(name):
        return env[name].encode("utf-8")
    path = env.get(name + "_FILE")
    if not path:
        return None
    try:
        return Path(path).read_bytes().strip()
    except OSError as exc:
        raise InvalidInput(f"cannot read {name}_FILE {path}: {exc.strerror}") from None


def pin_secret(env: Mapping[str, str]) -> bytes | None:
    """The scratch-off PIN secret (VERIFIER_PIN_SECRET or _FILE), at least 16 characters, or None."""
    value = secret(env, "VERIFIER_PIN_SECRET")
    if value is not None and len(value) < MIN_PIN_SECRET_BYTES:
        raise InvalidInput(f"the PIN secret must be at least {MIN_PIN_SECRET_BYTES} characters")
    return value


def _int(env: Mapping[str, str], name: str, default: int, low: int) -> int:
    text = env.get(name, "").strip()
    if not text:
        return default
    if not (text.isascii() and text.isdigit()) or int(text) < low:
        raise InvalidInput(f"{name} must be a whole number of at least {low}, not {text!r}")
    return int(text)


def _float(env: Mapping[str, str], name: str, default: float) -> float:
    text = env.get(name, "").strip()
    if not text:
        return default
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not value > 0 or value == float("inf"):
        raise InvalidInput(f"{name} must be a positive number of seconds, not {text!r}")
    return value
