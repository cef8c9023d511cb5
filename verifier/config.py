"""Settings from `VERIFIER_*` environment variables, shared by the CLI and the web app."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

DEFAULT_BASE_URL = "HTTP://127.0.0.1:8000/"


def instance_dir(env: Mapping[str, str] = os.environ) -> Path:
    """The folder holding this installation's database and keys."""
    return Path(env.get("VERIFIER_INSTANCE", "instance"))


def keys_dir(env: Mapping[str, str] = os.environ) -> Path:
    return Path(env.get("VERIFIER_KEYS") or instance_dir(env) / "keys")


def db_path(env: Mapping[str, str] = os.environ) -> Path:
    return Path(env.get("VERIFIER_DB") or instance_dir(env) / "verifier.db")


def base_urls(env: Mapping[str, str] = os.environ) -> list[str]:
    """The addresses codes are issued under; the first one is used for new codes."""
    raw = env.get("VERIFIER_BASE_URL") or DEFAULT_BASE_URL
    return [part.strip() for part in raw.split(",") if part.strip()]
