"""The streaming engine against plain GnuPG on the other end: verdicts, limits, hygiene."""

from __future__ import annotations

import io
import subprocess
import time
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gateway.crypto.engine import (
    E_CORRUPT,
    E_DECRYPT,
    E_NOT_FOR_US,
    E_REVOKED_OR_EXPIRED,
    E_TOO_LARGE,
    E_UNKNOWN_SIGNER,
    E_UNSIGNED,
    Engine,
    Verified,
)
from gateway.crypto.keyring import Keyring
from gateway.errors import CryptoError
from tests.gpgparty import GpgParty, live_gpg_processes, validsig_primary

pytestmark = pytest.mark.integration

SECRET_TEXT = "客户姓名,身份证号\n张三丰,110105199003071234\n".encode() * 50


def scan_for(root: Path, needle: bytes) -> list[Path]:
    return [p for p in root.rglob("*") if p.is_file() and not p.is_symlink()
            and needle in p.read_bytes()]


@pytest.fixture
def ring(tmp_path, keybox):
    home = tmp_path / "state" / "gnupg"
    publics = [keybox[n].pub for n in ("bank", "ag001", "ag001-collector", "revoked", "expired")]
    keyring = Keyring(home, secret_keys=[keybox["gateway"].sec], public_keys=publics)
    yield keyring
    keyring.close()
    assert live_gpg_processes(str(home)) == [] and live_gpg_processes(str(keyring.home)) == []


@pytest.fixture
def engine(ring, keybox):
    return Engine(ring, signer=keybox["gateway"].fingerprint)


@pytest.fixture
def bank(keybox):
    party = GpgParty(keybox["bank"].sec, keybox["gateway"].pub, keybox["other"].sec,
                     keybox["ag001"].sec, keybox["revoked"].sec, keybox["other"].pub)
    yield party
    party.close()


def open_all(engine: Engine, data: bytes, allowed: list[str]) -> tuple[bytes, Verified]:
    with engine.open(io.BytesIO(data), allowed_signers=allowed) as msg:
        body = b"".join(msg.chunks())
        return body, msg.verdict()


def refused(engine: Engine, data: bytes, allowed: list[str]) -> str:
    with pytest.raises(CryptoError) as exc:
        open_all(engine, data, allowed)
    return exc.value.code


def test_bank_message_opens_and_names_the_signer(engine, bank, keybox, tmp_path):
    msg = bank.seal(SECRET_TEXT, signer=keybox["bank"].fingerprint,
                    recipients=[keybox["gateway"].fingerprint])
    body, verified = open_all(engine, msg, [keybox["bank"].fingerprint])
    assert body == SECRET_TEXT
    assert verified.fingerprint == keybox["bank"].fingerprint
    assert verified.plaintext_bytes == len(SECRET_TEXT)
    assert scan_for(tmp_path, "张三丰".encode()) == []


def test_armored_input_opens(engine, bank, keybox):
    msg = bank.seal(SECRET_TEXT, signer=keybox["bank"].fingerprint,
                    recipients=[keybox["gateway"].fingerprint], extra=("--armor",))
    assert open_all(engine, msg, [keybox["bank"].fingerprint])[0] == SECRET_TEXT


def test_sealed_by_engine_opens_in_plain_gpg(engine, keybox):
    out = io.BytesIO()
    with engine.seal(out, recipients=[keybox["bank"].fingerprint]) as w:
        w.write(SECRET_TEXT)
    party = GpgParty(keybox["bank"].sec, keybox["gateway"].pub)
    try:
        body, status, rc = party.decrypt(out.getvalue())
    finally:
        party.close()
    assert rc == 0 and body == SECRET_TEXT
    assert validsig_primary(status) == keybox["gateway"].fingerprint


def test_sealed_for_one_recipient_does_not_open_for_another(engine, keybox):
    out = io.BytesIO()
    with engine.seal(out, recipients=[keybox["ag001-collector"].fingerprint]) as w:
        w.write(SECRET_TEXT)
    party = GpgParty(keybox["ag001-supervisor"].sec, keybox["gateway"].pub)
    try:
        body, status, rc = party.decrypt(out.getvalue())
    finally:
        party.close()
    assert rc != 0 and body == b"" and any(s.startswith("NO_SECKEY") for s in status)


def test_unsigned_is_refused(engine, bank, keybox):
    msg = bank.seal(SECRET_TEXT, signer=None, recipients=[keybox["gateway"].fingerprint])
    assert refused(engine, msg, [keybox["bank"].fingerprint]) == E_UNSIGNED


def test_unknown_signer_is_refused(engine, bank, keybox):
    msg = bank.seal(SECRET_TEXT, signer=keybox["other"].fingerprint,
                    recipients=[keybox["gateway"].fingerprint])
    assert refused(engine, msg, [keybox["bank"].fingerprint]) == E_UNKNOWN_SIGNER


def test_known_key_of_another_party_is_refused(engine, bank, keybox):
    """ag001's key is in the keyring, valid — but not an accepted signer for the bank channel."""
    msg = bank.seal(SECRET_TEXT, signer=keybox["ag001"].fingerprint,
                    recipients=[keybox["gateway"].fingerprint])
    assert refused(engine, msg, [keybox["bank"].fingerprint]) == E_UNKNOWN_SIGNER


def test_revoked_signer_is_refused_even_if_allowed(engine, bank, keybox):
    """gpg exits 0 with VALIDSIG for a revoked signer; our verdict must still refuse."""
    msg = bank.seal(SECRET_TEXT, signer=keybox["revoked"].fingerprint,
                    recipients=[keybox["gateway"].fingerprint])
    assert refused(engine, msg, [keybox["revoked"].fingerprint]) == E_REVOKED_OR_EXPIRED


def test_expired_signer_is_refused(tmp_path, keybox):
    ring = Keyring(tmp_path / "g", secret_keys=[keybox["gw_old"].sec],
                   public_keys=[keybox["expired"].pub])
    party = GpgParty(keybox["expired"].sec, keybox["gw_old"].pub)
    try:
        msg = party.seal(SECRET_TEXT, signer=keybox["expired"].fingerprint,
                         recipients=[keybox["gw_old"].fingerprint], faked_time="20230601T000000")
        code = refused(Engine(ring), msg, [keybox["expired"].fingerprint])
    finally:
        party.close()
        ring.close()
    assert code == E_REVOKED_OR_EXPIRED


def test_wrong_recipient_is_refused(engine, bank, keybox):
    msg = bank.seal(SECRET_TEXT, signer=keybox["bank"].fingerprint,
                    recipients=[keybox["other"].fingerprint])
    assert refused(engine, msg, [keybox["bank"].fingerprint]) == E_NOT_FOR_US


def test_tampered_middle_is_refused(engine, bank, keybox, tmp_path):
    msg = bytearray(bank.seal(SECRET_TEXT, signer=keybox["bank"].fingerprint,
                              recipients=[keybox["gateway"].fingerprint]))
    msg[len(msg) // 2] ^= 0x40
    assert refused(engine, bytes(msg), [keybox["bank"].fingerprint]) == E_CORRUPT
    assert scan_for(tmp_path, "张三丰".encode()) == []


def test_truncated_and_garbage_are_corrupt(engine, bank, keybox):
    msg = bank.seal(SECRET_TEXT, signer=keybox["bank"].fingerprint,
                    recipients=[keybox["gateway"].fingerprint])
    assert refused(engine, msg[: len(msg) // 2], [keybox["bank"].fingerprint]) == E_CORRUPT
    assert refused(engine, b"not openpgp at all\n" * 10, [keybox["bank"].fingerprint]) == E_CORRUPT
    assert refused(engine, b"", [keybox["bank"].fingerprint]) == E_CORRUPT


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(position=st.floats(min_value=0.0, max_value=0.999), bit=st.integers(0, 7))
def test_a_flipped_bit_never_yields_altered_plaintext(engine, bank, keybox, position, bit):
    """Refused, or — for the few header bits gpg does not use, e.g. the PKESK version (3->2)
    or its algorithm byte (found by this test) — the exact original text from the bank."""
    original = b"case,1\n"
    msg = bytearray(bank.seal(original, signer=keybox["bank"].fingerprint,
                              recipients=[keybox["gateway"].fingerprint]))
    msg[int(position * len(msg))] ^= 1 << bit
    try:
        body, verified = open_all(engine, bytes(msg), [keybox["bank"].fingerprint])
    except CryptoError as exc:
        assert exc.code in {E_CORRUPT, E_DECRYPT, E_NOT_FOR_US, E_UNKNOWN_SIGNER, "E_BAD_SIGNATURE",
                            E_UNSIGNED}
    else:
        assert body == original and verified.fingerprint == keybox["bank"].fingerprint


def test_compression_bomb_stops_at_the_cap(ring, bank, keybox, tmp_path):
    bomb = bank.seal(b"\0" * (64 * 1024 * 1024), signer=keybox["bank"].fingerprint,
                     recipients=[keybox["gateway"].fingerprint],
                     extra=("--compress-algo", "bzip2", "-z", "9"))
    assert len(bomb) < 64 * 1024  # 64 MiB of zeros in a few KiB
    engine = Engine(ring, max_plaintext=4 * 1024 * 1024)
    with pytest.raises(CryptoError) as exc:
        open_all(engine, bomb, [keybox["bank"].fingerprint])
    assert exc.value.code == E_TOO_LARGE
    assert [p for p in live_gpg_processes(str(ring.home)) if "gpg-agent" not in p] == []


def test_no_gpg_worker_outlives_a_call(engine, ring, bank, keybox):
    msg = bank.seal(SECRET_TEXT, signer=keybox["bank"].fingerprint,
                    recipients=[keybox["gateway"].fingerprint])
    open_all(engine, msg, [keybox["bank"].fingerprint])
    with engine.open(io.BytesIO(msg), allowed_signers=[keybox["bank"].fingerprint]) as m:
        m.read(10)  # caller gives up half-way: leaving the block must kill gpg
    workers = [p for p in live_gpg_processes(str(ring.home)) if "gpg-agent" not in p]
    assert workers == []


def test_failed_seal_raises_and_cleans_up(engine, ring):
    out = io.BytesIO()
    with pytest.raises(CryptoError), engine.seal(out, recipients=["0" * 40]) as w:
        w.write(b"x" * 10)
    assert [p for p in live_gpg_processes(str(ring.home)) if "gpg-agent" not in p] == []


def test_verified_cannot_be_forged():
    with pytest.raises(TypeError):
        Verified(fingerprint="A" * 40, signing_key="A" * 40, signed_at=0, plaintext_bytes=0)


def test_clearsign_verifies_in_plain_gpg(engine, keybox):
    signed = engine.clearsign(b'{"certificate": 1}\n')
    party = GpgParty(keybox["gateway"].pub)
    try:
        proc = party.gpg("--verify", stdin=signed)
    finally:
        party.close()
    assert proc.returncode == 0 and b"VALIDSIG" in proc.stderr


def test_a_keyring_rebuilt_after_a_killed_run_stops_the_old_agent_and_signs(tmp_path, keybox):
    """A run killed with its keyring open leaves its gpg-agent, reached through a short
    alias in /tmp the next run does not know. The next keyring at the same (long) path
    must stop that agent before rebuilding — left alive, it noticed its socket gone and
    on exit unlinked the new agent's socket, failing the next signing (INV_SGNR) on a
    busy host — and must not wait for it for seconds."""
    home = tmp_path / ("long" * 12) / "state" / "gnupg"  # past the socket-length limit
    old = Keyring(home, secret_keys=[keybox["gateway"].sec])  # the killed run: never closed
    assert old.home != home and len(live_gpg_processes(str(old.home))) == 1
    started = time.monotonic()
    new = Keyring(home, secret_keys=[keybox["gateway"].sec])
    try:
        assert time.monotonic() - started < 3  # was 5 s: waiting for a socket it could not reach
        assert live_gpg_processes(str(old.home)) == []
        assert not old.home.parent.exists()  # the killed run's alias is removed too
        time.sleep(0.5)  # the old agent, had it lived, would have taken the socket by now
        signed = Engine(new, signer=keybox["gateway"].fingerprint).clearsign(b"{}\n")
        assert b"BEGIN PGP SIGNATURE" in signed
        assert len(live_gpg_processes(str(new.home))) == 1
    finally:
        new.close()
    assert live_gpg_processes(str(new.home)) == []


def test_a_keyring_is_kept_while_its_key_files_are_the_same_and_rebuilt_when_they_change(
        tmp_path, keybox):
    """A start with nothing to do spent a tenth of a second importing the same keys again;
    the keyring is now kept while the configured files are byte for byte the same, and
    still never drifts from them: a key taken out of the config is gone at the next start."""
    home = tmp_path / "state" / "gnupg"
    publics = [keybox["bank"].pub, keybox["ag001"].pub]

    def listed(ring: Keyring) -> str:
        return subprocess.run(["gpg", "--homedir", str(ring.path), "--batch", "--with-colons",
                               "--list-keys"], capture_output=True, check=True).stdout.decode()

    first = Keyring(home, secret_keys=[keybox["gateway"].sec], public_keys=publics)
    first.close()
    built = (home / "pubring.kbx").stat()
    again = Keyring(home, secret_keys=[keybox["gateway"].sec], public_keys=publics)
    try:
        assert (home / "pubring.kbx").stat().st_ino == built.st_ino  # not rebuilt
        signed = Engine(again, signer=keybox["gateway"].fingerprint).clearsign(b"{}\n")
        assert b"BEGIN PGP SIGNATURE" in signed
    finally:
        again.close()
    assert keybox["ag001"].fingerprint in listed(again)
    kept = Keyring(home, secret_keys=[keybox["gateway"].sec], public_keys=publics)
    kept.close()  # after a signing (the agent rewrites a key file it first uses): still kept
    assert (home / "pubring.kbx").stat().st_ino == built.st_ino
    fewer = Keyring(home, secret_keys=[keybox["gateway"].sec], public_keys=publics[:1])
    fewer.close()
    assert keybox["ag001"].fingerprint not in listed(fewer)  # taken out: gone
    (home / Keyring.STAMP).unlink()  # a build that never finished leaves no record
    (home / "pubring.kbx").write_bytes(b"")
    rebuilt = Keyring(home, secret_keys=[keybox["gateway"].sec], public_keys=publics[:1])
    rebuilt.close()
    assert keybox["bank"].fingerprint in listed(rebuilt)
    for damage in ("emptied", "removed"):  # the secret key lost (a crash, a hand): built again
        for key in (home / "private-keys-v1.d").glob("*.key"):
            key.write_bytes(b"") if damage == "emptied" else key.unlink()
        repaired = Keyring(home, secret_keys=[keybox["gateway"].sec], public_keys=publics[:1])
        try:
            signed = Engine(repaired, signer=keybox["gateway"].fingerprint).clearsign(b"{}\n")
            assert b"BEGIN PGP SIGNATURE" in signed
        finally:
            repaired.close()
    assert live_gpg_processes(str(home)) == []
