"""Shared fixtures: a fixed-seed key pair, the test vectors, an isolated instance folder."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
from click.testing import CliRunner
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from verifier import keys

VECTORS = Path(__file__).parent / "vectors"


def load_vector(path: Path) -> dict:
    case = json.loads(path.read_text("utf-8"))
    if "input_repeat" in case:
        spec = case["input_repeat"]
        case["input"] = spec["prefix"] + spec["repeat"] * spec["count"]
    return case


def vector_params(kind: str) -> list:
    return [pytest.param(load_vector(p), id=p.stem) for p in sorted((VECTORS / kind).glob("*.json"))]


@pytest.fixture(scope="session")
def vector_config() -> dict:
    return json.loads((VECTORS / "config.json").read_text("utf-8"))


@pytest.fixture(scope="session")
def vector_jwks() -> dict:
    return json.loads((VECTORS / "jwks.json").read_text("utf-8"))


@pytest.fixture
def keypair() -> tuple[bytes, Ed25519PrivateKey]:
    """A fixed-seed signing key and its key id."""
    private = Ed25519PrivateKey.from_private_bytes(hashlib.sha256(b"verifier fixture key").digest())
    return keys.kid_for(keys.raw_public(private)), private


@pytest.fixture
def instance(tmp_path, monkeypatch) -> Path:
    """An empty instance folder that VERIFIER_* settings point to."""
    folder = tmp_path / "instance"
    monkeypatch.setenv("VERIFIER_INSTANCE", str(folder))
    monkeypatch.delenv("VERIFIER_KEYS", raising=False)
    monkeypatch.delenv("VERIFIER_DB", raising=False)
    monkeypatch.setenv("VERIFIER_BASE_URL", "HTTPS://VERIFY.EXAMPLE.CN/")
    monkeypatch.setenv("VERIFIER_KEY_PASSPHRASE", "correct horse battery staple")
    return folder


@pytest.fixture
def runner() -> CliRunner:
    return CliRunner()
