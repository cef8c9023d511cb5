#!/usr/bin/env python3
"""Batch issuance throughput, as ratios of baselines measured in the same run.

    .venv/bin/python scripts/bench_issue.py [--codes 1000000] [--labels 20000]

- signing to CSV: `verifier batch issue --format csv` codes/s over (raw Ed25519 sign/s on one
  core x cores). Target >= 0.7. Also the peak memory of the run and the database growth.
- labels: PNG labels/s and PDF labels/s (and pages/s) on all cores over zxing-cpp's native
  QR encoder + Pillow PNG on one core. Target >= 0.5.
- where the time goes with the pure-Python qrcode library (automatic vs fixed mask).
"""

from __future__ import annotations

import argparse
import io
import os
import resource
import secrets
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

ROOT = Path(__file__).resolve().parent.parent
URL = "HTTPS://VERIFY.EXAMPLE.CN/AFNCGAIAAACNFCZJIMFCK3JBDONCSPGIVSLEXGBP2T2JXI7IDXRYSHVOREBM6RKPJKQCUAQ756ME6XVJYKF6NRSSKRRHRLDOITY6RK32QKZBOULPUGCVDVLJFBVCSBI"


def raw_sign_rate(seconds: float = 2.0) -> float:
    private = Ed25519PrivateKey.generate()
    messages = [secrets.token_bytes(40) for _ in range(2000)]
    done, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        for m in messages:
            private.sign(m)
        done += len(messages)
    return done / (time.perf_counter() - start)


def zxing_png_rate(count: int = 600) -> float:
    import zxingcpp
    from PIL import Image

    urls = [URL[:-8] + f"{i:08d}".translate(str.maketrans("0123456789", "ABCDEFGHIJ")) for i in range(count)]
    start = time.perf_counter()
    for url in urls:
        image = zxingcpp.create_barcode(url, zxingcpp.BarcodeFormat.QRCode, ec_level="M").to_image(scale=5)
        pil = Image.frombuffer("L", (image.shape[1], image.shape[0]), bytes(memoryview(image)), "raw", "L", 0, 1)
        pil.convert("1").save(io.BytesIO(), "PNG", dpi=(300, 300))
    return count / (time.perf_counter() - start)


def qrcode_costs(count: int = 20) -> tuple[float, float]:
    """Milliseconds a code with the qrcode library: automatic mask search, then a fixed mask."""
    import qrcode

    out = []
    for mask in (None, 0):
        start = time.perf_counter()
        for _ in range(count):
            qr = qrcode.QRCode(error_correction=qrcode.constants.ERROR_CORRECT_M, mask_pattern=mask)
            qr.add_data(URL)
            qr.make(fit=True)
        out.append((time.perf_counter() - start) / count * 1000)
    return out[0], out[1]


def run_issue(env: dict, out: Path, count: int, formats: str, extra: list[str] = ()) -> tuple[float, int]:
    """Seconds and peak RSS (KiB, largest process) of one `verifier batch issue` run."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    start = time.perf_counter()
    subprocess.run(
        [
            sys.executable,
            "-m",
            "verifier",
            "batch",
            "issue",
            "--key",
            "bench",
            "--mark",
            "anti-counterfeit",
            "--enterprise",
            "Bench",
            "--product",
            "P",
            "--count",
            str(count),
            "--out",
            str(out),
            "--format",
            formats,
            *extra,
        ],
        env=env,
        check=True,
        stdout=subprocess.DEVNULL,
    )
    seconds = time.perf_counter() - start
    return seconds, max(before, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)


def db_bytes(path: Path) -> int:
    with sqlite3.connect(path) as conn:
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    return path.stat().st_size


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--codes", type=int, default=1_000_000, help="codes in the CSV run")
    parser.add_argument("--labels", type=int, default=20_000, help="labels in the PNG and PDF runs (0: skip)")
    args = parser.parse_args()
    cores = os.cpu_count() or 1

    with tempfile.TemporaryDirectory(prefix="bench-issue-") as tmp:
        tmp_path = Path(tmp)
        env = {
            **os.environ,
            "VERIFIER_INSTANCE": str(tmp_path / "instance"),
            "VERIFIER_KEY_PASSPHRASE": "bench",
            "VERIFIER_BASE_URL": "HTTPS://VERIFY.EXAMPLE.CN/",
        }
        subprocess.run(
            [sys.executable, "-m", "verifier", "keys", "new", "bench"], env=env, check=True, stdout=subprocess.DEVNULL
        )
        db = tmp_path / "instance" / "verifier.db"

        raw = raw_sign_rate()
        print(f"cores {cores}; raw Ed25519 sign on one core: {raw:,.0f}/s -> x cores {raw * cores:,.0f}/s")
        run_issue(env, tmp_path / "warmup", 1000, "csv")
        size_before = db_bytes(db)
        seconds, peak = run_issue(env, tmp_path / "csv", args.codes, "csv")
        growth = db_bytes(db) - size_before
        rate = args.codes / seconds
        print(
            f"signing to CSV: {args.codes:,} codes in {seconds:.1f} s = {rate:,.0f} codes/s; "
            f"ratio {rate / (raw * cores):.2f} (target >= 0.70)"
        )
        print(
            f"  peak RSS (largest process): {peak / 1024:.0f} MiB; database growth "
            f"{growth / 1e6:.1f} MB = {growth / args.codes:.1f} bytes a code = {growth / args.codes:.0f} MB per million"
        )
        print(f"  codes.csv: {(tmp_path / 'csv' / 'codes.csv').stat().st_size / 1e6:.0f} MB")

        if not args.labels:
            return
        baseline = zxing_png_rate()
        print(f"baseline: zxing-cpp encoder + PNG on one core: {baseline:,.0f} labels/s")
        seconds, _ = run_issue(env, tmp_path / "png", args.labels, "png")
        png_rate = args.labels / seconds
        print(
            f"PNG labels (all cores, incl. signing, registry, CSV): {png_rate:,.0f}/s;"
            f" ratio {png_rate / baseline:.2f} (target >= 0.50)"
        )
        seconds, _ = run_issue(env, tmp_path / "pdf", args.labels, "pdf")
        pdf_rate = args.labels / seconds
        pages = -(-args.labels // 32)
        print(
            f"PDF labels (all cores): {pdf_rate:,.0f}/s = {pages / seconds:,.1f} A4 pages/s of 32; "
            f"ratio {pdf_rate / baseline:.2f} (target >= 0.50)"
        )

        try:
            auto, fixed = qrcode_costs()
        except ImportError:  # a test extra: `./scripts/test` installs it
            print("for comparison: the qrcode library is not installed (pip install -e '.[test]')")
        else:
            print(
                f"for comparison, the qrcode library: {auto:.1f} ms a code with its mask search, {fixed:.1f} ms "
                f"with a fixed mask; zxing-cpp: {1000 / baseline:.2f} ms including PNG"
            )


if __name__ == "__main__":
    main()
