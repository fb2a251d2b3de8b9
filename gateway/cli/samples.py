"""``gateway sample``: synthetic case and results files a partner tests with before real data.

Thin on purpose — what a sample holds is :mod:`gateway.samples`'; here are the options,
the config (read only for what shapes a case file), and the one line that reports."""

from __future__ import annotations

import datetime as dt
import secrets
from pathlib import Path
from typing import Annotated

import typer

from gateway import config as config_mod
from gateway import samples
from gateway.cli.common import err
from gateway.errors import UsageError

sample_app = typer.Typer(
    help="Write a synthetic case or results file for a partner's tests (plaintext; "
         "fake people only).",
    no_args_is_help=True)

OutOpt = Annotated[Path, typer.Option("--out", help="The file to write (mode 0600).")]
ForceOpt = Annotated[bool, typer.Option("--force", help="Replace --out if it exists.")]
SeedOpt = Annotated[int | None, typer.Option(
    "--seed", min=0, help="Make the same file again: same seed, same --date, same options. "
                          "Default: a random seed, printed.")]
DateOpt = Annotated[str | None, typer.Option(
    "--date", metavar="YYYY-MM-DD",
    help="The day the sample is made for (cases assigned on it, results in the two weeks "
         "before it). Default: today in the gateway's time zone.")]
AgenciesOpt = Annotated[str | None, typer.Option(
    "--agencies", metavar="AG001,AG002", help="Agency codes, comma-separated.")]
SampleConfigOpt = Annotated[Path | None, typer.Option(
    "--config", "-c", help="gateway.toml: use its case-file encoding, delimiter, header names, "
                           "time zone and agencies. Without it: UTF-8, comma, canonical headers.")]


def cases(
    out_path: OutOpt,
    rows: Annotated[int, typer.Option("--rows", min=0, help="Cases to write; 0 writes the "
                                                             "header only (a template).")] = 100,
    agencies: AgenciesOpt = None,
    config: SampleConfigOpt = None,
    seed: SeedOpt = None,
    date: DateOpt = None,
    force: ForceOpt = False,
) -> None:
    """A case file the bank's export team can seal and send before any real case exists."""
    cfg = config_mod.load(config) if config else None
    day = _day(date, cfg)
    codes = _agencies(agencies, cfg) or (samples.active_agencies(cfg, day) if cfg else ["AG001"])
    if not codes:
        raise UsageError(f"no agency of {config} has an active contract on {day}; name one "
                         "with --agencies")
    seed = _seed(seed)
    data = samples.cases_csv(samples.case_records(rows, codes, seed=seed, today=day),
                             samples.Layout.of(cfg))
    samples.write_new(out_path, data, force=force)
    _report(out_path, rows, "cases", seed, day)



def results(
    out_path: OutOpt,
    rows: Annotated[int, typer.Option("--rows", min=0, help="Result rows to write; 0 writes "
                                                             "the header only.")] = 20,
    cases_file: Annotated[Path | None, typer.Option(
        "--cases", metavar="FILE", help="A plaintext case file (e.g. a cases sample): report on "
                                        "its cases of the agency named by --agencies.")] = None,
    agencies: AgenciesOpt = None,
    config: SampleConfigOpt = None,
    seed: SeedOpt = None,
    date: DateOpt = None,
    force: ForceOpt = False,
) -> None:
    """A results file an agency can seal and send about cases it was really delivered."""
    cfg = config_mod.load(config) if config else None
    day = _day(date, cfg)
    codes = _agencies(agencies, cfg)
    if len(codes) > 1:
        raise UsageError("--agencies: a results file is one agency's; name one")
    seed = _seed(seed)
    if cases_file is not None:
        if not cases_file.is_file():
            raise UsageError(f"--cases {cases_file}: no such file")
        ids = samples.case_ids_from(cases_file, samples.Layout.of(cfg), codes)
    else:
        ids = samples.synthetic_case_ids(min(rows, 50), seed)
    data = samples.results_csv(samples.result_records(ids, rows, seed=seed, today=day))
    samples.write_new(out_path, data, force=force)
    _report(out_path, rows, "result rows", seed, day)


_SYNTHETIC = ("\n\nSynthetic: every person in it is made up (names, ID and card numbers, phones "
              "and addresses only carry valid check digits) and every case id begins with "
              "SAMPLE-, since the format has no comment line to say so. Never dial, write to or "
              "look up anything in it.")
sample_app.command("cases", help=(
    "Write a sample case file (bank → gateway): plaintext CSV, ready to be signed and "
    "encrypted. Cases are shared round-robin among --agencies (default: the agencies of "
    "-c CONFIG whose contract is active, else AG001)." + _SYNTHETIC))(cases)
sample_app.command("results", help=(
    "Write a sample results file (agency → gateway) about one agency's cases: plaintext CSV. "
    "With --cases, the rows are about that file's cases of --agencies; without it, about "
    "made-up SAMPLE- case ids, which a gateway refuses (E_NOT_ASSIGNED) unless it delivered "
    "them." + _SYNTHETIC))(results)


def _day(value: str | None, cfg: config_mod.Config | None) -> dt.date:
    if value is None:
        return samples.local_today(cfg)
    try:
        return dt.date.fromisoformat(value)
    except ValueError:
        raise UsageError(f"--date: {value!r} is not a date YYYY-MM-DD") from None


def _agencies(value: str | None, cfg: config_mod.Config | None) -> list[str]:
    """The codes asked for; with a config, each must be one of its agencies (a sample for an
    unknown agency would be refused whole, E_AGENCY)."""
    codes = [c.strip() for c in (value or "").split(",") if c.strip()]
    if cfg is not None:
        known = {a.code for a in cfg.agencies}
        unknown = [c for c in codes if c not in known]
        if unknown:
            raise UsageError(f"--agencies: {', '.join(unknown)} is not an agency of {cfg.source}")
    return codes


def _seed(seed: int | None) -> int:
    return secrets.randbelow(10**6) if seed is None else seed


def _report(path: Path, rows: int, what: str, seed: int, day: dt.date) -> None:
    err.print(f"wrote {path}: {rows} {what}, synthetic (seed {seed}, date {day}; the same "
              "seed and date make the same file)", markup=False)
