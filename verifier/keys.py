"""Ed25519 signing keys on disk: encrypted private keys, a keyring of statuses, JWKS."""

from __future__ import annotations

import base64
import contextlib
import datetime as dt
import fcntl
import hashlib
import json
import os
import re
import stat
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TypeVar

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from . import errors, files
from .codes import KEY_ACTIVE, KEY_RETIRED, KEY_REVOKED_STATUS, KEY_STATUSES, KID_BYTES, TrustedKey

KEYRING_FILE = "keyring.json"
LOCK_FILE = "keyring.lock"  # held around every read-modify-write of the keyring, by every process
PURPOSES = ("codes", "log")
_NAME_RE = re.compile(r"[a-z0-9][a-z0-9_-]{0,39}")


class KeyringError(errors.VerifierError):
    """A key operation that cannot be done; the message is for the user."""

    exit_code = 1  # the CLI's status for a keyring failure, as before


@dataclass(frozen=True)
class KeyRecord:
    """One key of the keyring: its name, id, public half and status."""

    name: str
    kid: str  # 4 hex characters
    x: str  # the raw public key, base64url (RFC 8037)
    status: str
    created_at: str
    status_changed_at: str | None = None
    purpose: str = "codes"  # codes: signs labels; log: signs audit-log checkpoints, never a code

    def public_key(self) -> Ed25519PublicKey:
        return Ed25519PublicKey.from_public_bytes(_unb64url(self.x))

    def jwk(self) -> dict[str, str]:
        return {
            "kty": "OKP",
            "crv": "Ed25519",
            "x": self.x,
            "kid": self.kid,
            "use": "sig",
            "alg": "EdDSA",
            "status": self.status,
        }


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode("ascii").rstrip("=")


def _unb64url(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def thumbprint(public_raw: bytes) -> bytes:
    """The RFC 7638 JWK thumbprint (SHA-256) of an Ed25519 public key."""
    canonical = json.dumps({"crv": "Ed25519", "kty": "OKP", "x": _b64url(public_raw)}, separators=(",", ":"))
    return hashlib.sha256(canonical.encode("ascii")).digest()


def kid_for(public_raw: bytes) -> bytes:
    """The key id carried in codes: the first 2 bytes of the JWK thumbprint."""
    return thumbprint(public_raw)[:KID_BYTES]


def raw_public(key: Ed25519PrivateKey | Ed25519PublicKey) -> bytes:
    pub = key.public_key() if isinstance(key, Ed25519PrivateKey) else key
    return pub.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


# --- the keyring file ---------------------------------------------------------------------


def read_keyring(folder: Path) -> list[KeyRecord]:
    """The keys recorded in `folder`; empty if there is no keyring yet."""
    path = Path(folder) / KEYRING_FILE
    if not path.exists():
        return []
    try:
        data = json.loads(path.read_text("utf-8"))
        return [KeyRecord(**entry) for entry in data["keys"]]
    except (ValueError, KeyError, TypeError) as exc:
        raise KeyringError(f"{path} is not a valid keyring: {exc}") from None


@contextlib.contextmanager
def _keyring_lock(folder: Path) -> Iterator[None]:
    """Exclusive use of the keyring in `folder` for one read-modify-write, across processes."""
    try:
        fd = os.open(Path(folder) / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o600)
    except OSError as exc:
        raise KeyringError(f"cannot lock the keyring in {folder}: {exc.strerror}") from None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # closing the only descriptor releases the lock


def _write_keyring(folder: Path, records: list[KeyRecord]) -> None:
    """Replace the keyring durably; call with the keyring lock held."""
    path = Path(folder) / KEYRING_FILE
    try:  # public data: the keyring keeps the mode it has (0644 when new)
        mode = stat.S_IMODE(path.stat().st_mode)
    except FileNotFoundError:
        mode = 0o644
    text = json.dumps({"keys": [asdict(r) for r in records]}, indent=2) + "\n"
    try:
        files.write_atomic(path, text.encode("utf-8"), mode)
    except OSError as exc:
        raise KeyringError(f"cannot write {path}: {exc.strerror}") from None


def find_key(folder: Path, name_or_kid: str) -> KeyRecord:
    """The key called `name_or_kid` or with that key id."""
    return _find(read_keyring(folder), name_or_kid, folder)


def _find(records: list[KeyRecord], name_or_kid: str, folder: Path) -> KeyRecord:
    for record in records:
        if name_or_kid in (record.name, record.kid):
            return record
    raise KeyringError(f"no key named {name_or_kid!r} in {folder} (see `verifier keys list`)")


def _now_text(now: dt.datetime) -> str:
    return now.astimezone(dt.UTC).isoformat(timespec="seconds")


def create_key(folder: Path, name: str, passphrase: bytes, now: dt.datetime, purpose: str = "codes") -> KeyRecord:
    """Generate an active signing key, its encrypted PEM file (mode 0600) and keyring entry."""
    folder = Path(folder)
    if purpose not in PURPOSES:
        raise KeyringError(f"a key's purpose is {' or '.join(PURPOSES)}, not {purpose!r}")
    if not _NAME_RE.fullmatch(name):
        raise KeyringError("a key name is 1-40 characters: a-z, 0-9, '-' and '_', starting with a letter or digit")
    if not passphrase:
        raise KeyringError("an empty passphrase would leave the private key unencrypted")
    files.make_private_dir(folder)
    with _keyring_lock(folder):
        records = read_keyring(folder)
        if any(r.name == name for r in records) or (folder / f"{name}.pem").exists():
            raise KeyringError(f"a key named {name!r} already exists in {folder}")
        taken = {r.kid for r in records}
        while True:  # two-byte key ids: regenerate on the rare collision within one keyring
            private = Ed25519PrivateKey.generate()
            public_raw = raw_public(private)
            kid = kid_for(public_raw).hex()
            if kid not in taken:
                break
        pem = private.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.BestAvailableEncryption(passphrase),
        )
        fd = os.open(folder / f"{name}.pem", os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as fh:
            fh.write(pem)
            fh.flush()
            os.fsync(fh.fileno())
        record = KeyRecord(name, kid, _b64url(public_raw), KEY_ACTIVE, _now_text(now), purpose=purpose)
        _write_keyring(folder, records + [record])
    return record


def load_private_key(
    folder: Path, name: str, passphrase: bytes, purpose: str = "codes"
) -> tuple[KeyRecord, Ed25519PrivateKey]:
    """The active key `name` and its private half; refuses files others can read."""
    record = find_key(folder, name)
    if record.purpose != purpose:
        raise KeyringError(f"key {record.name} ({record.kid}) signs {record.purpose}, not {purpose}")
    if record.status != KEY_ACTIVE:
        raise KeyringError(f"key {record.name} ({record.kid}) is {record.status}: it signs nothing new")
    return load_private_key_any_status(folder, name, passphrase)


def load_private_key_any_status(folder: Path, name: str, passphrase: bytes) -> tuple[KeyRecord, Ed25519PrivateKey]:
    """Key `name` and its private half whatever its status (to re-derive URLs already issued)."""
    record = find_key(folder, name)
    if record.status == KEY_REVOKED_STATUS:
        raise KeyringError(f"key {record.name} ({record.kid}) is revoked")
    path = Path(folder) / f"{record.name}.pem"
    try:
        mode = path.stat().st_mode
    except FileNotFoundError:
        raise KeyringError(f"private key file {path} is missing (the keyring names it)") from None
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise KeyringError(
            f"permissions {stat.S_IMODE(mode):04o} for {path} are too open: "
            f"a private key must not be readable by others (chmod 600 {path})"
        )
    try:
        private = serialization.load_pem_private_key(path.read_bytes(), password=passphrase)
    except (ValueError, TypeError):
        raise KeyringError(f"cannot decrypt {path}: wrong passphrase?") from None
    if not isinstance(private, Ed25519PrivateKey) or _b64url(raw_public(private)) != record.x:
        raise KeyringError(f"{path} does not hold the Ed25519 key the keyring records")
    return record, private


_TRANSITIONS = {KEY_RETIRED: {KEY_ACTIVE}, KEY_REVOKED_STATUS: {KEY_ACTIVE, KEY_RETIRED}}


def set_status(
    folder: Path, name_or_kid: str, status: str, now: dt.datetime, on_written: Callable[[KeyRecord], None] | None = None
) -> KeyRecord:
    """Retire or revoke a key. Revocation is final; a retired key never signs again.

    The keyring stays locked from the read to the write and through `on_written(record)`, which
    runs only once the change is on disk: an audit-log entry made there records exactly what
    was written, in the order the keyring changed. A change that changes nothing is an error.
    """
    if status not in _TRANSITIONS:
        raise KeyringError(f"a key can be set to {' or '.join(_TRANSITIONS)}, not {status!r}")
    folder = Path(folder)
    if not folder.is_dir():
        find_key(folder, name_or_kid)  # no keyring: the usual "no key named ..." error
    with _keyring_lock(folder):
        records = read_keyring(folder)
        target = _find(records, name_or_kid, folder)
        if target.status == status:
            raise KeyringError(f"key {target.name} ({target.kid}) is already {status}")
        if target.status not in _TRANSITIONS[status]:
            raise KeyringError(f"key {target.name} ({target.kid}) is {target.status}: it cannot become {status}")
        updated = KeyRecord(**{**asdict(target), "status": status, "status_changed_at": _now_text(now)})
        _write_keyring(folder, [updated if r.kid == target.kid else r for r in records])
        if on_written is not None:
            on_written(updated)
    return updated


# --- JWKS and trust -----------------------------------------------------------------------


def jwks(
    records: list[KeyRecord], include_revoked: bool = True, purpose: str = "codes"
) -> dict[str, list[dict[str, str]]]:
    """A JWKS (RFC 7517/8037) of the code-signing keys; `status` tells verifiers which are revoked."""
    return {
        "keys": [
            r.jwk() for r in records if r.purpose == purpose and (include_revoked or r.status != KEY_REVOKED_STATUS)
        ]
    }


def trust_from_jwks(data: object) -> dict[bytes, TrustedKey]:
    """Trusted keys by key id from a parsed JWKS; ValueError if it is not one."""
    if not isinstance(data, dict) or not isinstance(data.get("keys"), list):
        raise ValueError("a JWKS is an object with a 'keys' list")
    trusted: dict[bytes, TrustedKey] = {}
    for jwk in data["keys"]:
        if not isinstance(jwk, dict) or jwk.get("kty") != "OKP" or jwk.get("crv") != "Ed25519":
            continue  # other key types are not ours to use
        raw = _unb64url(str(jwk.get("x", "")))
        if len(raw) != 32:
            raise ValueError(f"key {jwk.get('kid')!r} is not a 32-byte Ed25519 key")
        kid = kid_for(raw)
        if jwk.get("kid") not in (None, kid.hex()):
            raise ValueError(f"key id {jwk.get('kid')!r} does not match its key (expected {kid.hex()})")
        status = jwk.get("status", KEY_ACTIVE)
        if status not in KEY_STATUSES:
            raise ValueError(f"key {kid.hex()} has unknown status {status!r}")
        if kid in trusted:
            raise ValueError(f"two keys share the key id {kid.hex()}")
        trusted[kid] = TrustedKey(kid, Ed25519PublicKey.from_public_bytes(raw), status)
    return trusted


def public_jwks(data: object, include_revoked: bool = True) -> dict[str, list[dict[str, str]]]:
    """The JWKS to publish from a parsed one: each Ed25519 key rebuilt from its public members
    (kty, crv, x, kid, use and alg when present, status), so a private `d` or any member we do
    not know is never republished. ValueError if `data` is not a usable JWKS."""
    trusted = trust_from_jwks(data)
    published = []
    for jwk in data["keys"]:  # type: ignore[index]  # trust_from_jwks checked the shape
        if not isinstance(jwk, dict) or jwk.get("kty") != "OKP" or jwk.get("crv") != "Ed25519":
            continue
        raw = _unb64url(str(jwk["x"]))
        key = trusted[kid_for(raw)]
        if not include_revoked and key.status == KEY_REVOKED_STATUS:
            continue
        entry = {"kty": "OKP", "crv": "Ed25519", "x": _b64url(raw), "kid": key.kid.hex()}
        # the only meaningful values for an Ed25519 signing key; anything else is left out
        entry.update({m: v for m, v in (("use", "sig"), ("alg", "EdDSA")) if jwk.get(m) == v})
        entry["status"] = key.status
        published.append(entry)
    return {"keys": published}


def trust_from_folder(folder: Path) -> dict[bytes, TrustedKey]:
    """Trusted keys by key id from a keyring folder."""
    return trust_from_jwks(jwks(read_keyring(folder)))


def load_jwks_file(path: Path) -> dict[bytes, TrustedKey]:
    """Trusted keys from a JWKS file; KeyringError with a readable message if it is unusable."""
    return _from_jwks_file(path, trust_from_jwks)


def public_jwks_file(path: Path, include_revoked: bool = True) -> dict[str, list[dict[str, str]]]:
    """The public JWKS rebuilt from a JWKS file (see public_jwks); KeyringError if it is unusable."""
    return _from_jwks_file(path, lambda data: public_jwks(data, include_revoked))


_T = TypeVar("_T")


def _from_jwks_file(path: Path, parse: Callable[[object], _T]) -> _T:
    try:
        return parse(json.loads(Path(path).read_text("utf-8")))
    except OSError as exc:
        raise KeyringError(f"cannot read {path}: {exc.strerror}") from None
    except ValueError as exc:
        raise KeyringError(f"{path} is not a usable JWKS: {exc}") from None
