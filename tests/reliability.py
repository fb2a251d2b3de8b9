"""The reliability table of docs/engineering/reliability.md, generated — never typed.

``python -m tests.reliability --faults docs/faults.json`` runs the
hostile-input and fault suites below with pytest (junit XML), counts per row how
many cases were tried and whether every one held, adds the rows of the
fault-injection harness (:mod:`tests.faults`, its JSON summary), and replaces the
table between the page's ``reliability-table`` markers (``--page`` names another page).
``make faults`` runs both.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import xml.etree.ElementTree as ET
from pathlib import Path

# (fault or attack, the tests that try it: "file::function" under tests/)
CATALOGUE: list[tuple[str, list[str]]] = [
    ("Hostile file names beside a valid batch: newline, backslash, not UTF-8, U+202E, "
     "252 bytes of 4-byte characters, trailing newline (local and SFTP zones)",
     ["integration/test_hostile_names.py::test_a_bad_name_is_that_files_problem",
      "integration/test_hostile_names.py::test_a_trailing_newline_does_not_pass_as_a_batch_name"]),
    ("Symlinks and FIFOs in a drop zone (never followed, never hang a pass, audited, shown)",
     ["integration/test_hostile_names.py::test_symlinks_and_fifos_are_refused_audited_and_shown",
      "integration/test_zones.py::test_symlinks_and_fifos_are_refused_never_read"]),
    ("Unfinished uploads: `run --once` mid-upload, four append sessions under the daemon, "
     "a writer resuming during the read, a growing remote file",
     ["integration/test_hostile_names.py::test_run_once_leaves_a_file_that_is_still_being_written",
      "integration/test_hostile_names.py::test_an_upload_appended_in_sessions_is_taken_once_complete",
      "integration/test_hostile_names.py::test_a_writer_that_resumes_while_the_file_is_read_is_not_cut",
      "integration/test_zones.py::test_a_growing_remote_file_is_not_ready"]),
    ("Spreadsheet formulas (`=HYPERLINK(…)`, `+cmd…`, `@SUM(…)`, `-2+3…`) in case files and results",
     ["integration/test_hostile_content.py::test_formulas_in_a_case_file_reach_no_agency_as_formulas",
      "integration/test_hostile_content.py::test_formulas_in_results_reach_the_bank_as_text"]),
    ("A file without its header row; a header that looks like a value (receipts echo no value)",
     ["integration/test_hostile_content.py::test_a_headerless_file_names_no_value_in_its_receipt",
      "integration/test_hostile_content.py::"
      "test_an_unknown_column_that_looks_like_a_value_is_named_by_position"]),
    ("U+202E and U+200B in names",
     ["integration/test_hostile_content.py::"
      "test_invisible_formatting_characters_in_names_are_rejected"]),
    ("Truncated messages (binary and armored, cut at 3, 50 and 90 %) -> E_TRUNCATED",
     ["integration/test_batch_errors.py::test_truncated_message_says_so"]),
    ("Tampered ciphertext, compression bomb, every file-level CSV error (empty, NUL, 10 MB line, "
     "a million columns, ...)",
     ["integration/test_batch_errors.py::test_tampered_ciphertext",
      "integration/test_batch_errors.py::test_compression_bomb",
      "integration/test_batch_errors.py::test_file_level_errors"]),
    ("Odd OpenPGP envelopes: signed-only, symmetric, `-c --sign`, unsigned, unknown or extra "
     "signer, wrong recipient, clear-signed, detached, random bytes, zero bytes, concatenated",
     ["integration/test_hostile_envelopes.py::test_odd_envelopes_are_rejected_with_a_receipt",
      "integration/test_batch_flow.py::test_unauthenticated_files_are_refused_with_a_receipt"]),
    ("A plaintext CSV dropped by mistake (also with a crash after the claim): never copied",
     ["integration/test_hostile_envelopes.py::"
      "test_a_plaintext_csv_dropped_by_mistake_is_never_copied"]),
    ("Replays and reused batch ids",
     ["integration/test_batch_flow.py::test_same_content_twice_is_a_duplicate",
      "integration/test_batch_flow.py::test_reused_batch_id_is_refused"]),
    ("Results about another agency's cases, signed with another agency's key, about purged cases",
     ["integration/test_results_flow.py::test_results_reach_the_bank_and_cross_agency_rows_do_not",
      "integration/test_results_flow.py::test_signed_by_another_agencys_key_is_rejected_whole",
      "integration/test_results_flow.py::test_all_rows_foreign_is_rejected",
      "integration/test_retention.py::test_after_the_purge_the_agency_can_report_nothing"]),
    ("Audit log: last entry cut, forged entry appended, entry edited and chain rebuilt, forged "
     "checkpoint (own checkpoints and the bank's copies)",
     ["integration/test_audit_checkpoints.py::test_cutting_the_last_entry_is_caught",
      "integration/test_audit_checkpoints.py::test_a_forged_appended_entry_is_caught",
      "integration/test_audit_checkpoints.py::test_an_edited_and_rechained_entry_is_caught",
      "integration/test_audit_checkpoints.py::test_a_checkpoint_signed_by_another_key_is_refused"]),
    ("Torn last audit line after a crash; an audit write that does not complete",
     ["integration/test_audit_checkpoints.py::test_a_torn_last_line_is_repaired_at_start",
      "unit/test_audit_write.py::test_a_short_write_is_undone_and_raised"]),
    ("Zone aliased to another agency's by a symlink; a zone inside the state directory",
     ["integration/test_local_safety.py::test_a_zone_aliased_by_a_symlink_is_a_config_error_at_run",
      "integration/test_local_safety.py::test_a_zone_inside_the_state_directory_is_a_config_error"]),
    ("One key for two agencies (refused); for two roles of one agency (warned)",
     ["integration/test_local_safety.py::test_one_key_for_two_agencies_is_refused",
      "integration/test_local_safety.py::test_one_key_for_two_roles_of_an_agency_is_a_warning"]),
    ("File modes under umask 000, 022 and 077; loose state; zone file_mode",
     ["integration/test_local_safety.py::test_state_files_are_private_under_any_umask",
      "integration/test_local_safety.py::test_loose_state_is_reported_by_check_and_tightened_by_run",
      "integration/test_local_safety.py::test_file_mode_is_configurable_and_checked"]),
    ("State directory on a full disk (200 KB, 1 MB, 3 MB tmpfs), then room again",
     ["integration/test_local_safety.py::"
      "test_a_full_state_disk_is_one_readable_line_and_nothing_is_lost"]),
    ("The key passphrase: process list, gpg children's environment, logs, files, repr",
     ["integration/test_local_safety.py::test_the_passphrase_never_shows"]),
    ("SIGKILL of the decrypting gpg, or of a sealing gpg, mid-batch",
     ["integration/test_batch_crash.py::test_a_gpg_child_killed_mid_batch_loses_nothing"]),
    ("SFTP server killed mid-upload; down for a whole pass; wrong pinned host key",
     ["integration/test_zones.py::test_upload_survives_a_server_restart",
      "integration/test_daemon.py::test_sftp_outage_across_passes_delivers_exactly_once",
      "integration/test_daemon.py::test_wrong_pinned_host_key"]),
    ("kill -9 at fixed points (batch, results, purge), SIGTERM mid-batch, two concurrent runs",
     ["integration/test_batch_crash.py::test_crash_then_rerun_delivers_exactly_once",
      "integration/test_results_flow.py::test_crash_between_forwarding_and_committing",
      "integration/test_retention.py::test_purge_killed_half_way_completes_with_one_certificate",
      "integration/test_retention.py::test_crash_before_the_certificate_commit",
      "integration/test_daemon.py::test_sigterm_mid_batch_delivers_all_or_nothing",
      "integration/test_hostile_envelopes.py::test_two_concurrent_runs_deliver_once"]),
    ("`retention run` while the daemon runs",
     ["integration/test_daemon.py::test_retention_run_while_the_daemon_runs"]),
    ("sshd log lines a pass cannot stop: logins `CORP\\anna`, `ev\"il<b>pwn</b>`, 80 characters, "
     "not UTF-8; addresses `fe80::1%eth0`, `UNKNOWN`; reads of same-named copies outside the "
     "inbox; three restarts record each read once",
     ["integration/test_hostile_surfaces.py::"
      "test_hostile_log_lines_stop_nothing_and_no_read_is_recorded_twice",
      "integration/test_hostile_surfaces.py::"
      "test_the_daemon_lives_through_a_hostile_log_and_records_each_read_once",
      "unit/test_fuzz_access.py::test_any_line_is_taken_or_ignored",
      "unit/test_fuzz_access.py::test_every_field_of_a_read_fits_the_audit_log"]),
    ("sshd log cut in place and regrown past the saved offset; appends, cuts and rotations "
     "of any bytes in any order",
     ["unit/test_follow.py::test_a_cut_in_place_regrown_past_the_offset_is_read_from_its_start",
      "unit/test_fuzz_access.py::test_the_follower_never_raises_and_never_goes_backwards"]),
    ("A piece of a pass that raises (a bug): the rest of the pass goes on, audited once",
     ["integration/test_hostile_surfaces.py::"
      "test_a_piece_of_a_pass_that_raises_stops_only_itself"]),
    ("SIGUSR1 (`retention run`) the moment the daemon's pid appears in its lock file",
     ["integration/test_hostile_surfaces.py::"
      "test_retention_run_right_after_the_daemon_starts_does_not_kill_it"]),
    ("An agency's inbox full (tmpfs): `status` says failing until a write succeeds",
     ["integration/test_hostile_surfaces.py::"
      "test_status_says_failing_while_an_inbox_cannot_be_written"]),
    ("`report --out` into a folder with links planted at its temporary names; months "
     "9999-12, 0001-01, 1969-12, 2026-13, fullwidth digits",
     ["integration/test_hostile_surfaces.py::test_report_does_not_write_through_planted_links",
      "integration/test_hostile_surfaces.py::test_report_months_out_of_range_are_one_readable_line"]),
    ("A FIFO named like a checkpoint in the folder `audit verify --checkpoints` reads",
     ["integration/test_hostile_surfaces.py::test_audit_verify_refuses_a_fifo_named_like_a_checkpoint"]),
    ("`USER`, `LOGNAME`, `SUDO_USER` set by the caller: the audit actor is the kernel's user",
     ["integration/test_hostile_surfaces.py::"
      "test_the_audit_actor_is_the_os_user_whatever_the_environment_says"]),
    ("kill -9 after a log line's audit entries were saved ahead, and after they were written",
     ["integration/test_hostile_surfaces.py::"
      "test_a_kill_around_the_audit_write_records_each_read_once"]),
    ("A FIFO at the sshd log's path; one results file that always fails (the others go on)",
     ["integration/test_hostile_surfaces.py::"
      "test_a_fifo_as_the_log_fails_the_access_piece_and_nothing_else",
      "integration/test_hostile_surfaces.py::test_one_file_that_fails_unexpectedly_holds_back_no_other"]),
    ("A line sent to the host's /dev/log as `internal-sftp[…]` (rsyslog, deploy/ as shipped)",
     ["integration/test_deploy_rsyslog.py::test_only_the_chroots_sockets_feed_the_evidence_file"]),
    ("Console login timing: a disabled or locked account answers as slowly as an unknown name",
     ["unit/test_console_auth.py::test_every_refusal_verifies_one_password_hash",
      "unit/test_console_auth.py::"
      "test_a_disabled_or_locked_account_answers_as_slowly_as_an_unknown_name"]),
    ("Console: formula cells in a CSV export; out-of-range numbers and months; any query "
     "parameter (fuzzed) — never a 500",
     ["unit/test_console_app.py::test_the_csv_export_neutralises_formula_leading_cells",
      "unit/test_console_app.py::test_numbers_and_months_out_of_range_are_refused_not_a_500",
      "unit/test_console_app.py::test_no_parameter_value_makes_a_server_error"]),
    ("Console: a foreign `Host`, forwarded headers from anyone but the trusted proxy; behind "
     "Debian's nginx with TLS (Secure cookies, a forged X-Forwarded-For)",
     ["unit/test_console_app.py::test_a_foreign_host_is_refused_and_never_redirected_to",
      "unit/test_console_app.py::test_forwarded_headers_are_ignored_without_a_trusted_proxy",
      "unit/test_console_app.py::test_forwarded_headers_from_another_address_are_ignored",
      "integration/test_console_proxy.py::"
      "test_log_in_through_nginx_with_secure_cookies_pages_and_an_export",
      "integration/test_console_proxy.py::test_a_foreign_host_through_nginx_gets_400_from_the_console",
      "integration/test_console_proxy.py::test_a_forged_x_forwarded_for_does_not_reach_the_audit_log"]),
    ("Console over plain HTTP beyond loopback (warned); its TLS key readable by others (refused)",
     ["integration/test_console_setup.py::test_check_warns_of_a_console_reachable_over_plain_http",
      "integration/test_console_setup.py::test_check_refuses_a_tls_key_others_may_read",
      "integration/test_console_setup.py::"
      "test_console_refuses_to_start_with_a_tls_key_others_may_read"]),
    ("Fuzzed: both CSV engines on hostile bytes, encodings, delimiters, headers and values",
     ["unit/test_fuzz_csv.py::test_both_readers_give_the_same_records_or_the_same_error",
      "unit/test_fuzz_csv.py::test_headers_map_or_are_refused_with_header_codes",
      "unit/test_fuzz_csv.py::test_case_files_get_one_verdict_from_both_engines",
      "unit/test_fuzz_csv.py::test_case_rows_of_any_values_get_one_verdict",
      "unit/test_fuzz_csv.py::test_results_files_get_one_verdict_from_both_engines",
      "unit/test_fuzz_csv.py::test_result_rows_of_any_values_get_one_verdict"]),
    ("Fuzzed: the OpenPGP packet walker on any bytes, cut and damaged real messages, armor",
     ["unit/test_fuzz_packets.py::test_any_bytes_get_a_verdict",
      "unit/test_fuzz_packets.py::test_real_messages_damaged_anyhow",
      "unit/test_fuzz_packets.py::test_real_messages_whole_and_cut_at_every_byte",
      "unit/test_fuzz_packets.py::test_armor_changes_no_verdict"]),
    ("Fuzzed: file names at the zone boundary, in receipts, patterns and the audit log",
     ["unit/test_fuzz_names.py::test_the_boundary_refuses_with_invalid_name",
      "unit/test_fuzz_names.py::test_every_name_a_zone_lists_can_be_acted_on",
      "unit/test_fuzz_names.py::test_a_receipt_name_is_always_writable",
      "unit/test_fuzz_names.py::test_the_audit_names_a_file_or_its_hash"]),
    ("A dependency file that is not the one locked (its hashes changed), a dependency the lock "
     "lacks, pyproject.toml and the locks out of step, a package in both locks: the install refuses",
     ["integration/test_supply_chain.py::test_a_file_whose_hash_is_not_in_the_lock_is_refused",
      "integration/test_supply_chain.py::test_a_dependency_missing_from_the_lock_is_refused",
      "unit/test_locks.py::test_every_line_is_an_exact_pin_with_sha256_hashes",
      "unit/test_locks.py::test_no_package_is_in_both_locks",
      "unit/test_locks.py::test_the_runtime_lock_satisfies_every_runtime_dependency",
      "unit/test_locks.py::test_the_locks_together_satisfy_the_test_extras"]),
    ("An SBOM (`make sbom`) that leaves out an installed package, misstates its version or PURL, "
     "or breaks the CycloneDX 1.6 schema",
     ["integration/test_supply_chain.py::"
      "test_make_sbom_lists_every_locked_package_with_its_version_and_purl"]),
    ("An agency's hostile documents: signed by another agency, listing slices never delivered or "
     "made-up hashes, speaking for another agency, attesting a running or another contract, not "
     "JSON, swapped kinds, replayed, poison JSON (nested past the stack, a list as type, a date "
     "without a time, the far future)",
     ["integration/test_agency_documents.py::test_hostile_documents_are_refused_with_a_receipt",
      "integration/test_agency_documents.py::test_a_replayed_acknowledgement_is_refused",
      "integration/test_agency_documents.py::test_poison_documents_are_answered_not_retried"]),
    ("The agency kit: a tampered slice, a manifest not the gateway's or listing badly, kills at "
     "every step of fetch and destroy, a store copy moved away, symlinks planted for destroy, "
     "hostile receipt names, a rejected attestation",
     ["integration/test_kit_local.py::test_a_tampered_slice_is_not_acknowledged_and_stays",
      "integration/test_kit_local.py::test_a_manifest_not_signed_by_the_gateway_is_refused",
      "integration/test_kit_local.py::test_a_signed_manifest_that_lists_badly_is_refused",
      "integration/test_kit_local.py::test_fetch_interrupted_anywhere_finishes_on_the_next_run",
      "integration/test_kit_local.py::test_destroy_interrupted_finishes_and_attests_once",
      "integration/test_kit_local.py::"
      "test_a_kill_after_decrypting_into_the_store_leaves_nothing_destroy_misses",
      "integration/test_kit_local.py::"
      "test_a_moved_store_copy_is_not_attested_destroyed_until_the_person_says_so",
      "integration/test_kit_local.py::test_destroy_never_writes_through_a_symlink",
      "integration/test_kit_local.py::test_hostile_receipt_names_neither_break_fetch_nor_reach_the_terminal",
      "integration/test_kit_local.py::test_a_rejected_attestation_is_shown_and_replaced"]),
    ("Console routes: a new route unclassified, a page without its session check, a route or "
     "console code that manages accounts; a program started by gateway code other than GnuPG, "
     "through a shell, or with a file before `--`",
     ["unit/test_console_routes.py::test_every_console_route_is_known_and_classified",
      "unit/test_console_routes.py::test_only_the_login_page_and_static_files_answer_without_a_session",
      "unit/test_console_routes.py::test_no_console_route_creates_resets_or_enables_an_account",
      "unit/test_console_routes.py::test_the_console_code_never_calls_account_management",
      "unit/test_exec_audit.py::test_each_breach_of_the_allow_list_is_reported"]),
    ("Sibling names (`AG001`/`AG0010`, `inbox`/`inbox2`, `var`/`var2`) in every containment "
     "check; the configuration, a key or the state in a zone, or writable by someone else",
     ["unit/test_config_containment.py::test_within_compares_paths_component_by_component",
      "unit/test_config_containment.py::"
      "test_a_zone_beside_state_dir_with_a_longer_name_is_accepted_inside_it_refused",
      "unit/test_config_containment.py::test_a_key_file_in_a_zone_is_refused_beside_it_accepted",
      "unit/test_config_containment.py::"
      "test_the_configuration_file_in_a_zone_is_refused_beside_it_accepted",
      "unit/test_config_containment.py::"
      "test_a_file_or_directory_the_gateway_trusts_writable_by_someone_else_is_refused",
      "integration/test_check_cli.py::"
      "test_check_and_run_refuse_a_key_or_the_config_that_others_may_write"]),
]
START, END = "<!-- reliability-table:start -->", "<!-- reliability-table:end -->"
PAGE = Path(__file__).resolve().parent.parent / "docs" / "engineering" / "reliability.md"


def run_suites(root: Path) -> dict[str, list[bool]]:
    """Outcome of every test case, keyed "file::function" (parametrised cases together)."""
    files = sorted({sel.split("::")[0] for _, sels in CATALOGUE for sel in sels})
    with tempfile.TemporaryDirectory() as tmp:
        xml = Path(tmp) / "junit.xml"
        subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                        f"--junitxml={xml}", *(f"tests/{f}" for f in files)], cwd=root,
                       check=False)
        tree = ET.parse(xml)
    outcomes: dict[str, list[bool]] = {}
    for case in tree.iter("testcase"):
        module = case.get("classname", "").removeprefix("tests.").replace(".", "/") + ".py"
        function = case.get("name", "").split("[")[0]
        held = not any(child.tag in ("failure", "error", "skipped") for child in case)
        outcomes.setdefault(f"{module}::{function}", []).append(held)
    return outcomes


def render(outcomes: dict[str, list[bool]], faults: dict) -> str:
    lines = ["| fault or attack | times tried | outcome |", "|---|---:|---|"]
    for label, selectors in CATALOGUE:
        results = [r for sel in selectors for r in outcomes.get(sel, [])]
        failed = results.count(False)
        missing = [s for s in selectors if s not in outcomes]
        outcome = ("**failed**" if failed else "not run" if missing or not results else "held")
        lines.append(f"| {label} | {len(results)} | {outcome}{f' ({failed})' if failed else ''} |")
    clean = not any(faults[k] for k in ("lost", "duplicated", "plaintext_files", "audit_breaks",
                                        "partial_files"))
    for phase, n in sorted(faults["phases"].items(), key=lambda kv: -kv[1]):
        lines.append(f"| SIGKILL of `gateway run --once` from outside — {phase} | {n} | "
                     f"{'held' if clean else '**failed**'} |")
    lines.append("")
    lines.append(f"Harness: {faults['kills']} seeded kills (seed {faults['seed']}) in "
                 f"{faults['rounds']} rounds over a {faults['cases']:,}-case batch, a results file "
                 f"and a purge, {faults['seconds']} s — kills: {faults['kills']}, lost: "
                 f"{faults['lost']}, duplicated: {faults['duplicated']}, plaintext files: "
                 f"{faults['plaintext_files']}, audit breaks: {faults['audit_breaks']}, partial "
                 f"files: {faults['partial_files']}. "
                 "Reproduce: `make faults`.")
    return "\n".join(lines)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--faults", type=Path, required=True, help="the harness's --json output")
    p.add_argument("--page", type=Path, default=PAGE,
                   help="the markdown page holding the reliability-table markers")
    args = p.parse_args()
    root = Path(__file__).resolve().parent.parent
    table = render(run_suites(root), json.loads(args.faults.read_text()))
    text = args.page.read_text()
    if START not in text or END not in text:
        print(f"{args.page}: no {START} … {END} markers", file=sys.stderr)
        return 2
    head, rest = text.split(START, 1)
    _, tail = rest.split(END, 1)
    args.page.write_text(f"{head}{START}\n{table}\n{END}{tail}")
    print(table)
    return 0 if "**failed**" not in table and "not run" not in table else 1


if __name__ == "__main__":
    sys.exit(main())
