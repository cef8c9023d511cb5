"""Race tests: real processes, each set up on its own, then released at the same moment."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from dataclasses import dataclass
from pathlib import Path

_CHILD = """
import sys
sys.path.insert(0, {tests!r})
{setup}
print("ready", flush=True)
sys.stdin.readline()  # the barrier: the parent releases every process at once
{action}
"""


@dataclass
class Finished:
    returncode: int
    stdout: str
    stderr: str


def run_together(
    jobs: list[tuple[str, str]], env: dict[str, str] | None = None, timeout: float = 120
) -> list[Finished]:
    """Run one Python process per (setup, action) pair: every setup first (imports, apps), then,
    once all are ready, every action at once. What each process printed after the barrier."""
    tests = str(Path(__file__).parent)
    procs = [
        subprocess.Popen(
            [
                sys.executable,
                "-c",
                _CHILD.format(tests=tests, setup=textwrap.dedent(setup), action=textwrap.dedent(action)),
            ],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env={**os.environ, **(env or {})},
        )
        for setup, action in jobs
    ]
    try:
        for proc in procs:
            line = proc.stdout.readline()
            if line != "ready\n":
                raise RuntimeError(f"a process failed before the barrier: {line}{proc.stderr.read()[-2000:]}")
        for proc in procs:
            proc.stdin.write("go\n")
            proc.stdin.flush()
        finished = []
        for proc in procs:
            stdout, stderr = proc.communicate(timeout=timeout)
            finished.append(Finished(proc.returncode, stdout, stderr))
        return finished
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
