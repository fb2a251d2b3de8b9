"""``gateway open`` and ``gateway seal``: the tools agency staff (and the bank) run.

They work without a gateway config: a throw-away keyring holds the user's own
secret key and the other party's public key, and is removed afterwards. Output
files are written under a temporary name and renamed into place only when the
operation succeeded — for ``open``, only after the signature verdict, so a
failed verification never leaves a plausible-looking plaintext file behind.

Their messages speak to the person at the keyboard, not to a receipt: the engine's verdict
keeps its stable code (scripts key on it), but the words say what the file is and whose —
the keys a message is encrypted to, the key that signed it — in terms of the two key files
the person gave, and what to do next.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

from gateway.crypto import engine, keys, packets
from gateway.crypto.engine import Engine, Verified
from gateway.crypto.keyring import Keyring, Secret
from gateway.crypto.keys import KeyInfo, Purpose
from gateway.errors import CryptoError, KeyPolicyError, UsageError

# What each key file is, in the words of the option that gives it.
_ROLE_OF_OPTION = {
    "--key": "your own secret key file (NAME.sec.asc)",
    "--from": "the gateway's public key file (from the bank's IT)",
    "--to": "the gateway's public key file (from the bank's IT)",
}
_SLICE_NAME = re.compile(r"^(?P<batch>.+)\.(?P<agency>[^.]+)\.(?P<role>[a-z][a-z0-9_]*)\.csv\.pgp$")
_HIDDEN = "0" * 16


@contextlib.contextmanager
def _engine(secret: Path, public: Path, passphrase: Secret | None,
            own: Purpose, other: Purpose) -> Iterator[tuple[Engine, KeyInfo, KeyInfo]]:
    own_option, other_option = ("--key", "--from") if other is Purpose.VERIFY else ("--key", "--to")
    me = _checked(secret, own, own_option)
    them = _checked(public, other, other_option)
    home = Path(tempfile.mkdtemp(prefix="gwo", dir="/tmp"))
    keyring = None
    try:
        keyring = Keyring(home / "g", secret_keys=[secret], public_keys=[public],
                          passphrase=passphrase)
        yield Engine(keyring, signer=me), me, them
    finally:
        if keyring is not None:
            keyring.close()
        shutil.rmtree(home, ignore_errors=True)


def _checked(path: Path, purpose: Purpose, option: str) -> KeyInfo:
    """The key policy's verdict, told as which option got which file: a public key given as
    --key, the two files swapped, are the usual slips."""
    try:
        return keys.check(path, purpose)
    except KeyPolicyError as exc:
        raise KeyPolicyError(f"{option}: {exc} ({option} takes {_ROLE_OF_OPTION[option]})") from exc


@contextlib.contextmanager
def _atomic_output(out: Path | None, default: BinaryIO) -> Iterator[BinaryIO]:
    """Write to OUT as :func:`_atomic_file` does, or to *default* when there is no OUT."""
    if out is None:
        yield default
        return
    with _atomic_file(out) as fh:
        yield fh


@contextlib.contextmanager
def _atomic_file(out: Path) -> Iterator[BinaryIO]:
    """Write to OUT via a private temp file renamed on success; never overwrite."""
    if out.exists():
        raise UsageError(f"{out} already exists; not overwriting it")
    fd, tmp = tempfile.mkstemp(prefix=f".{out.name}.", suffix=".part", dir=out.parent)
    tmp_path = Path(tmp)
    try:
        with os.fdopen(fd, "wb") as fh:
            yield fh
            fh.flush()
            os.fsync(fh.fileno())
        os.link(tmp_path, out)  # fails if OUT appeared meanwhile: still no overwrite
    finally:
        tmp_path.unlink(missing_ok=True)


def open_file(src: Path, *, key: Path, sender: Path, out: Path | None, stdout: BinaryIO,
              passphrase: Secret | None = None) -> tuple[Verified, KeyInfo]:
    """Decrypt SRC with KEY and accept it only if signed by SENDER's key."""
    with _engine(key, sender, passphrase, Purpose.RECIPIENT, Purpose.VERIFY) as (eng, me, them):
        try:
            with (src.open("rb") as fh,
                  eng.open(fh, allowed_signers=[them.fingerprint]) as msg,
                  _atomic_output(out, stdout) as sink):
                for chunk in msg.chunks():
                    sink.write(chunk)
                return msg.verdict(), them
        except CryptoError as exc:
            raise CryptoError(_told(exc, src, key, me, them, to_file=out is not None),
                              code=_code(exc, src),
                              recipients=exc.recipients, signer=exc.signer) from exc


def seal_file(src: Path, *, key: Path, recipient: Path, out: Path,
              passphrase: Secret | None = None) -> tuple[KeyInfo, KeyInfo]:
    """Sign SRC with KEY and encrypt it to RECIPIENT (the gateway) into OUT."""
    _must_be_plaintext(src)
    with (_engine(key, recipient, passphrase, Purpose.SIGNER, Purpose.ENCRYPT) as (eng, me, them),
          src.open("rb") as fh,
          _atomic_file(out) as sink,
          eng.seal(sink, recipients=[them.fingerprint]) as writer):
        while chunk := fh.read(64 * 1024):
            writer.write(chunk)
    return me, them


def _must_be_plaintext(src: Path) -> None:
    """What is sealed for the gateway is read as CSV once decrypted: a file sealed twice, or
    a key file picked by mistake, would only come back as a receipt's E_NO_HEADER."""
    with src.open("rb") as fh:
        head = fh.read(1024)
    if packets.is_encrypted(head):
        raise UsageError(f"{src} is already an encrypted OpenPGP message; seal the plaintext "
                         "file (the CSV) instead")
    if head.lstrip().startswith(b"-----BEGIN PGP "):
        raise UsageError(f"{src} is an OpenPGP key or signature file, not the file to upload; "
                         "give the CSV as FILE, your secret key with --key and the gateway's "
                         "public key with --to")


def _keyid(fingerprint: str) -> str:
    return fingerprint[-16:].upper()


def _label(info: KeyInfo) -> str:
    return f"{info.fingerprint} ({info.user_ids[0]})" if info.user_ids else info.fingerprint


def _who(keyid: str, me: KeyInfo, them: KeyInfo) -> str:
    """A key id a message names, in terms of the keys the person gave."""
    keyid = keyid.upper()
    if keyid == _HIDDEN:
        return "a hidden recipient (the message does not name its keys)"
    for info, whose in ((me, "your key"), (them, "the gateway's key")):
        if any(keyid in (k.fingerprint, _keyid(k.fingerprint)) for k in info.keys):
            return f"{whose} {_label(info)}"
    return f"key ID {keyid}" if len(keyid) == 16 else f"key {keyid}"


def _code(exc: CryptoError, src: Path) -> str:
    """E_CORRUPT, refined: a download cut short is a different story from a changed file."""
    if exc.code == engine.E_CORRUPT and _looks_like_message(src) and packets.ends_early(src):
        return engine.E_TRUNCATED
    return exc.code


def _looks_like_message(src: Path) -> bool:
    with src.open("rb") as fh:
        return packets.is_encrypted(fh.read(1024))


def _told(exc: CryptoError, src: Path, key: Path, me: KeyInfo, them: KeyInfo, *,
          to_file: bool = True) -> str:
    """The engine's verdict said to the person who ran ``gateway open``. Without --out the
    plaintext streams to standard output as it is decrypted, before the verdict: what was
    printed must then be thrown away, and the message says so."""
    name, code = src.name, _code(exc, src)
    nothing = ("nothing was written" if to_file else
               "discard whatever was printed: it is not to be trusted")
    if code == engine.E_NOT_FOR_US:
        sealed_for = ", ".join(_who(k, me, them) for k in exc.recipients) or "other keys"
        mine = ", ".join(_keyid(k.fingerprint) for k in me.keys if "e" in k.capabilities)
        text = (f"{name} is not encrypted to your key ({me.user_ids[0] if me.user_ids else key}, "
                f"encryption key ID {mine}): it was sealed for {sealed_for}")
        if any(_keyid(k.fingerprint) in exc.recipients for k in them.keys):
            return text + "; it is a file sent to the gateway, which only the gateway can open"
        if m := _SLICE_NAME.match(name):
            return (text + f"; by its name it is agency {m['agency']}'s {m['role']} slice, which "
                    f"only the keys of the {m['role']} role open — ask your supervisor, or the "
                    "bank's IT which key that role uses")
        return text + "; ask whoever sent it which key it is for"
    if code == engine.E_UNKNOWN_SIGNER:
        by = _who(exc.signer, me, them) if exc.signer else "an unknown key"
        if by.startswith("your key"):
            return (f"{name} is signed by your own key, not by the gateway: it is a file you "
                    f"sealed, not one from the gateway; {nothing}")
        return (f"{name} is signed by {by}, not by the gateway key given with --from, "
                f"{_label(them)}: it did not come from this gateway, or --from is not the "
                "gateway's current key (after a key rotation, ask the bank's IT for the new "
                f"one); {nothing}")
    if code == engine.E_UNSIGNED:
        return (f"{name} decrypted but is not signed, so nothing shows that it comes from the "
                f"gateway (the gateway signs everything it writes); {nothing} — report it to "
                "the bank's IT")
    if code == engine.E_BAD_SIGNATURE:
        return (f"the signature on {name} does not match its content, or there is more than "
                f"one: the file was changed after it was signed; {nothing} — fetch it again, "
                "and report it to the bank's IT if that does not help")
    if code == engine.E_REVOKED_OR_EXPIRED:
        by = _who(exc.signer, me, them) if exc.signer else "its key"
        return (f"{name} is signed by {by}, but that key or the signature has expired or been "
                f"revoked; {nothing} — ask the bank's IT for the gateway's current public key")
    if code == engine.E_TRUNCATED:
        return (f"{name} ends before the message does: the download was cut short; {nothing} "
                "— fetch the whole file again (binary mode)")
    if code == engine.E_CORRUPT:
        return _not_a_message(src) or (
            f"{name} is damaged or was changed after it was encrypted (the integrity check "
            f"failed); {nothing} — fetch it again in binary mode, and report it to the bank's "
            "IT if that does not help")
    if code == engine.E_DECRYPT and "passphrase" in str(exc):
        return (f"could not unlock your secret key {key}: the passphrase is wrong or missing "
                "(--passphrase-env VAR names the environment variable that holds it)")
    if code == engine.E_DECRYPT and "not encrypted" in str(exc):
        return (f"{name} is signed but not encrypted: it is not a file from the gateway, which "
                f"encrypts everything it sends; {nothing}")
    return f"could not open {name}: {exc}"


# An armoured key's first line. The secret one is written in two pieces so that secret
# scanners, which look for that line, do not take this source file for a key.
_KEY_ARMOR = (b"-----BEGIN PGP PUBLIC KEY BLOCK", b"-----BEGIN PGP " + b"PRIVATE KEY BLOCK")


def _not_a_message(src: Path) -> str | None:
    """What a file that is no OpenPGP message is, when its first bytes say so."""
    with src.open("rb") as fh:
        head = fh.read(1024).lstrip()
    if head.startswith(_KEY_ARMOR):
        return (f"{src.name} is a key file, not a file from the gateway: give the .pgp file as "
                "FILE, your secret key with --key and the gateway's public key with --from")
    if head.startswith(b"-----BEGIN PGP SIGNED MESSAGE"):
        return (f"{src.name} is a clear-signed document (a deletion certificate or an audit "
                "checkpoint), readable as it is: check its signature with gpg --verify")
    if not packets.is_encrypted(head):
        return (f"{src.name} is not an OpenPGP message (a plaintext or other file?); give the "
                ".pgp file received from the gateway")
    return None
