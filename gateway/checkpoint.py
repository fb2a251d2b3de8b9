"""Signed audit checkpoints (docs/formats.md §5.4): the chain's head, sealed with the gateway's key and
handed to the bank.

A hash chain proves order, not authorship: whoever can write the file can cut its
tail or rebuild it whole. So the gateway appends an ``audit.checkpoint`` entry and
clear-signs that entry's ``(seq, hash)`` — the checkpoint seals everything before
it, itself included — into ``state_dir/audit/checkpoints/``, and delivers a copy
to the bank's incoming zone through the same two-phase path as every delivery.
The bank then holds evidence the gateway's host cannot rewrite.

When: whenever a process that wrote audit entries ends (``run``, ``run --once``,
``retention run``), and at least hourly while the daemon runs and events arrive.

:func:`check` compares a log with a set of checkpoints — the gateway's own, or the
copies the bank kept: every checkpoint must verify, and the log must still pass
through each checkpointed ``(seq, hash)``. A cut tail, a deleted entry or a
rebuilt chain fails and names the last good checkpoint. Entries after the last
checkpoint are normal while a gateway runs (it seals them within the hour), and
evidence of a crash or a forgery when none does — except those the console and
``gateway users`` write: they hold no signing key, so their ``console.*`` entries wait
for the gateway's next run, and a verify between the two is told so, not failed.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from gateway import audit
from gateway.errors import CryptoError
from gateway.ledger import DeliveryRow
from gateway.state import read_regular, write_private

if TYPE_CHECKING:  # the checking half serves the console, which never imports the flows
    from gateway.flows import Context

BANK_IN = "bank.incoming"
INTERVAL = 3600.0  # seconds: at least one checkpoint an hour while events arrive
PREFIX, SUFFIX = "audit-checkpoint.", ".json.asc"
MAX_BYTES = 1024 * 1024  # a checkpoint is a few hundred bytes; anything far larger is not one


def seal(ctx: Context) -> str | None:
    """Checkpoint the log if anything was written since the last checkpoint, and send the
    bank its copy. Returns the checkpoint's file name (None: nothing new to seal)."""
    from gateway import outbox

    last = ctx.audit.last_entry()
    if last is None or last["event"] == "audit.checkpoint":
        return None
    entry = ctx.audit.record("audit.checkpoint", node=_node(ctx.node))
    body = {"type": "audit-checkpoint", "seq": entry["seq"], "hash": entry["hash"],
            "ts": entry["ts"], "node": _node(ctx.node), "gateway_key": ctx.crypto.fingerprint}
    signed = ctx.crypto.clearsign(json.dumps(body, indent=2).encode() + b"\n")
    stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%S.%fZ")
    name = f"{PREFIX}{stamp}{SUFFIX}"
    path = directory(ctx.state.root) / name
    write_private(path, signed)
    ctx.state.publish(path)
    # The delivery goes from the shared staging area: any node may be the one to deliver it.
    write_private(ctx.state.staging_root / "checkpoints" / name, signed)
    # agency_code "": a checkpoint belongs to no agency (the column is not nullable).
    ctx.ledger.add_delivery(DeliveryRow(kind="checkpoint", agency_code="", zone=BANK_IN, name=name,
                                        sha256=hashlib.sha256(signed).hexdigest(),
                                        size=len(signed)))
    outbox.finish_pending(ctx, kinds={"checkpoint"})
    return name


def directory(state_root: Path) -> Path:
    return state_root / "audit" / "checkpoints"


def _node(owner: str) -> str:
    return "".join(c if c.isalnum() or c in ".-" else "-" for c in owner)[:64] or "gateway"


@dataclass(frozen=True)
class Checkpoint:
    file: str
    seq: int
    hash: str
    ts: str
    node: str = ""


@dataclass(frozen=True)
class Report:
    chain: audit.Verification
    checkpoints: list[Checkpoint]  # verified signatures, by seq
    good: list[Checkpoint]  # those the log still passes through
    unsealed: int  # entries after the last checkpoint
    problem: str = ""
    notice: str = ""  # unsealed entries that are normal with no gateway running

    @property
    def ok(self) -> bool:
        return self.chain.ok and not self.problem

    @property
    def last_good(self) -> Checkpoint | None:
        return self.good[-1] if self.good else None


def load(folder: Path, open_signed: Callable[[bytes], bytes]) -> tuple[list[Checkpoint], str]:
    """Every checkpoint in *folder* whose signature verifies (*open_signed* returns the
    signed text or raises CryptoError); the problem with the first one that does not."""
    found: list[Checkpoint] = []
    for path in sorted(folder.glob(f"{PREFIX}*{SUFFIX}")):
        try:
            data = read_regular(path, limit=MAX_BYTES)
        except OSError as exc:
            return found, f"checkpoint {path.name}: {exc.strerror} — not a checkpoint file"
        try:
            body = json.loads(open_signed(data))
            found.append(Checkpoint(path.name, int(body["seq"]), str(body["hash"]), str(body["ts"]),
                                    str(body.get("node", ""))))
        except CryptoError as exc:
            return found, f"checkpoint {path.name}: {exc} — it was not made by the gateway's key"
        except (ValueError, KeyError, TypeError):
            return found, f"checkpoint {path.name}: not a checkpoint document"
    return sorted(found, key=lambda c: c.seq), ""


def log_nodes(log_path: Path) -> set[str]:
    """The nodes a log says wrote it (its ``audit.checkpoint`` entries name their node):
    each node of a several-host site keeps its own log, and the bank's folder holds every
    node's checkpoints."""
    nodes: set[str] = set()
    with log_path.open("rb") as fh:
        for line in fh:
            if b'"audit.checkpoint"' not in line:
                continue
            try:
                entry = json.loads(line)
            except ValueError:
                continue
            if entry.get("event") == "audit.checkpoint" and entry.get("node"):
                nodes.add(str(entry["node"]))
    return nodes


def check(log_path: Path, folder: Path, open_signed: Callable[[bytes], bytes], *,
          writer_running: bool) -> Report:
    """The log against the checkpoints in *folder* (see the module docstring)."""
    checkpoints, problem = load(folder, open_signed)
    if len({c.node for c in checkpoints}) > 1:  # several nodes' copies in one folder (the bank's)
        mine = log_nodes(log_path)
        if not mine:
            problem = problem or ("the checkpoints come from several nodes and this log names "
                                  "none of them (it holds no audit.checkpoint entry)")
        checkpoints = [c for c in checkpoints if c.node in mine]
    chain = audit.verify(log_path, collect={c.seq for c in checkpoints})
    good: list[Checkpoint] = []
    if not problem:
        for c in checkpoints:
            if c.seq > chain.entries:
                problem = (f"checkpoint {c.file} seals entry {c.seq}, but the log "
                           + (f"breaks at entry {chain.broken_seq}" if not chain.ok else
                              f"ends at entry {chain.entries}: entries were cut from its end"))
                break
            if chain.hashes.get(c.seq) != c.hash:
                problem = (f"entry {c.seq} is not the one checkpoint {c.file} sealed: the chain "
                           "was rewritten")
                break
            good.append(c)
    sealed_to = checkpoints[-1].seq if checkpoints else 0
    unsealed = max(0, chain.entries - sealed_to) if chain.ok else 0
    notice = ""
    if not problem and chain.ok and unsealed and not writer_running:
        if _written_by_console(log_path, sealed_to, chain.entries):
            notice = (f"{unsealed} entries ({sealed_to + 1}–{chain.entries}) after the last "
                      "checkpoint were written by the console or `gateway users`, which hold no "
                      "signing key; they will be sealed by the gateway's next run")
        else:
            problem = (f"entries {sealed_to + 1}–{chain.entries} come after the last checkpoint "
                       "and no gateway is running to seal them: a crash (the next run seals "
                       "them), or entries added by hand")
    return Report(chain, checkpoints, good, unsealed, problem, notice)


def _written_by_console(log_path: Path, sealed_to: int, upto: int) -> bool:
    """Whether every entry from *sealed_to* to *upto* is a ``console.*`` event under an actor the
    console (``console``) or ``gateway users`` (an OS account, ``person>account``) would
    write: those processes cannot checkpoint, so such a tail is routine, not a crash. Any
    other entry there is what a crash or a hand-made append leaves."""
    with log_path.open("rb") as fh:
        for n, line in enumerate(fh, start=1):
            if n > upto:  # written since the chain was checked: not what was verified
                break
            if n <= sealed_to:
                continue
            entry = json.loads(line)  # sound: the chain verified before this is asked
            if not (str(entry.get("event", "")).startswith("console.")
                    and audit.is_actor(entry.get("actor"))):
                return False
    return True
