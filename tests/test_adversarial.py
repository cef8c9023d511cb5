"""The adversarial corpus on every surface (a small run; scripts/adversarial.py runs 1,000 codes)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path


def test_no_mutated_or_invalid_code_is_accepted_and_nothing_errors():
    script = Path(__file__).parent.parent / "scripts" / "adversarial.py"
    result = subprocess.run([sys.executable, str(script), "--codes", "2", "--json"], capture_output=True, text=True,
                            timeout=600)  # fmt: skip
    report = json.loads(result.stdout)
    assert set(report) >= {"web page", "JSON API", "manual form", "verifier verify"}
    assert report["total"]["tried"] > 2000
    assert report["total"]["accepted"] == 0 and report["total"]["server_errors"] == 0
    assert result.returncode == 0
