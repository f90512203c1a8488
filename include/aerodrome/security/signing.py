"""Model signatures: at registration the whole MLflow model folder is hashed and signed with Ed25519.

The signed message binds the folder's sha256 to the registered model's name and the MLflow run that
produced it, so neither a changed file nor another run's (validly signed) artifact passes. The
signature, hash and key id go on the model version as tags (`signature.*`); the verifier trusts only
public keys it holds itself (`AERODROME_SIGNING_TRUSTED_KEYS`), never a key named by the tags. A
gateway reload and the promotion gate verify what they downloaded before deserialising anything; a
refusal is alerted (`aerodrome.serving.alerts`) and audited (`aerodrome.security.audit`).

Policy: a version without a signature is refused unless `AERODROME_REQUIRE_SIGNATURE=false`; a
signature that does not verify, or a key that is not trusted, is refused always.

    python -m aerodrome.security.signing keygen PATH    # a new private key (0600) and PATH.pub
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import json
import logging
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aerodrome.errors import AerodromeError
from aerodrome.registry.gates import Gate
from aerodrome.security.config import SecuritySettings
from aerodrome.security.digest import tree_sha256
from aerodrome.settings import Settings

SCHEME = "aerodrome-model-ed25519-v1"
SCHEME_TAG, HASH_TAG, SIGNATURE_TAG, KEY_TAG = (
    "signature.scheme",
    "signature.sha256",
    "signature.ed25519",
    "signature.key_id",
)
DOWNLOAD_ONLY = ("registered_model_meta",)  # MLflow adds it to a `models:/name/version` download
log = logging.getLogger("aerodrome.security")


class SigningKeyError(AerodromeError):
    """The signing key or a trusted public key is missing or unreadable (not retried: the same run fails alike)."""


def key_id(public_key: Any) -> str:
    """A short, stable id of a public key: the first 16 hex digits of the sha256 of its raw bytes."""
    from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

    return hashlib.sha256(public_key.public_bytes(Encoding.Raw, PublicFormat.Raw)).hexdigest()[:16]


def public_key_path(private_key: Path) -> Path:
    return private_key.with_suffix(".pub")


def generate_key(path: Path) -> Any:
    """A new Ed25519 key written to `path` (0600, created exclusively) with its public key beside; returns it."""
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
    from cryptography.hazmat.primitives.serialization import (
        Encoding,
        NoEncryption,
        PrivateFormat,
        PublicFormat,
    )

    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    key = Ed25519PrivateKey.generate()
    pem = key.private_bytes(Encoding.PEM, PrivateFormat.PKCS8, NoEncryption())
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)  # another process may race us
    with os.fdopen(descriptor, "wb") as handle:
        handle.write(pem)
    public_key_path(path).write_bytes(key.public_key().public_bytes(Encoding.PEM, PublicFormat.SubjectPublicKeyInfo))
    return key


def signing_key(settings: Settings, security: SecuritySettings | None = None) -> Any:
    """The private key that signs: `AERODROME_SIGNING_KEY`, or the embedded default, made once on first use."""
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
    from cryptography.hazmat.primitives.serialization import load_pem_private_key

    security = security or SecuritySettings.from_env()
    path = security.signing_key_path(settings)
    if not path.exists():
        if security.signing_key is not None:
            raise SigningKeyError(
                f"AERODROME_SIGNING_KEY={path}: no such file; create the key with "
                f"`python -m aerodrome.security.signing keygen {path}` (or mount the secret there)"
            )
        try:
            key = generate_key(path)
            log.warning("made the signing key %s (0600) and its public key %s", path, public_key_path(path))
            return key
        except FileExistsError:  # made meanwhile by a concurrent process: read it
            pass
    try:
        key = load_pem_private_key(path.read_bytes(), password=None)
    except (OSError, ValueError) as exc:
        raise SigningKeyError(f"{path}: not a readable PEM private key ({exc})") from None
    if not isinstance(key, Ed25519PrivateKey):
        raise SigningKeyError(f"{path}: a {type(key).__name__}, not an Ed25519 private key")
    if path.stat().st_mode & 0o077:
        log.warning("%s is readable by other users (mode %o): chmod 600 it", path, path.stat().st_mode & 0o777)
    return key


def _load_public(path: Path) -> Any:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
    from cryptography.hazmat.primitives.serialization import load_pem_public_key

    try:
        key = load_pem_public_key(path.read_bytes())
    except (OSError, ValueError) as exc:
        raise SigningKeyError(f"{path}: not a readable PEM public key ({exc})") from None
    if not isinstance(key, Ed25519PublicKey):
        raise SigningKeyError(f"{path}: a {type(key).__name__}, not an Ed25519 public key")
    return key


def trusted_keys(settings: Settings, security: SecuritySettings | None = None) -> dict[str, Any]:
    """Key id -> public key a verifier accepts: `AERODROME_SIGNING_TRUSTED_KEYS`, else the signing key's `.pub`."""
    security = security or SecuritySettings.from_env()
    files: list[Path] = []
    for entry in security.trusted_keys or (public_key_path(security.signing_key_path(settings)),):
        if entry.is_dir():
            files += sorted(entry.glob("*.pub"))
        elif entry.exists() or security.trusted_keys:  # a named file must exist; the default may not yet
            files.append(entry)
    keys = [_load_public(path) for path in files]
    return {key_id(key): key for key in keys}


def model_digest(folder: str | Path) -> str:
    """sha256 of an MLflow model folder, every file included except what a download adds."""
    return tree_sha256(folder, exclude=DOWNLOAD_ONLY)


def signed_message(model: str, run_id: str, digest: str) -> bytes:
    """The bytes signed: scheme, model name, run id and folder hash as canonical JSON."""
    document = {"scheme": SCHEME, "model": model, "run_id": run_id, "sha256": digest}
    return json.dumps(document, sort_keys=True, separators=(",", ":")).encode()


def sign_model(
    folder: str | Path, model: str, run_id: str, settings: Settings, security: SecuritySettings | None = None
) -> dict[str, str]:
    """Hash and sign the model folder `folder`; returns the version tags to register it with."""
    key = signing_key(settings, security)
    digest = model_digest(folder)
    signature = key.sign(signed_message(model, run_id, digest))
    return {
        SCHEME_TAG: SCHEME,
        HASH_TAG: digest,
        SIGNATURE_TAG: base64.b64encode(signature).decode(),
        KEY_TAG: key_id(key.public_key()),
    }


@dataclass(frozen=True)
class SignatureCheck:
    """Whether a downloaded artifact is the one signed at registration, and why (for logs, gates, alerts)."""

    passed: bool
    detail: str
    digest: str
    key_id: str | None = None


def verify_model(
    folder: str | Path,
    model: str,
    version: str,
    run_id: str,
    tags: dict[str, str],
    settings: Settings,
    security: SecuritySettings | None = None,
) -> SignatureCheck:
    """Check the model folder `folder` of `model` v`version` against the signature on its tags."""
    from cryptography.exceptions import InvalidSignature

    security = security or SecuritySettings.from_env()
    digest = model_digest(folder)
    where = f"{model} v{version}"
    if not tags.get(SIGNATURE_TAG):
        if security.require_signature:
            return SignatureCheck(
                False,
                f"{where} has no signature ({SIGNATURE_TAG} tag): it was not registered by the signing trainer; "
                "refused (AERODROME_REQUIRE_SIGNATURE=true; retrain it, or set it to false to load unsigned versions)",
                digest,
            )
        return SignatureCheck(True, f"{where} is unsigned, allowed by AERODROME_REQUIRE_SIGNATURE=false", digest)
    signer = tags.get(KEY_TAG, "")
    if tags.get(SCHEME_TAG) != SCHEME:
        return SignatureCheck(False, f"{where}: unknown signature scheme {tags.get(SCHEME_TAG)!r}", digest, signer)
    keys = trusted_keys(settings, security)
    if signer not in keys:
        trusted = ", ".join(keys) or "none"
        return SignatureCheck(
            False,
            f"{where} is signed by key {signer or '?'}, which this verifier does not trust (trusted: {trusted}); "
            "add its public key to AERODROME_SIGNING_TRUSTED_KEYS",
            digest,
            signer,
        )
    try:
        keys[signer].verify(base64.b64decode(tags[SIGNATURE_TAG]), signed_message(model, run_id, digest))
    except (InvalidSignature, ValueError):
        if digest != tags.get(HASH_TAG):
            detail = (
                f"{where}: the artifact's sha256 {digest[:12]} differs from {str(tags.get(HASH_TAG))[:12]} signed at "
                "registration (a file was changed, added or removed since): refused"
            )
        else:
            detail = (
                f"{where}: the signature does not verify with key {signer} (the signature or the run it names was "
                "altered): refused"
            )
        return SignatureCheck(False, detail, digest, signer)
    return SignatureCheck(True, f"{where}: signature by key {signer} verified (sha256 {digest[:12]})", digest, signer)


def check_registered_artifact(
    folder: str | Path, registered: Any, settings: Settings, security: SecuritySettings | None = None
) -> SignatureCheck:
    """Verify a downloaded MLflow model version (`registered`: its ModelVersion); a refusal is alerted and audited."""
    from aerodrome.security import audit
    from aerodrome.serving.alerts import alert

    model, version = registered.name, str(registered.version)
    check = verify_model(folder, model, version, registered.run_id or "", dict(registered.tags), settings, security)
    if not check.passed:
        alert("artifact_refused", model, check.detail, version=version, sha256=check.digest, key_id=check.key_id)
        audit.record(
            "artifact_refused",
            model,
            check.detail,
            versions={"model": model, "version": version},
            details={"sha256": check.digest, "key_id": check.key_id, "signed_sha256": registered.tags.get(HASH_TAG)},
            settings=settings,
        )
    return check


def artifact_gate(digest: Gate, check: SignatureCheck | None) -> Gate:
    """The promotion's `artifact` gate: the predictor digest recorded at training and the model's signature."""
    if check is None:
        return digest
    passed = digest.passed and check.passed
    shown = [gate.detail for gate, ok in ((digest, digest.passed), (check, check.passed)) if passed or not ok]
    return Gate("artifact", passed, "; ".join(shown))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m aerodrome.security.signing", description="Model signing keys")
    commands = parser.add_subparsers(dest="command", required=True)
    keygen = commands.add_parser("keygen", help="a new Ed25519 private key (0600) and its public key beside (.pub)")
    keygen.add_argument("path", type=Path)
    args = parser.parse_args(argv)
    try:
        key = generate_key(args.path)
    except FileExistsError:
        print(f"error: {args.path} exists; refusing to overwrite a key", file=sys.stderr)
        return 2
    print(f"{args.path} (private, 0600), {public_key_path(args.path)} (public), key id {key_id(key.public_key())}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
