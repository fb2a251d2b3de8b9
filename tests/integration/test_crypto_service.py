"""Crypto named by intent, built from a real config: who may sign, who can read, rotation."""

from __future__ import annotations

import io
import shutil

import pytest

from gateway.config import load
from gateway.crypto import keys
from gateway.crypto.service import Crypto
from gateway.errors import CryptoError
from tests.conftest import run_cli
from tests.gpgparty import GpgParty, live_gpg_processes, validsig_primary

pytestmark = pytest.mark.integration


def sealed_by(keybox, signer: str, to: str, text: bytes = b"x,y\n") -> bytes:
    party = GpgParty(keybox[signer].sec, keybox[to].pub)
    try:
        return party.seal(text, signer=keybox[signer].fingerprint, recipients=[keybox[to].fingerprint])
    finally:
        party.close()


def read(opened) -> tuple[bytes, str]:
    with opened as msg:
        body = b"".join(msg.chunks())
        return body, msg.verdict().fingerprint


def test_each_channel_accepts_only_its_own_signers(setup):
    kb = setup.keys
    with Crypto.start(load(setup.config)) as crypto:
        assert read(crypto.open_from_bank(io.BytesIO(sealed_by(kb, "bank", "gateway"))))[1] == \
            kb["bank"].fingerprint
        assert read(crypto.open_from_agency("AG001", io.BytesIO(sealed_by(kb, "ag001", "gateway"))))[1] \
            == kb["ag001"].fingerprint
        with pytest.raises(CryptoError) as exc:  # the bank's valid key is not the agency's
            read(crypto.open_from_agency("AG001", io.BytesIO(sealed_by(kb, "bank", "gateway"))))
        assert exc.value.code == "E_UNKNOWN_SIGNER"
        with pytest.raises(CryptoError) as exc:
            read(crypto.open_from_bank(io.BytesIO(sealed_by(kb, "ag001", "gateway"))))
        assert exc.value.code == "E_UNKNOWN_SIGNER"
        home = str(crypto.keyring.home)
    assert live_gpg_processes(home) == []


def test_role_slice_opens_only_with_that_roles_key(setup):
    kb = setup.keys
    with Crypto.start(load(setup.config)) as crypto:
        out = io.BytesIO()
        with crypto.seal_for_role("AG001", "collector", out) as w:
            w.write(b"case_id\nC1\n")
        manifest = io.BytesIO()
        with crypto.seal_for_agency("AG001", manifest) as w:
            w.write(b"{}")
    for role, expected in (("collector", True), ("supervisor", False)):
        party = GpgParty(kb[f"ag001-{role}"].sec, kb["gateway"].pub)
        try:
            body, status, rc = party.decrypt(out.getvalue())
            assert (rc == 0) is expected
            if expected:
                assert body == b"case_id\nC1\n"
                assert validsig_primary(status) == kb["gateway"].fingerprint
            assert party.decrypt(manifest.getvalue())[2] == 0  # every role reads the manifest
        finally:
            party.close()


def test_rotation_old_key_still_decrypts(setup, tmp_path):
    """After a gateway key rotation, files sealed to the old key still open (previous_secret_keys)."""
    kb = setup.keys
    keydir = setup.dir / "keys"
    shutil.move(keydir / "gateway.sec.asc", keydir / "gateway-old.sec.asc")
    new = keys.generate("gateway-new", "gw2@test.example", tmp_path)
    shutil.copy(new.secret_path, keydir / "gateway.sec.asc")
    (keydir / "gateway.sec.asc").chmod(0o600)
    setup.edit("previous_secret_keys = []", 'previous_secret_keys = ["keys/gateway-old.sec.asc"]')
    old_msg = sealed_by(kb, "bank", "gateway")  # the bank still uses the old public key
    with Crypto.start(load(setup.config)) as crypto:
        assert crypto.fingerprint == new.fingerprint
        assert read(crypto.open_from_bank(io.BytesIO(old_msg)))[0] == b"x,y\n"


def test_passphrase_protected_gateway_key(setup, tmp_path):
    key = keys.generate("gwp", "gwp@test.example", tmp_path, passphrase="correct horse")
    dst = setup.dir / "keys" / "gateway.sec.asc"
    dst.unlink()
    shutil.copy(key.secret_path, dst)
    dst.chmod(0o600)
    shutil.copy(key.public_path, setup.dir / "keys" / "gateway.pub.asc")
    setup.edit('# passphrase_env = "GATEWAY_KEY_PASSPHRASE"', 'passphrase_env = "GW_TEST_PP"')
    ok = run_cli("check", "-c", str(setup.config), env={"GW_TEST_PP": "correct horse"})
    assert ok.returncode == 0, ok.stderr
    assert "correct horse" not in ok.stdout + ok.stderr
    bad = run_cli("check", "-c", str(setup.config), env={"GW_TEST_PP": "wrong"})
    assert bad.returncode == 1
    (line,) = [ln for ln in bad.stderr.splitlines() if ln.startswith("error")]
    assert "gateway.secret_key: self-test failed" in line and "passphrase" in line.lower()
    missing = run_cli("check", "-c", str(setup.config))
    assert missing.returncode == 2 and "GW_TEST_PP is not set" in missing.stderr
