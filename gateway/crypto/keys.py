"""Key files: inspect without importing, check against the key policy, generate.

A key file is inspected with ``gpg --show-keys --with-colons`` in a throw-away
home, so looking at a key never changes any keyring. The policy (docs/operations.md):
RSA of at least 3072 bits, Ed25519/Cv25519, NIST P-256/P-384; not expired, not
revoked; able to do what we need of it (encrypt or sign); one key per file;
secret key files not readable by group or others.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import json
import os
import re
import stat
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from typing import TypedDict, Unpack

from gateway import identifiers, keywords
from gateway.crypto import _gpg
from gateway.errors import GatewayError, KeyPolicyError

MIN_RSA_BITS = 3072
_RSA = {"1", "2", "3"}
_ECC = {"18", "19", "22"}  # ECDH, ECDSA, EdDSA
_ALGO_NAMES = {"1": "RSA", "2": "RSA", "3": "RSA", "16": "ElGamal", "17": "DSA",
               "18": "ECDH", "19": "ECDSA", "22": "EdDSA"}
_GOOD_CURVES = {"ed25519", "cv25519", "curve25519", "nistp256", "nistp384"}
_FPR_RE = re.compile(r"^[0-9A-F]{40}$|^[0-9A-F]{64}$")


class KeyRefused(KeyPolicyError):
    """The key is readable but the policy refuses it (weak, expired, revoked, wrong capability).

    In a list of keys such a key is skipped with a warning (docs/operations.md); a missing or
    unreadable file is always an error.
    """

    def __init__(self, message: str, *, fingerprint: str) -> None:
        super().__init__(message)
        self.fingerprint = fingerprint


class Purpose(Enum):
    """What the gateway needs a key for; decides which capability must be usable."""

    ENCRYPT = "encrypt"  # we encrypt to it (bank, agency role keys)
    VERIFY = "verify"  # we accept its signatures (bank, agency signing keys)
    GATEWAY = "gateway"  # our own secret key: sign and decrypt
    DECRYPT_ONLY = "decrypt-only"  # previous gateway keys during a rotation
    SIGNER = "signer"  # a party's own secret key used by `gateway seal`
    RECIPIENT = "recipient"  # a party's own secret key used by `gateway open`


@dataclass(frozen=True)
class SubKey:
    """One primary key or subkey as gpg describes it."""

    fingerprint: str
    algorithm: str
    bits: int
    curve: str
    capabilities: str  # lower-case letters: e s c a
    created: dt.datetime
    expires: dt.datetime | None
    revoked: bool
    expired: bool

    @property
    def usable(self) -> bool:
        return not (self.revoked or self.expired)

    @property
    def strength_problem(self) -> str | None:
        """Why this key's algorithm is refused, or None when it is acceptable."""
        if self.algorithm in _RSA:
            if self.bits < MIN_RSA_BITS:
                return f"RSA {self.bits} bits is too weak (minimum {MIN_RSA_BITS})"
            return None
        if self.algorithm in _ECC:
            if self.curve.lower() in _GOOD_CURVES:
                return None
            return f"curve {self.curve or 'unknown'} is not accepted (Ed25519/Cv25519, P-256, P-384)"
        name = _ALGO_NAMES.get(self.algorithm, f"algorithm {self.algorithm}")
        return f"{name} keys are not accepted (RSA >= {MIN_RSA_BITS}, Ed25519/Cv25519, P-256, P-384)"

    @property
    def description(self) -> str:
        if self.algorithm in _RSA:
            return f"RSA {self.bits}"
        return self.curve or _ALGO_NAMES.get(self.algorithm, self.algorithm)


@dataclass(frozen=True)
class KeyInfo:
    """What a key file holds, read without importing it anywhere."""

    path: Path
    fingerprint: str  # primary key, 40 (v4) or 64 (v5) upper-case hex
    user_ids: tuple[str, ...]
    secret: bool
    primary: SubKey
    subkeys: tuple[SubKey, ...] = field(default=())

    @property
    def keys(self) -> tuple[SubKey, ...]:
        return (self.primary, *self.subkeys)

    @property
    def revoked(self) -> bool:
        return self.primary.revoked

    @property
    def expired(self) -> bool:
        return self.primary.expired

    def can(self, capability: str) -> bool:
        """True when a usable (not revoked, not expired) key has *capability* (e/s/c)."""
        return self.primary.usable and any(k.usable and capability in k.capabilities
                                           for k in self.keys)

    @property
    def expires(self) -> dt.datetime | None:
        return self.primary.expires


def _ts(value: str) -> dt.datetime | None:
    if not value:
        return None
    if "T" in value:  # ISO form, used by some gpg builds
        return dt.datetime.strptime(value, "%Y%m%dT%H%M%S").replace(tzinfo=dt.UTC)
    return dt.datetime.fromtimestamp(int(value), tz=dt.UTC)


@dataclass
class _Listed:
    """A primary key's lines of a listing, as far as they are read."""

    secret: bool
    primary: SubKey | None = None  # None until its fpr line
    uids: list[str] = field(default_factory=list)
    subs: list[SubKey] = field(default_factory=list)


def parse_colons(path: Path, text: str, now: dt.datetime | None = None) -> list[KeyInfo]:
    """Parse ``--with-colons`` listing into :class:`KeyInfo` objects (one per primary key).

    A primary key whose fingerprint line never came is left out (it used to end the
    parse with an AttributeError); a file of nothing else is then not a key file."""
    now = now or dt.datetime.now(dt.UTC)
    infos: list[KeyInfo] = []
    current: _Listed | None = None
    pending: list[str] | None = None  # the pub/sub line waiting for its fpr line

    def finish() -> None:
        if current is not None and current.primary is not None:
            infos.append(KeyInfo(path=path, fingerprint=current.primary.fingerprint,
                                 user_ids=tuple(current.uids), secret=current.secret,
                                 primary=current.primary, subkeys=tuple(current.subs)))

    for line in text.splitlines():
        f = line.split(":")
        kind = f[0]
        if kind in ("pub", "sec"):
            finish()
            current = _Listed(secret=kind == "sec")
            pending = f
        elif kind in ("sub", "ssb"):
            pending = f
        elif kind == "fpr" and pending is not None and current is not None:
            p = pending
            pending = None
            expires = _ts(p[6])
            sub = SubKey(
                fingerprint=f[9].upper(),
                algorithm=p[3],
                bits=int(p[2] or 0),
                curve=p[16] if len(p) > 16 else "",
                capabilities="".join(c for c in p[11] if c.islower()),
                created=_ts(p[5]) or now,
                expires=expires,
                revoked=p[1] == "r",
                expired=p[1] == "e" or (expires is not None and expires <= now),
            )
            if current.primary is None:
                current.primary = sub
            else:
                current.subs.append(sub)
        elif kind == "uid" and current is not None:
            current.uids.append(f[9] if len(f) > 9 else "")
    finish()
    return infos


class Listings:
    """gpg's listing of key files read before, by the SHA-256 of each file's bytes.

    Every start of the daemon checks every configured key, and asking gpg costs a process,
    a throw-away home and, for a secret key, an agent: 23 keys of a 5-agency site took
    ~0.17 s of a ~1.5 s idle ``run --once``. The listing of given bytes does not change;
    what changes is judged again each time from it (expiry against the clock, the file's
    mode, the policy). A listing in which gpg called a key expired is not written back:
    that verdict came from gpg's clock at the time, so the next start asks gpg again. Kept in
    the state directory, which only the gateway may write (a file there could as well
    replace the ledger); read only if it is a regular file of the gateway's own user that
    nobody else may write, not too large, written by the same gpg binary — anything else
    is read as empty. Only the listings used by this start are written back: it never grows."""

    VERSION = 1
    LIMIT = 4 * 1024 * 1024  # ~10 KB for 23 keys

    def __init__(self, path: Path | None = None) -> None:
        self.path = path
        self._gpg = self._which_gpg()
        self._old: dict[str, str] = {}
        self._used: dict[str, str] = {}
        if path is not None:
            with contextlib.suppress(OSError, ValueError, AttributeError, TypeError,
                                     RecursionError):
                doc = json.loads(self._read_own(path))
                if doc.get("version") == self.VERSION and doc.get("gpg") == self._gpg \
                        and isinstance(doc.get("listings"), dict):
                    self._old = {k: v for k, v in doc["listings"].items() if isinstance(v, str)}

    @staticmethod
    def _which_gpg() -> str:
        """The gpg binary, by path, size and time: another gpg may list a key otherwise."""
        binary = _gpg.gpg_binary()
        try:
            st = Path(binary).stat()
        except OSError:
            return binary
        return f"{binary} {st.st_size} {st.st_mtime_ns}"

    @classmethod
    def _read_own(cls, path: Path) -> bytes:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOFOLLOW)
        try:
            st = os.fstat(fd)
            if (not stat.S_ISREG(st.st_mode) or st.st_uid != os.geteuid()
                    or st.st_mode & 0o022 or st.st_size > cls.LIMIT):
                raise ValueError(f"{path}: not the gateway's own listing file")
            with os.fdopen(os.dup(fd), "rb") as fh:
                return fh.read(cls.LIMIT + 1)
        finally:
            os.close(fd)

    def listing(self, data: bytes) -> tuple[str, int]:
        """gpg's colon listing of the key bytes *data* and gpg's exit status."""
        digest = hashlib.sha256(data).hexdigest()
        if (text := self._used.get(digest, self._old.get(digest))) is not None:
            self._used[digest] = text
            return text, 0
        with _gpg.scratch_home() as home:
            proc = _gpg.run(home, ["--with-colons", "--fixed-list-mode", "--show-keys"],
                            stdin=data, trust_configured=False)
        text = proc.stdout.decode("utf-8", "replace")
        if proc.returncode == 0:
            self._used[digest] = text
        return text, proc.returncode

    def save(self) -> None:
        """Write what this run used, if anything changed (atomically, mode 0600) — but
        not a listing in which gpg called a key expired (that verdict was its clock's)."""
        kept = {k: v for k, v in self._used.items()
                if not any(line.split(":")[1:2] == ["e"] for line in v.splitlines())}
        if self.path is None or kept == self._old:
            return
        from gateway.state import write_private  # the state module imports the config
        with contextlib.suppress(OSError):  # a cache: the next start asks gpg again
            write_private(self.path, json.dumps({"version": self.VERSION, "gpg": self._gpg,
                                                 "listings": kept}).encode())
        self._old = kept


def inspect(path: Path, listings: Listings | None = None) -> KeyInfo:
    """Read one key file; a file that is missing, unreadable, or not one key is an error."""
    path = Path(path)
    if not path.is_file():
        raise KeyPolicyError(f"{path}: key file does not exist")
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise KeyPolicyError(f"{path}: cannot read key file ({exc.strerror})") from exc
    text, status = (listings or Listings()).listing(data)
    infos = parse_colons(path, text)
    if status != 0 or not infos:
        raise KeyPolicyError(f"{path}: not an OpenPGP key file")
    if len(infos) > 1:
        raise KeyPolicyError(f"{path}: holds {len(infos)} keys; put one key in each file")
    return infos[0]


def file_mode_problem(path: Path) -> str | None:
    """Why a secret key file's permissions are unsafe, or None."""
    mode = stat.S_IMODE(path.stat().st_mode)
    if mode & 0o077:
        return f"secret key file is readable by group or others (mode {mode:04o}); run chmod 600 {path}"
    return None


def check(path: Path, purpose: Purpose, listings: Listings | None = None) -> KeyInfo:
    """Inspect *path* and enforce the key policy for *purpose*; raise KeyPolicyError otherwise."""
    path = Path(path)
    secret_wanted = purpose in (Purpose.GATEWAY, Purpose.DECRYPT_ONLY, Purpose.SIGNER,
                                Purpose.RECIPIENT)
    info = inspect(path, listings)
    # What the file holds before its mode: a public key given as a secret key (copied,
    # so 0644) was once told to chmod 600 first, and only then that chmod could not help.
    if secret_wanted and not info.secret:
        raise KeyPolicyError(f"{path}: holds no secret key (a public key was given)")
    if secret_wanted and (problem := file_mode_problem(path)):
        raise KeyPolicyError(f"{path}: {problem}")
    if not secret_wanted and info.secret:
        raise KeyPolicyError(f"{path}: holds a secret key; configure the public key here and keep "
                             "the secret key with its owner")
    if purpose is Purpose.DECRYPT_ONLY:
        return info  # an old key only has to open what was already sent to it
    if info.revoked:
        raise KeyRefused(f"{path}: key {info.fingerprint} is revoked", fingerprint=info.fingerprint)
    if info.expired:
        when = info.expires.date().isoformat() if info.expires else "?"
        raise KeyRefused(f"{path}: key {info.fingerprint} expired on {when}",
                         fingerprint=info.fingerprint)
    for key in info.keys:
        if key.usable and key.strength_problem:
            raise KeyRefused(f"{path}: {key.strength_problem}", fingerprint=info.fingerprint)
    needs = {Purpose.ENCRYPT: "e", Purpose.VERIFY: "s", Purpose.GATEWAY: "es", Purpose.SIGNER: "s",
             Purpose.RECIPIENT: "e"}[purpose]
    words = {"e": "encryption", "s": "signing"}
    for cap in needs:
        if not info.can(cap):
            raise KeyRefused(f"{path}: key {info.fingerprint} has no usable {words[cap]} key",
                             fingerprint=info.fingerprint)
    return info


# --- generation --------------------------------------------------------------

# Explicit preferences without AEAD/OCB: other OpenPGP implementations (and
# gpg 2.2) reject OCB messages, so a key must never ask for them.
PREFERENCES = "SHA512 SHA384 SHA256 AES256 AES192 AES ZLIB BZIP2 ZIP Uncompressed"
ALGORITHMS = {
    "ed25519": ("ed25519", "cv25519"),
    "rsa3072": ("rsa3072", "rsa3072"),
    "rsa4096": ("rsa4096", "rsa4096"),
}
_NAME_RE = identifiers.full(identifiers.KEY_NAME)


@dataclass(frozen=True)
class GeneratedKey:
    fingerprint: str
    public_path: Path
    secret_path: Path


class KeyOptions(TypedDict, total=False):
    """How :func:`generate` makes a key, where the defaults will not do."""

    algorithm: str  # one of ALGORITHMS; ed25519 if not given
    expire: str  # gpg's validity, e.g. 2y (the default), 18m, never
    passphrase: str | None  # protects the secret key file; none if not given
    # YYYYMMDDTHHMMSS: for tests that need keys that are already expired
    faked_time: str | None


def generate(name: str, email: str, out_dir: Path, **options: Unpack[KeyOptions]) -> GeneratedKey:
    """Create ``NAME.pub.asc`` and ``NAME.sec.asc`` (mode 0600) in *out_dir*; never overwrite."""
    keywords.check(options, KeyOptions)
    algorithm, expire = options.get("algorithm", "ed25519"), options.get("expire", "2y")
    passphrase, faked_time = options.get("passphrase"), options.get("faked_time")
    if not _NAME_RE.match(name):
        raise KeyPolicyError(f"key name {name!r} must match {identifiers.KEY_NAME}")
    if algorithm not in ALGORITHMS:
        raise KeyPolicyError(f"algorithm {algorithm!r} is not one of {', '.join(ALGORITHMS)}")
    if not re.fullmatch(r"[^<>\s@]+@[^<>\s@]+", email):
        raise KeyPolicyError(f"email {email!r} is not an email address")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    pub_path, sec_path = out_dir / f"{name}.pub.asc", out_dir / f"{name}.sec.asc"
    for p in (pub_path, sec_path):
        if p.exists():
            raise KeyPolicyError(f"{p}: already exists; refusing to overwrite a key file")
    primary_algo, sub_algo = ALGORITHMS[algorithm]
    extra = ["--default-preference-list", PREFERENCES]
    if faked_time:
        extra += ["--faked-system-time", faked_time]
    pw = passphrase or ""
    with _gpg.scratch_home() as home:
        uid = f"{name} <{email}>"
        proc = _gpg.run(home, [*extra, "--quick-gen-key", uid, primary_algo, "cert,sign", expire],
                        passphrase=pw)
        if proc.returncode != 0:
            raise GatewayError(f"gpg could not generate a key: {_last_error(proc.stderr)}")
        fpr = _created_fingerprint(proc.stderr)
        proc = _gpg.run(home, [*extra, "--quick-add-key", fpr, sub_algo, "encr", expire],
                        passphrase=pw)
        if proc.returncode != 0:
            raise GatewayError(f"gpg could not add the encryption subkey: {_last_error(proc.stderr)}")
        public = _gpg.run(home, ["--armor", "--export", fpr]).stdout
        secret = _gpg.run(home, ["--armor", "--export-secret-keys", fpr], passphrase=pw).stdout
    if b"PRIVATE KEY BLOCK" not in secret or b"PUBLIC KEY BLOCK" not in public:
        raise GatewayError("gpg did not export the generated key")
    _write_new(sec_path, secret, 0o600)
    _write_new(pub_path, public, 0o644)
    return GeneratedKey(fingerprint=fpr, public_path=pub_path, secret_path=sec_path)


def _write_new(path: Path, data: bytes, mode: int) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())
    path.chmod(mode)  # umask must not loosen or tighten what we promised


def _created_fingerprint(status: bytes) -> str:
    for words in _gpg.status_lines(status):
        if words[0] == "KEY_CREATED" and len(words) >= 3 and _FPR_RE.match(words[2]):
            return words[2]
    raise GatewayError("gpg did not report the fingerprint of the new key")


def _last_error(stderr: bytes) -> str:
    lines = [ln for ln in stderr.decode("utf-8", "replace").splitlines()
             if ln.startswith("gpg:")]
    return lines[-1][5:].strip() if lines else "unknown error"
