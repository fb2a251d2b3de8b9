"""Streaming OpenPGP through GnuPG, with the verdict decided by our code.

Why GnuPG as a subprocess (see docs/engineering/design-decisions.md): it streams in
constant memory, it is what the bank and the agencies run, and it handled every
tamper and revocation case we tried. Why our own verdict: gpg's exit status is
not one — a signature from a *revoked* key exits 0 with ``VALIDSIG`` — so we read
``--status-fd`` and accept a message only when all of these hold:

* exit status 0, ``DECRYPTION_OKAY`` and ``GOODMDC`` (encrypted, intact);
* exactly one ``GOODSIG``/``VALIDSIG``, made by a primary key the caller allowed;
* none of the refusal keywords below.

The plaintext of an inline-signed message arrives *before* gpg has checked the
signature. So :meth:`Engine.open` hands out an :class:`OpenedMessage` whose bytes
are untrusted; only :meth:`OpenedMessage.verdict` yields a :class:`Verified`, and
everything that commits work (ledger, delivery) demands that object. Callers
stage what they derive (encrypted) and commit after the verdict.

No plaintext touches the disk: gpg reads ciphertext from a pipe and writes
plaintext to a pipe. The passphrase travels on its own pipe, never in argv. Each
call's gpg process is waited for or killed before the call returns; the one
gpg-agent a :class:`Keyring` needs lives exactly as long as the keyring.
"""

from __future__ import annotations

import contextlib
import fcntl
import io
import os
import subprocess
import threading
from collections.abc import Collection, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, BinaryIO, Self

from gateway import timing
from gateway.crypto import _gpg
from gateway.crypto.keyring import Keyring, stderr_tail
from gateway.crypto.keys import KeyInfo
from gateway.errors import CryptoError, GatewayError
from gateway.streams import Readable

if TYPE_CHECKING:
    from typing_extensions import Buffer

CHUNK = 256 * 1024  # bytes per read/write; pipes are enlarged to match (F_SETPIPE_SZ)
_PIPE_SIZE = 1024 * 1024
DEFAULT_MAX_PLAINTEXT = 4 * 1024**3  # bytes; a compression bomb stops here

# Stable error codes (docs/formats.md §6: receipts carry them).
E_DECRYPT = "E_DECRYPT"  # could not decrypt for a reason other than the ones below
E_NOT_FOR_US = "E_NOT_FOR_US"  # encrypted, but to none of our keys
E_UNSIGNED = "E_UNSIGNED"  # no signature at all
E_BAD_SIGNATURE = "E_BAD_SIGNATURE"  # a signature that does not verify
E_UNKNOWN_SIGNER = "E_UNKNOWN_SIGNER"  # signed by a key that is not allowed here
E_REVOKED_OR_EXPIRED = "E_REVOKED_OR_EXPIRED"  # signer key or signature revoked/expired
E_CORRUPT = "E_CORRUPT"  # not OpenPGP, or modified in transit
E_TRUNCATED = "E_TRUNCATED"  # the file ends before the message does (an incomplete upload)
E_TOO_LARGE = "E_TOO_LARGE"  # plaintext larger than the configured cap
E_SEAL = "E_SEAL"  # we could not sign/encrypt (a gateway failure, not the sender's)

_REVOKED_OR_EXPIRED = {"EXPSIG", "EXPKEYSIG", "REVKEYSIG"}
_VERDICT_TIMEOUT = 300.0  # seconds gpg may take to finish after its stdout closed


_TOKEN = object()


@dataclass(frozen=True)
class Verified:
    """Proof that a message decrypted intact and was signed by an allowed key.

    Only the engine can make one; code that commits work derived from a message
    takes this object as its argument, so it cannot commit before the verdict.
    """

    fingerprint: str  # primary key fingerprint of the signer
    signing_key: str  # the (sub)key that made the signature
    signed_at: int  # signature creation time, seconds since the epoch
    plaintext_bytes: int
    _token: object = field(repr=False, compare=False, default=None)

    def __post_init__(self) -> None:
        if self._token is not _TOKEN:
            raise TypeError("Verified is issued by the crypto engine only")


class Engine:
    """OpenPGP operations on one keyring: open (decrypt+verify), seal, clear-sign."""

    def __init__(
        self,
        keyring: Keyring,
        *,
        signer: KeyInfo | str | None = None,
        max_plaintext: int = DEFAULT_MAX_PLAINTEXT,
        compress_level: int = 6,
    ) -> None:
        self.keyring = keyring
        self.signer = signer.fingerprint if isinstance(signer, KeyInfo) else signer
        self.max_plaintext = max_plaintext
        self.compress_level = compress_level

    def open(self, src: Readable, *, allowed_signers: Collection[str]) -> OpenedMessage:
        """Start decrypting *src*; read the untrusted plaintext, then ask for the verdict."""
        allowed = frozenset(f.upper() for f in allowed_signers)
        if not allowed:
            raise ValueError("open() needs at least one allowed signer")
        return OpenedMessage(self, src, allowed)

    def seal(self, dst: BinaryIO, *, recipients: Sequence[str], armor: bool = False) -> SealWriter:
        """Sign with our key and encrypt to *recipients* (full fingerprints) into *dst*."""
        if not recipients:
            raise ValueError("seal() needs at least one recipient")
        if self.signer is None:
            raise ValueError("this engine has no signing key")
        return SealWriter(self, dst, [r.upper() for r in recipients], armor=armor)

    def clearsign(self, text: bytes) -> bytes:
        """A clear-signed document anyone can read and check with ``gpg --verify``."""
        if self.signer is None:
            raise ValueError("this engine has no signing key")
        proc = _gpg.run(self.keyring.home, ["--local-user", self.signer, "--digest-algo",
                                            "SHA256", "--clearsign"],
                        stdin=text, passphrase=self._passphrase())
        status = {w[0] for w in _gpg.status_lines(proc.stderr)}
        if proc.returncode != 0 or "SIG_CREATED" not in status:
            raise CryptoError(f"could not sign: {stderr_tail(proc.stderr)}", code=E_SEAL)
        return proc.stdout

    def verify_clearsigned(self, document: bytes, *, allowed_signers: Collection[str]) -> tuple[str, bytes]:
        """(signer fingerprint, signed text) of a clear-signed *document*, made by one of
        *allowed_signers*; CryptoError otherwise. Needs public keys only."""
        allowed = frozenset(f.upper() for f in allowed_signers)
        proc = _gpg.run(self.keyring.home, ["--decrypt"], stdin=document)
        kw: dict[str, list[list[str]]] = {}
        for words in _gpg.status_lines(proc.stderr):
            kw.setdefault(words[0], []).append(words[1:])
        if kw.keys() & {"BADSIG", "ERRSIG", "EXPKEYSIG", "REVKEYSIG", "NODATA"} or proc.returncode:
            raise CryptoError("the signature does not verify", code=E_BAD_SIGNATURE)
        valid = kw.get("VALIDSIG", [])
        if len(valid) != 1:
            raise CryptoError("expected exactly one signature", code=E_BAD_SIGNATURE)
        sig = valid[0]
        primary = (sig[9] if len(sig) > 9 else sig[0]).upper()
        if primary not in allowed:
            raise CryptoError(f"signed by {primary}, not by an accepted key", code=E_UNKNOWN_SIGNER)
        return primary, proc.stdout

    def _passphrase(self) -> str | None:
        return self.keyring.passphrase.reveal() if self.keyring.passphrase else None

    def _spawn(self, args: list[str]) -> _GpgProcess:
        return _GpgProcess(self.keyring.home, args, self._passphrase())


class _GpgProcess:
    """One gpg child with status and passphrase pipes and a bounded stderr tail."""

    def __init__(self, home: Path, args: list[str], passphrase: str | None) -> None:
        status_r, status_w = os.pipe()
        fds = [status_w]
        argv = [_gpg.gpg_binary(), "--homedir", str(home), *_gpg.BASE_OPTIONS,
                *_gpg.TRUST_CONFIGURED, "--status-fd", str(status_w)]
        pass_r = pass_w = -1
        if passphrase is not None:
            pass_r, pass_w = os.pipe()
            fds.append(pass_r)
            argv += ["--passphrase-fd", str(pass_r)]
        try:
            self.proc = subprocess.Popen(  # noqa: S603 — argv list, no shell; files after --
                [*argv, *args], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                stderr=subprocess.PIPE, pass_fds=tuple(fds), env=_gpg.gpg_env(home),
            )
        except BaseException:
            for fd in (status_r, status_w, pass_r, pass_w):
                if fd >= 0:
                    os.close(fd)
            raise
        os.close(status_w)
        for stream in (self.proc.stdin, self.proc.stdout):
            assert stream is not None  # noqa: S101 — PIPE
            with contextlib.suppress(OSError, AttributeError):  # Linux only; fewer wake-ups
                fcntl.fcntl(stream.fileno(), fcntl.F_SETPIPE_SZ, _PIPE_SIZE)
        if passphrase is not None:
            os.close(pass_r)
            try:
                os.write(pass_w, passphrase.encode() + b"\n")
            finally:
                os.close(pass_w)
        self.status_raw = bytearray()
        self.stderr_tail = bytearray()
        self._threads = [
            threading.Thread(target=self._collect, args=(os.fdopen(status_r, "rb"), True),
                             daemon=True),
            threading.Thread(target=self._collect, args=(self.proc.stderr, False), daemon=True),
        ]
        for t in self._threads:
            t.start()

    def _collect(self, stream: io.BufferedIOBase, is_status: bool) -> None:
        """*stream*: a pipe opened buffered (``os.fdopen(fd, "rb")``, Popen's), whose
        ``read1`` returns what the pipe has rather than wait for a full buffer."""
        with stream:
            for chunk in iter(lambda: stream.read1(8192), b""):
                if is_status:
                    self.status_raw += chunk
                else:  # keep only the tail: gpg diagnostics, bounded
                    self.stderr_tail += chunk
                    del self.stderr_tail[:-8192]

    def finish(self, timeout: float = _VERDICT_TIMEOUT) -> tuple[int, list[list[str]]]:
        try:
            rc = self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            raise CryptoError(f"gpg did not finish within {timeout:.0f} s", code=E_DECRYPT) from None
        for t in self._threads:
            t.join()
        return rc, _gpg.status_lines(bytes(self.status_raw))

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()
        for stream in (self.proc.stdin, self.proc.stdout):
            if stream is not None:
                with contextlib.suppress(OSError):
                    stream.close()
        for t in self._threads:
            t.join(timeout=5)


class OpenedMessage(io.RawIOBase):
    """The plaintext of a message being decrypted — untrusted until :meth:`verdict`.

    A readable raw stream (wrap it in ``io.BufferedReader``/``io.TextIOWrapper``
    for CSV). Reading past the engine's plaintext cap kills gpg and raises
    ``E_TOO_LARGE``. Use as a context manager: leaving it kills gpg if the
    caller did not get to the verdict.
    """

    def __init__(self, engine: Engine, src: Readable, allowed: frozenset[str]) -> None:
        super().__init__()
        self._engine = engine
        self._allowed = allowed
        self._count = 0
        self._feed_error: BaseException | None = None
        self._done = False
        self._gpg = engine._spawn(["--decrypt"])
        self._feeder = threading.Thread(target=self._feed, args=(src,), daemon=True)
        self._feeder.start()

    def _feed(self, src: Readable) -> None:
        stdin = self._gpg.proc.stdin
        assert stdin is not None  # noqa: S101 — invariant, not an input check
        try:
            for chunk in iter(lambda: src.read(CHUNK), b""):
                stdin.write(chunk)
        except (BrokenPipeError, ValueError):
            pass  # gpg stopped reading (error or killed); its status says why
        except BaseException as exc:  # the source failed (disk, network): not the sender's fault
            self._feed_error = exc
        finally:
            with contextlib.suppress(OSError, ValueError):
                stdin.close()

    # -- io.RawIOBase ----------------------------------------------------------
    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Buffer, /) -> int:
        stdout = self._gpg.proc.stdout
        assert isinstance(stdout, io.BufferedReader)  # noqa: S101 — Popen's pipe, buffered by default
        if self._done:
            return 0
        n = stdout.raw.readinto(memoryview(buffer)) or 0  # unbuffered: no extra copy
        self._count += n
        if self._count > self._engine.max_plaintext:
            self.close()
            raise CryptoError(
                f"plaintext exceeds the limit of {self._engine.max_plaintext} bytes "
                "(possible compression bomb)", code=E_TOO_LARGE)
        if n == 0:
            self._done = True
        return n

    def chunks(self, size: int = CHUNK) -> Iterator[bytes]:
        """Untrusted plaintext in chunks of at most *size* bytes."""
        buf = bytearray(size)
        view = memoryview(buf)
        while n := self.readinto(view):
            yield bytes(view[:n])

    # -- verdict ---------------------------------------------------------------
    def verdict(self) -> Verified:
        """Drain what is left, wait for gpg and decide; raise CryptoError unless trusted."""
        for _ in self.chunks():
            pass
        self._feeder.join()
        rc, status = self._gpg.finish()
        if self._feed_error is not None:
            raise GatewayError(f"could not read the input: {self._feed_error}") from self._feed_error
        if rc < 0:  # killed from outside (OOM killer, an operator): says nothing about the file
            raise GatewayError(f"gpg was killed (signal {-rc}) while decrypting; the file is "
                               "processed again on the next pass", code="E_GPG_KILLED")
        return _decide(rc, status, self._allowed, self._count, bytes(self._gpg.stderr_tail))

    def close(self) -> None:
        if not self.closed:
            self._gpg.kill()
            self._feeder.join(timeout=5)
        super().close()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()


def _decide(rc: int, status: list[list[str]], allowed: frozenset[str], count: int,
            stderr: bytes) -> Verified:
    """The verdict over gpg's status lines; order matters — decryption before signature."""
    kw: dict[str, list[list[str]]] = {}
    for words in status:
        kw.setdefault(words[0], []).append(words[1:])

    recipients = tuple(dict.fromkeys(w[0].upper() for w in kw.get("ENC_TO", []) if w))
    signer = _signer_named(kw)

    def fail(code: str, message: str) -> CryptoError:
        return CryptoError(message, code=code, recipients=recipients, signer=signer)

    enc_to = {w[0] for w in kw.get("ENC_TO", []) if w}
    no_seckey = {w[0] for w in kw.get("NO_SECKEY", []) if w}
    if "NODATA" in kw or ("PLAINTEXT" not in kw and not enc_to and "BEGIN_DECRYPTION" not in kw):
        raise fail(E_CORRUPT, "not an OpenPGP message, or truncated")
    if enc_to and enc_to <= no_seckey:
        raise fail(E_NOT_FOR_US, "the message is not encrypted to the gateway's key")
    if not enc_to and "BEGIN_DECRYPTION" not in kw:
        raise fail(E_DECRYPT, "the message is not encrypted (signed only); it must be "
                              "encrypted to the gateway")
    if "BADMDC" in kw:
        raise fail(E_CORRUPT, "the message was modified after it was encrypted (integrity check failed)")
    if "BAD_PASSPHRASE" in kw or "MISSING_PASSPHRASE" in kw:
        raise fail(E_DECRYPT, "could not unlock the gateway's secret key (wrong or missing passphrase)")
    if any(w and w[0] == "pkdecrypt_failed" for w in kw.get("ERROR", [])):
        raise fail(E_DECRYPT, "could not decrypt the session key (the message may be damaged)")
    if "DECRYPTION_OKAY" not in kw or "GOODMDC" not in kw or "DECRYPTION_FAILED" in kw:
        if "BEGIN_DECRYPTION" in kw:
            raise fail(E_CORRUPT, "the message is damaged or was modified (decryption failed)")
        raise fail(E_DECRYPT, "decryption failed")
    if kw.keys() & _REVOKED_OR_EXPIRED:
        raise fail(E_REVOKED_OR_EXPIRED, "the signing key or signature is revoked or expired")
    if "BADSIG" in kw:
        raise fail(E_BAD_SIGNATURE, "the signature does not match the content")
    for err in kw.get("ERRSIG", []):
        if len(err) >= 6 and err[5] == "9":  # rc 9: no public key
            raise fail(E_UNKNOWN_SIGNER, "signed by a key that is not configured for this sender")
        raise fail(E_BAD_SIGNATURE, "the signature could not be checked")
    valid = kw.get("VALIDSIG", [])
    if not valid and "GOODSIG" not in kw:
        raise fail(E_UNSIGNED, "the message is not signed")
    if len(valid) != 1 or len(kw.get("GOODSIG", [])) != 1:
        raise fail(E_BAD_SIGNATURE, "expected exactly one signature")
    sig = valid[0]
    primary = (sig[9] if len(sig) > 9 else sig[0]).upper()
    if primary not in allowed:
        raise fail(E_UNKNOWN_SIGNER, f"signed by key {primary}, which is not an accepted signer "
                                     "for this sender")
    if rc != 0 or "FAILURE" in kw:
        raise fail(E_CORRUPT, f"gpg reported an error: {stderr_tail(stderr)}")
    return Verified(fingerprint=primary, signing_key=sig[0].upper(),
                    signed_at=int(sig[2]) if sig[2].isdigit() else 0,
                    plaintext_bytes=count, _token=_TOKEN)


def _signer_named(kw: dict[str, list[list[str]]]) -> str | None:
    """The key a signature names, best first: the primary fingerprint of a good one, else
    the key id gpg saw (a bad, an expired or revoked, or an uncheckable signature's)."""
    for sig in kw.get("VALIDSIG", []):
        if sig:
            return (sig[9] if len(sig) > 9 else sig[0]).upper()
    for word in ("BADSIG", "EXPKEYSIG", "REVKEYSIG", "EXPSIG", "ERRSIG", "GOODSIG"):
        for args in kw.get(word, []):
            if args:
                return args[0].upper()
    return None


class SealWriter:
    """A write-only stream that signs and encrypts into *dst*; ``close`` checks the result.

    On an exception inside the ``with`` block gpg is killed and nothing is
    claimed; the caller discards *dst* (it lives in staging).
    """

    def __init__(self, engine: Engine, dst: BinaryIO, recipients: list[str], *, armor: bool) -> None:
        args = ["--local-user", engine.signer or "", "--sign", "--encrypt", "--no-encrypt-to",
                "--digest-algo", "SHA256", "--cipher-algo", "AES256",
                "--compress-algo", "zlib" if engine.compress_level else "none",
                "-z", str(engine.compress_level), "--set-filename", "", "--output", "-"]
        if armor:
            args.append("--armor")
        for fpr in recipients:
            args += ["--recipient", fpr]
        self._gpg = engine._spawn(args)
        self._dst = dst
        self._drain_error: BaseException | None = None
        self._drain = threading.Thread(target=self._copy_out, daemon=True)
        self._drain.start()
        self._closed = False

    def _copy_out(self) -> None:
        stdout = self._gpg.proc.stdout
        assert isinstance(stdout, io.BufferedReader)  # noqa: S101 — Popen's pipe, buffered by default
        try:
            for chunk in iter(lambda: stdout.read1(CHUNK), b""):
                self._dst.write(chunk)
        except BaseException as exc:
            self._drain_error = exc

    def write(self, data: Buffer) -> int:
        """*data*: bytes, or a view of a buffer (Arrow's, as the columnar writer passes
        them on without a copy)."""
        stdin = self._gpg.proc.stdin
        assert stdin is not None  # noqa: S101 — invariant, not an input check
        try:
            with timing.on_gpg():  # a full pipe: the writing thread waits for gpg
                stdin.write(data)
        except BrokenPipeError:
            self.abort()
            raise CryptoError(f"gpg stopped while sealing: {stderr_tail(bytes(self._gpg.stderr_tail))}",
                              code=E_SEAL) from None
        return memoryview(data).nbytes

    def close(self) -> None:
        """Finish the message; raise unless gpg confirms the signature and the encryption."""
        if self._closed:
            return
        self._closed = True
        stdin = self._gpg.proc.stdin
        assert stdin is not None  # noqa: S101 — invariant, not an input check
        with contextlib.suppress(BrokenPipeError):
            stdin.close()
        rc, status = self._gpg.finish()
        self._drain.join()
        keys = {w[0] for w in status}
        if self._drain_error is not None:
            err = self._drain_error
            where = getattr(self._dst, "name", None)
            if isinstance(err, OSError) and isinstance(where, str):  # e.g. a full disk
                raise OSError(err.errno, err.strerror, where) from err
            raise GatewayError(f"could not write sealed output: {err}") from err
        if "INV_RECP" in keys:
            raise CryptoError("a recipient key is not usable for encryption", code=E_SEAL)
        if "INV_SGNR" in keys:
            raise CryptoError("the gateway's signing key is not usable", code=E_SEAL)
        if rc != 0 or "SIG_CREATED" not in keys or "END_ENCRYPTION" not in keys:
            raise CryptoError(f"sealing failed: {stderr_tail(bytes(self._gpg.stderr_tail))}",
                              code=E_SEAL)

    def abort(self) -> None:
        self._closed = True
        self._gpg.kill()
        self._drain.join(timeout=5)

    def __enter__(self) -> Self:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()
