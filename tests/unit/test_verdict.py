"""The verdict over gpg status lines — including the cases where gpg's exit status lies."""

from __future__ import annotations

import pytest

from gateway.crypto.engine import _decide
from gateway.errors import CryptoError

BANK = "C14E946D6CFA66BE2648AB94B0C4ECE1642B2429"
OTHER = "9BB74C9ED446FD7EB064A80A35E0A148E14E2483"
HEAD = ["ENC_TO 35E0A148E14E2483 18 0", "KEY_CONSIDERED X 0", "DECRYPTION_KEY A B u",
        "BEGIN_DECRYPTION", "DECRYPTION_INFO 2 9 0", "PLAINTEXT 62 0", "NEWSIG"]
TAIL = ["DECRYPTION_OKAY", "GOODMDC", "END_DECRYPTION"]


def validsig(primary: str) -> list[str]:
    return ["GOODSIG B0C4ECE1642B2429 bank <b@x>",
            f"VALIDSIG {primary} 2026-11-22 1795385621 0 4 0 22 8 00 {primary}"]


def decide(lines, rc=0, allowed=(BANK,)):
    return _decide(rc, [ln.split() for ln in lines], frozenset(allowed), 10, b"")


def code(lines, rc=0, allowed=(BANK,)):
    with pytest.raises(CryptoError) as exc:
        decide(lines, rc, allowed)
    return exc.value.code


def test_good():
    assert decide(HEAD + validsig(BANK) + TAIL).fingerprint == BANK


def test_revoked_signer_with_exit_zero_is_refused():
    """Measured with gpg 2.2: a revoked key's signature gives exit 0 and VALIDSIG."""
    lines = [*HEAD, "KEYREVOKED", "REVKEYSIG B0C4ECE1642B2429 bank <b@x>",
             f"VALIDSIG {BANK} 2026-11-22 1795385621 0 4 0 22 8 00 {BANK}", *TAIL]
    assert code(lines, rc=0) == "E_REVOKED_OR_EXPIRED"


@pytest.mark.parametrize("kw", ["EXPKEYSIG B0C4ECE1642B2429 bank", "EXPSIG B0C4ECE1642B2429 bank"])
def test_expired(kw):
    assert code([*HEAD, kw, *validsig(BANK)[1:], *TAIL]) == "E_REVOKED_OR_EXPIRED"


def test_bad_signature():
    assert code([*HEAD, "BADSIG B0C4ECE1642B2429 bank", *TAIL], rc=1) == "E_BAD_SIGNATURE"


def test_two_signatures_are_refused():
    assert code(HEAD + validsig(BANK) + ["NEWSIG"] + validsig(BANK) + TAIL) == "E_BAD_SIGNATURE"


def test_valid_but_not_allowed():
    assert code(HEAD + validsig(OTHER) + TAIL) == "E_UNKNOWN_SIGNER"


def test_missing_public_key():
    lines = [*HEAD, "ERRSIG B0C4ECE1642B2429 22 8 00 1795385621 9 -", "NO_PUBKEY B0C4ECE1642B2429"]
    assert code(lines + TAIL, rc=2) == "E_UNKNOWN_SIGNER"


def test_unsigned():
    assert code(HEAD + TAIL) == "E_UNSIGNED"


def test_no_mdc_is_refused():
    """Without GOODMDC the content was not integrity-protected: never accepted."""
    assert code(HEAD + validsig(BANK) + ["DECRYPTION_OKAY", "END_DECRYPTION"]) == "E_CORRUPT"


def test_bad_mdc():
    assert code(HEAD + validsig(BANK) + ["BADMDC", "DECRYPTION_FAILED"], rc=2) == "E_CORRUPT"


def test_not_for_us():
    assert code(["ENC_TO 1111 18 0", "NO_SECKEY 1111", "BEGIN_DECRYPTION", "DECRYPTION_FAILED"],
                rc=2) == "E_NOT_FOR_US"


def test_bad_passphrase():
    lines = ["ENC_TO 1111 18 0", "NEED_PASSPHRASE 1111 2222 18 0", "BAD_PASSPHRASE 1111",
             "ERROR pkdecrypt_failed 11", "BEGIN_DECRYPTION", "DECRYPTION_FAILED"]
    assert code(lines, rc=2) == "E_DECRYPT"


def test_nonzero_exit_without_reason_is_not_accepted():
    assert code(HEAD + validsig(BANK) + TAIL, rc=2) == "E_CORRUPT"


def test_not_openpgp():
    assert code(["NODATA 1", "FAILURE gpg-exit 33554433"], rc=2) == "E_CORRUPT"
