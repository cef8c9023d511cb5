"""Every test vector, through this implementation and through the independent one."""

from __future__ import annotations

import filecmp
import subprocess
import sys
from pathlib import Path

import independent
import pytest
from conftest import VECTORS, vector_params

from verifier import codes, keys

VALID = vector_params("valid")
INVALID = vector_params("invalid")


def test_there_are_enough_named_invalid_cases():
    assert len(INVALID) >= 150
    categories = {p.values[0]["category"] for p in INVALID}
    assert {
        "truncated",
        "extended",
        "field-altered",
        "bit-flip",
        "copied-signature",
        "key",
        "bad-encoding",
        "padding",
        "oversize",
        "control",
        "lookalike",
        "wrong-host",
    } <= categories


@pytest.mark.parametrize("case", VALID)
def test_valid_vector_verifies(case, vector_jwks, vector_config):
    result = codes.verify(case["input"], keys.trust_from_jwks(vector_jwks), vector_config["base_urls"])
    assert (result.reason, result.detail) == ("genuine", None)
    assert result.key_status == case["expected"]["key_status"]
    assert result.code.fields() == case["expected"]["fields"]


@pytest.mark.parametrize("case", INVALID)
def test_invalid_vector_is_rejected_with_its_reason(case, vector_jwks, vector_config):
    result = codes.verify(case["input"], keys.trust_from_jwks(vector_jwks), vector_config["base_urls"])
    assert not result.genuine
    assert (result.reason, result.detail) == (case["expected"]["reason"], case["expected"]["detail"])


def failed_step(steps: dict) -> str | None:
    return next((name for name, ok in steps.items() if ok is False), None)


@pytest.mark.parametrize("case", VALID + INVALID)
def test_independent_implementation_agrees(case, vector_jwks, vector_config):
    got = independent.verify(case["input"], vector_jwks, vector_config["base_urls"])
    expected = case["expected"]
    assert (got["reason"], got["detail"]) == (expected["reason"], expected["detail"])
    assert got["step"] == failed_step(expected["steps"])
    if expected["genuine"]:
        fields = expected["fields"]
        assert got["fields"]["serial"] == fields["serial"] and got["fields"]["kid"] == fields["kid"]


def test_vectors_are_what_the_generator_writes(tmp_path):
    """The committed vectors match scripts/make_vectors.py (Ed25519 signatures are deterministic)."""
    root = Path(__file__).parent.parent
    subprocess.run(
        [sys.executable, str(root / "scripts" / "make_vectors.py"), str(tmp_path)], check=True, capture_output=True
    )
    for sub in ("", "valid", "invalid"):
        cmp = filecmp.dircmp(VECTORS / sub, tmp_path / sub)
        assert not (cmp.left_only or cmp.right_only or cmp.diff_files), (
            sub,
            cmp.left_only,
            cmp.right_only,
            cmp.diff_files,
        )
