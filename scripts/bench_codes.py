#!/usr/bin/env python3
"""Sign and verify rates of the code format as a ratio of raw Ed25519 in the same run.

    .venv/bin/python scripts/bench_codes.py [--seconds 2]

Target (issue 2): both ratios >= 0.9, i.e. the format costs at most 10 % over the signature.
"""

from __future__ import annotations

import argparse
import secrets
import statistics
import time

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from verifier import codes, keys

BASE = "HTTPS://VERIFY.EXAMPLE.CN/"


def rate(fn, items, seconds: float) -> float:
    """Median operations per second over several rounds of `fn` on `items`."""
    rounds = []
    deadline = time.perf_counter() + seconds
    while time.perf_counter() < deadline or len(rounds) < 5:
        start = time.perf_counter()
        for item in items:
            fn(item)
        rounds.append(len(items) / (time.perf_counter() - start))
    return statistics.median(rounds)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=2.0, help="time per measurement")
    args = parser.parse_args()

    private = Ed25519PrivateKey.generate()
    public = private.public_key()
    kid = keys.kid_for(keys.raw_public(private))
    trusted = {kid: codes.TrustedKey(kid, public)}
    mark = codes.MARKS[0]
    serials = [secrets.randbelow(codes.SERIAL_LIMIT) for _ in range(500)]
    unsigned = [codes.Code(codes.FORM_COMPACT, kid, mark, s, batch=7) for s in serials]
    unsigned_gs1 = [
        codes.Code(codes.FORM_GS1, kid, mark, s, gtin="09506000134352", lot="L1", expiry="281231") for s in serials
    ]
    messages = [codes.signed_message(c) for c in unsigned]
    signatures = [private.sign(m) for m in messages]
    urls = [codes.encode_url(codes.sign(c, private), BASE) for c in unsigned]
    gs1_urls = [codes.encode_url(codes.sign(c, private), BASE) for c in unsigned_gs1]

    raw_sign = rate(private.sign, messages, args.seconds)
    raw_verify = rate(lambda i: public.verify(signatures[i], messages[i]), range(len(messages)), args.seconds)
    fmt_sign = rate(lambda c: codes.encode_url(codes.sign(c, private), BASE), unsigned, args.seconds)
    fmt_sign_gs1 = rate(lambda c: codes.encode_url(codes.sign(c, private), BASE), unsigned_gs1, args.seconds)
    batch_signer = codes.compact_signer(private, kid, mark, 7, BASE)
    fmt_batch_sign = rate(batch_signer, serials, args.seconds)
    gs1_batch_signer = codes.gs1_signer(private, kid, mark, "09506000134352", "L1", "281231", BASE)
    fmt_gs1_batch_sign = rate(gs1_batch_signer, serials, args.seconds)
    fmt_verify = rate(lambda u: codes.verify(u, trusted, [BASE]), urls, args.seconds)
    fmt_verify_gs1 = rate(lambda u: codes.verify(u, trusted, [BASE]), gs1_urls, args.seconds)

    print(f"raw Ed25519 sign          {raw_sign:9.0f}/s")
    print(f"raw Ed25519 verify        {raw_verify:9.0f}/s")
    for label, value, base in (
        ("compact batch signer", fmt_batch_sign, raw_sign),
        ("compact sign+encode", fmt_sign, raw_sign),
        ("gs1 batch signer", fmt_gs1_batch_sign, raw_sign),
        ("gs1 sign+encode", fmt_sign_gs1, raw_sign),
        ("compact decode+verify", fmt_verify, raw_verify),
        ("gs1 decode+verify", fmt_verify_gs1, raw_verify),
    ):
        print(f"{label:<25} {value:9.0f}/s  ratio {value / base:.2f}  (target >= 0.90)")


if __name__ == "__main__":
    main()
