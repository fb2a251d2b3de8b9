"""``gateway-agency``: the agency kit's command line — parse, call one function, print.

As ``gateway``'s own (:mod:`gateway.cli`): every failure a person can cause is a
:class:`GatewayError` printed as one line (a configuration error names its key) with
exit status 1, or 2 for configuration and usage errors; a traceback only for a bug, and
only with ``GATEWAY_DEBUG=1``. It imports nothing of the gateway's own side (flows,
ledger, daemon, console, audit): the kit knows only ``agency.toml``.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import fcntl
import json
import os
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated

import typer
from typer import _click as click  # Typer's own click: its commands are these types

from gateway import __version__, clock
from gateway.clihelp import tidy
from gateway.errors import ConfigError, CryptoError, GatewayError, UsageError
from gateway.kit import config as config_mod
from gateway.kit.config import AgencyConfig
from gateway.kit.crypto import KitCrypto, sweep_keyrings
from gateway.kit.files import StateDir, check_private_dir
from gateway.kit.ledger import KitLedger, open_ledger
from gateway.transfer import open_zone
from gateway.transfer.base import Zone

app = typer.Typer(
    name="gateway-agency",
    help="The agency kit: fetch and acknowledge slices from the bank's gateway, check and "
         "send results, ask to see more of named cases, destroy a contract's data and attest it.",
    no_args_is_help=True, pretty_exceptions_enable=False, add_completion=False)



@app.callback(invoke_without_command=True)
def _root(version: Annotated[bool, typer.Option("--version", help="Print the version.")] = False
          ) -> None:
    """The agency kit: fetch and acknowledge slices from the bank's gateway, check and send
    results, ask to see more of named cases, destroy a contract's data and attest it."""
    if version:
        say(f"gateway-agency {__version__}")
        raise typer.Exit(0)


ConfigOpt = Annotated[Path | None, typer.Option(
    "--config", "-c", envvar=config_mod.ENV, show_default=False,
    help="Path of agency.toml (default ./agency.toml, or $GATEWAY_AGENCY_CONFIG).")]


def say(line: str) -> None:
    print(line, flush=True)


def warn(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


@dataclass
class Kit:
    """What one command works with; zones and keys only when it asks for them."""

    cfg: AgencyConfig
    ledger: KitLedger
    state: StateDir
    stack: contextlib.ExitStack

    def crypto(self) -> KitCrypto:
        return self.stack.enter_context(KitCrypto(self.cfg))

    def inbox(self) -> Zone:
        # the gateway places whole files by rename: nothing there needs to settle
        _ssh_key(self.cfg.inbox, "inbox")
        zone = open_zone("inbox", self.cfg.inbox, settle=0.0)
        self.stack.callback(zone.close)
        return zone

    def outbox(self) -> Zone:
        _ssh_key(self.cfg.outbox, "outbox")
        zone = open_zone("outbox", self.cfg.outbox)
        self.stack.callback(zone.close)
        return zone


@contextlib.contextmanager
def kit(config: Path | None, *, exclusive: bool = False) -> Iterator[Kit]:
    """The command's configuration, state and ledger. *exclusive*: a command that changes
    what the kit holds or sends (fetch, results, unmask, destroy) runs alone — a second one,
    from cron or a colleague, stops at once rather than interleave with it.

    Every command first destroys the copies of one-off releases past their expiry
    (:func:`gateway.kit.unmask.expire`) — under the same lock: a command that does not
    need it takes it only for that, and leaves the work to the command holding it."""
    cfg = config_mod.load(config_mod.config_path(config))
    sweep_keyrings()  # those of kit commands killed before they could remove them
    with contextlib.ExitStack() as stack:
        check_private_dir(cfg.state_dir, "state_dir")
        if cfg.store is not None:
            check_private_dir(cfg.store, "store")
        state = StateDir(cfg.state_dir)
        if exclusive:
            lock = stack.enter_context((cfg.state_dir / "kit.lock").open("a"))
            try:
                fcntl.flock(lock.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                raise GatewayError("another gateway-agency command (fetch, results, unmask or "
                                   "destroy) is running on this state_dir; try again when it "
                                   "is done") from None
        ledger = open_ledger(cfg.state_dir)
        stack.callback(ledger.close)
        from gateway.kit.export import sweep_parts

        for line in sweep_parts(ledger):
            warn(line)
        _expire(cfg, ledger, state, locked=exclusive)
        yield Kit(cfg, ledger, state, stack)


def _expire(cfg: AgencyConfig, ledger: KitLedger, state: StateDir, *, locked: bool) -> None:
    """Releases past their expiry: their copies destroyed now, the lines on standard error
    (standard output may be a command's JSON)."""
    from gateway.kit import unmask

    now = clock.now()
    if not any(r["expired_at"] is None and unmask.expired(ledger, r["batch_id"], now)
               for r in ledger.releases()):
        return
    with contextlib.ExitStack() as held:
        if not locked:
            lock = held.enter_context((cfg.state_dir / "kit.lock").open("a"))
            try:
                fcntl.flock(lock.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                return  # the command holding it destroys them; open and export refuse them
        for line in unmask.expire(cfg, ledger, state, now):
            warn(line)


def _ssh_key(zone: object, box: str) -> None:
    """An SFTP zone's private key: a file of this user, mode 0600 (as ``gateway check``
    asks of the gateway's own)."""
    key = getattr(zone, "private_key", None)
    if not isinstance(key, Path):
        return
    try:
        st = key.stat()
    except OSError as exc:
        raise ConfigError(f"{box}.private_key: cannot read {key}: {exc.strerror}") from None
    if st.st_uid != os.getuid():
        raise ConfigError(f"{box}.private_key: {key} belongs to another user (uid {st.st_uid})")
    if st.st_mode & 0o077:
        raise ConfigError(f"{box}.private_key: {key} has mode {st.st_mode & 0o777:o}; "
                          "it must be 0600 (chmod 600 it)")


@app.command("init")
def init_cmd(directory: Annotated[Path, typer.Argument(help="Where to write agency.toml.")]) -> None:
    """Write a commented sample agency.toml into DIRECTORY (never overwrites)."""
    try:
        path = config_mod.write_sample(directory)
    except FileExistsError:
        raise UsageError(f"{directory / 'agency.toml'} already exists; not overwriting it") from None
    say(f"wrote {path}; fill in the values marked (bank) with what the bank's IT gives you")


@app.command("fetch")
def fetch_cmd(config: ConfigOpt = None) -> None:
    """Take slices, manifests and receipts from the inbox, check and acknowledge them.

    Each slice is checked against its manifest signed by the gateway; what arrived whole
    is acknowledged in one signed document, then removed from the inbox. A slice that does
    not match, or a manifest not signed by the gateway, is left there and reported."""
    from gateway.kit.fetch import Fetch

    with kit(config, exclusive=True) as k:
        report = Fetch(k.cfg, k.ledger, k.state, k.crypto(), k.inbox(), k.outbox()).run()
    for line in report.lines:
        say(line)
    for line in report.problems:
        warn(f"problem: {line}")
    if report.problems:
        raise typer.Exit(1)


@app.command("results")
def results_cmd(
    file: Annotated[Path, typer.Argument(help="The results CSV (plaintext) to check and send.")],
    check: Annotated[bool, typer.Option("--check", help="Only check; send nothing.")] = False,
    force: Annotated[bool, typer.Option(
        "--force", help="Send even though some rows have errors (the gateway forwards the "
                        "valid rows and lists the others in its receipt).")] = False,
    config: ConfigOpt = None,
) -> None:
    """Check a results file with the gateway's rules, then seal and send it.

    Every error is printed as "row N: CODE field — message"; exit status 1 if any (even
    when --force sent the file). Without --check, a file without errors is sealed for the
    gateway and uploaded as NAME.csv.pgp; a file with errors is not sent unless --force,
    and never when the gateway would reject it whole."""
    from gateway.kit import results

    with kit(config, exclusive=not check) as k:
        if (why := results.destroyed(k.cfg, k.ledger)) is not None:
            raise GatewayError(why)
        checked = results.check_file(k.cfg, k.ledger, file, clock.now())
        for line in checked.lines():
            say(line)
        if check:
            raise typer.Exit(1 if checked.errors.total else 0)
        if checked.errors.total and not (force and checked.sendable):
            warn("not sent: fix the errors above" + (", or send the valid rows with --force"
                                                     if checked.sendable else ""))
            raise typer.Exit(1)
        name = results.send_file(k.ledger, k.state, k.crypto(), k.outbox(), file, clock.now(),
                                 checked.sha256)
        say(f"sent {name} to the outbox")
        if checked.errors.total:  # sent with --force: the errors stand, and say so
            raise typer.Exit(1)


@app.command("unmask")
def unmask_cmd(
    case_ids: Annotated[list[str] | None, typer.Argument(
        metavar="CASE_ID...", show_default=False,
        help="The cases, by id (cases of the batches this kit holds).")] = None,
    role: Annotated[str, typer.Option(
        "--role", show_default=False,
        help="Your role; the request is signed with this installation's key of it, and the "
             "release is sealed to that key alone.")] = "",
    purpose: Annotated[str, typer.Option(
        "--purpose", show_default=False,
        help="One of the purposes the bank configured (field_visit, legal_action ...).")] = "",
    fields: Annotated[str, typer.Option(
        "--fields", show_default=False,
        help="The fields to see in full, comma-separated (home_address,id_number).")] = "",
    note: Annotated[str, typer.Option(
        "--note", help="Why these cases, for the bank's approvers (up to 500 characters; no "
                       "number of 7 or more digits, no personal data).")] = "",
    cases_file: Annotated[Path | None, typer.Option(
        "--cases-file", show_default=False,
        help="A file of case ids, one a line (# begins a comment line).")] = None,
    config: ConfigOpt = None,
) -> None:
    """Ask the bank to show named cases' fields in full, for a purpose.

    The request is signed with your role's key held here, sealed for the gateway and sent
    once; approvers at the bank decide. An approved request arrives by fetch as a one-off
    release (unmask-N) that only your key opens, and the kit destroys every copy of it at
    its expiry. Refused here, with nothing sent, when the gateway would refuse it and the
    kit can tell."""
    from gateway.kit import unmask

    missing = [o for o, v in (("--role", role), ("--purpose", purpose), ("--fields", fields))
               if not v]
    if missing:
        raise UsageError(f"{', '.join(missing)} required (gateway-agency unmask --help)")
    cases = list(case_ids or []) + (unmask.read_cases(cases_file) if cases_file else [])
    with kit(config, exclusive=True) as k:
        req = unmask.build(k.cfg, k.ledger, role=role, purpose=purpose,
                           fields=unmask.split_list(fields), note=note, cases=cases,
                           now=clock.now())
        name = unmask.send_request(k.cfg, k.ledger, k.state, k.crypto(), k.outbox(), req,
                                   clock.now())
    say(f"sent {name}: unmask request {req.id[:8]} for {len(req.cases)} case(s), "
        f"{', '.join(req.fields)} ({req.purpose}); the gateway's receipt and, once the "
        "approvers decide, the release or the decision arrive by fetch")


@app.command("destroy")
def destroy_cmd(
    contract: Annotated[str | None, typer.Option(
        "--contract", help="The contract whose data to destroy (default: the configured one).")
    ] = None,
    ended: Annotated[dt.datetime | None, typer.Option(
        "--ended", formats=["%Y-%m-%d"], show_default=False,
        help="With --contract: an earlier contract's last day (the kit knows only the "
             "configured contract's end).")] = None,
    accept_missing: Annotated[bool, typer.Option(
        "--accept-missing", help="Confirm that the decrypted copies destroy lists as not "
                                 "found are gone; they are attested as destroyed.")] = False,
    yes: Annotated[bool, typer.Option("--yes", help="Do it without asking.")] = False,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Only list what would go.")] = False,
    config: ConfigOpt = None,
) -> None:
    """After the contract's end: destroy every copy of its data and attest it.

    Deletes the ciphertext and the store's decrypted copies of every file of the contract
    and its case ids, then signs a deletion attestation, sends it to the gateway and keeps
    a copy in state_dir/attestations. Refused while the contract runs."""
    from gateway.kit import destroy, send

    with kit(config, exclusive=not dry_run) as k:
        chosen = contract or k.cfg.contract_id
        plan = destroy.plan(k.cfg, k.ledger, k.state, chosen, clock.now(),
                            ended.date() if ended else None)
        for line in plan.lines():
            say(line)
        refused = plan.refusal()
        if dry_run:
            if refused:
                say(f"(destroy would be refused now: {refused})")
            return
        if refused:
            raise GatewayError(refused)
        if plan.missing and not accept_missing:
            raise GatewayError(f"nothing destroyed: {plan.missing_text()}")
        if not yes and not typer.confirm("Destroy all of it?", default=False):
            raise typer.Exit(1)
        crypto, outbox = k.crypto(), k.outbox()
        for line in send.send_pending(k.ledger, k.state, outbox, crypto, clock.now()):
            say(line)  # an acknowledgement still owed is sent before the attestation
        done = destroy.execute(k.cfg, k.ledger, k.state, crypto, outbox, plan, clock.now,
                               accept_missing=accept_missing)
        for line in done:
            say(line)


@app.command("open")
def open_cmd(
    slice_name: Annotated[str, typer.Argument(metavar="SLICE", help="A held slice, by name.")],
    out: Annotated[Path | None, typer.Option(
        "--out", help="Write the decrypted CSV to this file (0600) instead of standard output.")
    ] = None,
    config: ConfigOpt = None,
) -> None:
    """Decrypt a held slice with its role's key, to standard output or --out."""
    from gateway.kit import export

    with kit(config) as k:
        note = export.open_slice(k.cfg, k.ledger, k.state, k.crypto(), slice_name, out,
                                 sys.stdout.buffer)
    warn(note)


@app.command("export")
def export_cmd(
    target: Annotated[str, typer.Argument(metavar="BATCH|SLICE",
                                          help="A slice by name, or a batch (its slices the "
                                               "kit can read, one after another).")],
    fmt: Annotated[str, typer.Option("--format", help="csv or xlsx.")] = "csv",
    out: Annotated[Path | None, typer.Option("--out", help="The file to write (0600).")] = None,
    config: ConfigOpt = None,
) -> None:
    """Decrypt held slices into a CSV or XLSX file you name (mode 0600)."""
    from gateway.kit import export

    if fmt not in ("csv", "xlsx"):
        raise UsageError("--format must be csv or xlsx")
    if out is None:
        raise UsageError("--out is required: the file to write")
    with kit(config) as k:
        notes = export.export(k.cfg, k.ledger, k.state, k.crypto(), target, fmt, out)
    for note in notes:
        warn(note)
    say(f"wrote {out}")


@app.command("status")
def status_cmd(
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable JSON.")] = False,
    config: ConfigOpt = None,
) -> None:
    """What the kit holds and owes, per contract.

    Batches, files and cases held, batches not acknowledged, receipts by status, the
    contract's end and deletion deadline, whether it was destroyed and attested."""
    from gateway.kit import status

    with kit(config) as k:
        report = status.collect(k.cfg, k.ledger, clock.now())
    if as_json:
        say(json.dumps(report, indent=2, ensure_ascii=False, default=_plain))
    else:
        for line in status.lines(report):
            say(line)


def _plain(value: object) -> object:
    if isinstance(value, dt.date):
        return value.isoformat()
    raise TypeError(type(value).__name__)


def command() -> click.Command:
    """The click command Typer builds, its help made readable as ``gateway``'s is: a flag
    shows no value (Typer 0.29 prints ``<bool>`` after every option)."""
    root = typer.main.get_command(app)
    tidy(root, click.Context(root))
    return root


def main(argv: list[str] | None = None) -> int:
    """Entry point: every failure one readable line and an exit status."""
    os.umask(0o077)  # nothing the kit writes is for group or others
    try:
        command()(args=argv, prog_name="gateway-agency", standalone_mode=True)
    except SystemExit as exc:
        code = exc.code
        return code if isinstance(code, int) else (0 if code is None else 1)
    except CryptoError as exc:
        warn(f"error: {exc.code}: {exc}")
        return exc.exit_code
    except GatewayError as exc:
        for line in str(exc).splitlines() or [exc.code]:
            warn(f"error: {line}")
        return exc.exit_code
    except KeyboardInterrupt:
        warn("interrupted")
        return 130
    except BrokenPipeError:
        return 1
    except OSError as exc:
        if os.environ.get("GATEWAY_DEBUG"):
            raise
        where = f": {exc.filename}" if exc.filename else ""
        warn(f"error: {exc.strerror or exc}{where}")
        return 1
    except Exception as exc:
        if os.environ.get("GATEWAY_DEBUG"):
            raise
        warn(f"internal error: {type(exc).__name__}: {exc} (this is a bug; rerun with "
             "GATEWAY_DEBUG=1 for the traceback)")
        return 1
    return 0


def run() -> None:
    """Console-script entry point."""
    sys.exit(main())
