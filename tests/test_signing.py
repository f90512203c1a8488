"""Signed model artifacts: signed at registration, verified by the promotion's loader and the gateway.

Real MLflow (SQLite store, local artifact files), real XGBoost models registered by the trainer's own
`log_candidate`, real Ed25519 keys on disk; the tampering is a changed byte in the stored artifact.
"""

from __future__ import annotations

import logging
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from aerodrome.errors import AerodromeError
from aerodrome.registry.aliases import CHAMPION, AliasMove, move_alias, registry_client
from aerodrome.registry.gates import Gate
from aerodrome.registry.promote import load_version
from aerodrome.security.audit import FileAuditTrail
from aerodrome.security.config import SecuritySettings, state_dir
from aerodrome.security.signing import (
    HASH_TAG,
    KEY_TAG,
    SIGNATURE_TAG,
    SigningKeyError,
    artifact_gate,
    generate_key,
    key_id,
    sign_model,
    signing_key,
    verify_model,
)
from aerodrome.serving.gateway import UseCaseService
from aerodrome.serving.predlog import PredictionLog
from aerodrome.storage import LocalStorage
from tiny_models import SPEC, flip_one_byte, register_tiny_model, settings_in, stored_model_folder

SIGNATURE_ENV = ("AERODROME_SIGNING_KEY", "AERODROME_SIGNING_TRUSTED_KEYS", "AERODROME_REQUIRE_SIGNATURE")


@pytest.fixture(autouse=True)
def default_security(monkeypatch):
    """Each test starts from the embedded default (key made under the data root)."""
    for name in (*SIGNATURE_ENV, "AERODROME_AUDIT_DSN", "AERODROME_AUDIT_LOG"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture(scope="module")
def signed_versions(tmp_path_factory):
    """A data root with two signed versions of `store_demand` (registered once for the module)."""
    settings = settings_in(tmp_path_factory.mktemp("signing"))
    versions = [register_tiny_model(settings, seed) for seed in (1, 2)]
    assert versions == ["1", "2"]
    return settings


@pytest.fixture
def registry(signed_versions):
    """The signed versions, each test's tampering (files, tags, aliases) undone afterwards."""
    settings = signed_versions
    client = registry_client(settings.tracking_uri)
    files = {p: p.read_bytes() for v in ("1", "2") for p in stored_model_folder(settings, v).rglob("*") if p.is_file()}
    tags = {v: dict(client.get_model_version(SPEC.name, v).tags) for v in ("1", "2")}
    yield settings
    for path, data in files.items():
        path.write_bytes(data)
    for version, original in tags.items():
        for name in set(client.get_model_version(SPEC.name, version).tags) - set(original):
            client.delete_model_version_tag(SPEC.name, version, name)
        for name, value in original.items():
            client.set_model_version_tag(SPEC.name, version, name, value)
    if CHAMPION in client.get_registered_model(SPEC.name).aliases:
        client.delete_registered_model_alias(SPEC.name, CHAMPION)


def audit_of(settings) -> list[dict]:
    return list(FileAuditTrail(state_dir(settings) / "audit" / "audit.jsonl").records())


def load(settings, version: str, tmp_path: Path):
    client = registry_client(settings.tracking_uri)
    return load_version(
        client, settings, SPEC.name, version, tmp_path / f"load-v{version}-{len(list(tmp_path.iterdir()))}"
    )


def test_registration_signs_the_whole_model_folder_with_a_key_made_once(registry, tmp_path):
    settings = registry
    key_file = state_dir(settings) / "signing" / "ed25519.pem"
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600 and key_file.with_suffix(".pub").exists()
    client = registry_client(settings.tracking_uri)
    tags = [client.get_model_version(SPEC.name, v).tags for v in ("1", "2")]
    signer = key_id(signing_key(settings).public_key())
    assert [t[KEY_TAG] for t in tags] == [signer, signer]  # the second training reused the key
    assert tags[0][HASH_TAG] != tags[1][HASH_TAG] and all(len(t[SIGNATURE_TAG]) == 88 for t in tags)
    signed = [r for r in audit_of(settings) if r["kind"] == "artifact_signed"]
    assert [(r["versions"]["version"], r["details"]["key_id"]) for r in signed] == [("1", signer), ("2", signer)]

    loaded = load(settings, "1", tmp_path)
    assert loaded.predictor is not None and loaded.provenance.passed, loaded.provenance
    assert f"signature by key {signer} verified" in loaded.provenance.detail


@pytest.mark.parametrize("target", ["artifacts/predictor/model.ubj", "pyfunc.py", "MLmodel"])
def test_one_changed_byte_is_refused_alerted_and_audited(registry, tmp_path, caplog, target):
    """The predictor's weights, the pyfunc code MLflow would run, the model's metadata: each is covered."""
    settings = registry
    flip_one_byte(stored_model_folder(settings, "2") / target)
    with caplog.at_level(logging.ERROR, logger="aerodrome.alerts"):
        loaded = load(settings, "2", tmp_path)
    assert loaded.predictor is None  # never deserialised
    assert not loaded.provenance.passed
    assert "differs from" in loaded.provenance.detail and "signed at registration" in loaded.provenance.detail
    assert any("ALERT artifact_refused store_demand" in r.getMessage() for r in caplog.records)
    refused = audit_of(settings)[-1]
    assert refused["kind"] == "artifact_refused" and refused["versions"] == {"model": SPEC.name, "version": "2"}
    assert refused["details"]["sha256"] == loaded.provenance.digest != refused["details"]["signed_sha256"]
    assert load(settings, "1", tmp_path).predictor is not None  # the untouched version still loads


def test_missing_signature_is_refused_unless_the_policy_allows_unsigned(registry, tmp_path, monkeypatch):
    settings = registry
    client = registry_client(settings.tracking_uri)
    client.delete_model_version_tag(SPEC.name, "2", SIGNATURE_TAG)
    loaded = load(settings, "2", tmp_path)
    assert loaded.predictor is None and "has no signature" in loaded.provenance.detail
    assert "AERODROME_REQUIRE_SIGNATURE" in loaded.provenance.detail
    monkeypatch.setenv("AERODROME_REQUIRE_SIGNATURE", "false")
    allowed = load(settings, "2", tmp_path)
    assert allowed.predictor is not None and "unsigned, allowed" in allowed.provenance.detail


def test_a_signature_from_another_version_or_an_untrusted_key_is_refused(registry, tmp_path):
    settings = registry
    client = registry_client(settings.tracking_uri)
    first = client.get_model_version(SPEC.name, "1")
    # v1's artifact and valid signature copied onto v2's tags: the signature names v1's run, not v2's
    second = client.get_model_version(SPEC.name, "2")
    check = verify_model(stored_model_folder(settings, "1"), SPEC.name, "2", second.run_id, dict(first.tags), settings)
    assert not check.passed and "does not verify" in check.detail

    # re-signed by a key nobody trusts: its key id is named, with the fix
    rogue = tmp_path / "rogue" / "key.pem"
    generate_key(rogue)
    tags = sign_model(
        stored_model_folder(settings, "2"), SPEC.name, second.run_id, settings, SecuritySettings(signing_key=rogue)
    )
    for name, value in tags.items():
        client.set_model_version_tag(SPEC.name, "2", name, value)
    loaded = load(settings, "2", tmp_path)
    assert loaded.predictor is None and "does not trust" in loaded.provenance.detail
    assert "AERODROME_SIGNING_TRUSTED_KEYS" in loaded.provenance.detail
    # trusting that key as well (rotation: a folder of *.pub) lets it load
    trusted = SecuritySettings(trusted_keys=(rogue.parent, state_dir(settings) / "signing"))
    folder = stored_model_folder(settings, "2")
    assert verify_model(folder, SPEC.name, "2", second.run_id, tags, settings, trusted).passed


def test_the_gateway_keeps_serving_the_champion_when_the_new_one_is_tampered(registry, tmp_path, caplog):
    settings = registry
    storage = LocalStorage(settings.data_root)
    client = registry_client(settings.tracking_uri)
    move_alias(client, storage, AliasMove(SPEC.name, CHAMPION, "1", None, "test / first", "first champion"))
    service = UseCaseService(SPEC, settings, storage, PredictionLog(storage))
    assert service.reload() == {"champion": "1", "challenger": None}

    flip_one_byte(stored_model_folder(settings, "2") / "artifacts/predictor/model.ubj")
    move_alias(client, storage, AliasMove(SPEC.name, CHAMPION, "2", None, "test / second", "a new champion"))
    with caplog.at_level(logging.ERROR):
        served = service.reload()
    assert served == {"champion": "1", "challenger": None}  # v1 keeps serving
    messages = [r.getMessage() for r in caplog.records]
    assert any("v2 (@champion) refused" in m and "v1 keeps serving" in m for m in messages), messages
    assert any(m.startswith("ALERT artifact_refused") for m in messages)
    kinds = [(r["kind"], r["versions"].get("version")) for r in audit_of(settings)]
    assert kinds[-1] == ("artifact_refused", "2")

    service.set_traffic(25, actor="canary_store_demand / manual__1")
    change = audit_of(settings)[-1]
    assert change["kind"] == "traffic" and change["actor"] == "canary_store_demand / manual__1"
    assert change["details"] == {"from_percent": 0.0, "to_percent": 25.0}


def test_the_artifact_gate_needs_both_the_digest_and_the_signature(registry, tmp_path):
    settings = registry
    check = load(settings, "1", tmp_path).provenance
    good, bad = Gate("artifact", True, "digest ok"), Gate("artifact", False, "artifact digest differs from x")
    assert artifact_gate(good, check).passed and "verified" in artifact_gate(good, check).detail
    assert not artifact_gate(bad, check).passed and artifact_gate(bad, check).detail == bad.detail
    refused = verify_model(tmp_path, SPEC.name, "1", "other-run", {}, settings)  # unsigned and required
    combined = artifact_gate(good, refused)
    assert not combined.passed and combined.detail == refused.detail


def test_a_named_signing_key_that_is_missing_is_a_readable_error(tmp_path, monkeypatch):
    settings = settings_in(tmp_path)
    monkeypatch.setenv("AERODROME_SIGNING_KEY", str(tmp_path / "keys" / "prod.pem"))
    with pytest.raises(SigningKeyError, match=r"no such file; create the key with .*keygen") as caught:
        signing_key(settings)
    assert isinstance(caught.value, AerodromeError)  # the operators fail it at once, without retries

    made = subprocess.run(
        [sys.executable, "-m", "aerodrome.security.signing", "keygen", str(tmp_path / "keys" / "prod.pem")],
        capture_output=True,
        text=True,
    )
    assert made.returncode == 0, made.stderr
    assert stat.S_IMODE((tmp_path / "keys" / "prod.pem").stat().st_mode) == 0o600
    assert key_id(signing_key(settings).public_key()) in made.stdout
    again = subprocess.run(
        [sys.executable, "-m", "aerodrome.security.signing", "keygen", str(tmp_path / "keys" / "prod.pem")],
        capture_output=True,
        text=True,
    )
    assert again.returncode == 2 and "refusing to overwrite" in again.stderr
