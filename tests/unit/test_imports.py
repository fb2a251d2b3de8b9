"""What the daemon loads: each library in memory is paid for by every host all the time
(the batch's process tree has a memory budget, issue 11), so the ones a pass rarely or
never needs are imported where they are used."""

from __future__ import annotations

import subprocess
import sys


def test_a_pass_does_not_load_what_it_rarely_needs():
    code = ("import sys, gateway.cli, gateway.heap; gateway.heap.bound(); "
            "import gateway.daemon, gateway.flows.batches, gateway.flows.results; "
            "print(' '.join(m for m in ('alembic', 'paramiko', 'jinja2') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == []  # migrations, SFTP zones, the monthly reports


def test_a_pass_with_nothing_to_read_loads_no_engine_alerts_or_forwarders():
    """``run --once`` with nothing pending is the fixed cost of every run (issue 27: at
    most 0.8 s): Arrow and NumPy (~0.15 s to load) come with a file to read, the alert
    engine and the audit log's forwarders with the daemon's loop that starts them,
    SQLAlchemy's PostgreSQL dialect (~35 ms) with a PostgreSQL ledger, the console's read
    model (~20 ms) with the console or a monthly report."""
    code = ("import sys, gateway.cli, gateway.daemon, gateway.flows.batches, "
            "gateway.flows.results, gateway.unmask.release; "
            "print(' '.join(m for m in ('numpy', 'pyarrow', 'gateway.alerts', "
            "'gateway.forward.runner', 'gateway.validation.chunks', "
            "'sqlalchemy.dialects.postgresql', 'gateway.queries', 'gateway.reports.figures') "
            "if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == []


def test_the_engine_libraries_start_no_thread_of_their_own():
    """NumPy's OpenBLAS starts a thread per extra core at import, which spins waiting for
    matrix work the gateway never gives it; ``heap.bound()`` (called first) turns it off.
    Arrow's jemalloc keeps an idle background thread: that one sleeps."""
    code = ("import os, time, gateway.cli, gateway.heap; gateway.heap.bound(); "
            "import gateway.daemon, gateway.flows.batches; time.sleep(0.2); "
            "print(' '.join(open(f'/proc/self/task/{t}/comm').read().strip() "
            "for t in os.listdir('/proc/self/task')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    others = [t for t in out.stdout.split() if t != "jemalloc_bg_thd"]
    assert len(others) == 1  # the main thread (named after the interpreter's file)


def test_the_ledgers_stores_depend_on_no_zone_flow_crypto_or_audit_log():
    """The ledger stores identifiers; what moves, seals or audits them sits above it (the
    read model that joins it with keys and audit entries is ``gateway/queries.py``)."""
    import ast
    from pathlib import Path

    ledger = Path(__file__).resolve().parents[2] / "gateway" / "ledger"
    above = ("gateway.transfer", "gateway.flows", "gateway.crypto", "gateway.audit")
    found = []
    for path in sorted(ledger.glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            names = ([node.module or ""] if isinstance(node, ast.ImportFrom)
                     else [a.name for a in node.names] if isinstance(node, ast.Import) else [])
            found += [(path.name, n) for n in names if n.startswith(above)]
    assert found == []


def test_checkpoints_reports_and_retention_hand_work_to_the_outbox_not_a_flow():
    """They import ``gateway.outbox`` to deliver; no module of ``gateway/flows/`` but the
    package's face (the Context or Services they are given)."""
    import ast
    from pathlib import Path

    gateway = Path(__file__).resolve().parents[2] / "gateway"
    found = []
    for path in [gateway / "checkpoint.py", *sorted((gateway / "reports").glob("*.py")),
                 *sorted((gateway / "retention").glob("*.py"))]:
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module:
                mods = [f"{node.module}.{a.name}" for a in node.names] \
                    if node.module == "gateway.flows" else [node.module]
                found += [(path.name, m) for m in mods if m.startswith("gateway.flows.")
                          and m.rsplit(".", 1)[1] not in ("Context", "Services", "Guard", "unguarded")]
    assert found == []


def test_the_results_flow_loads_its_arrow_half_only_to_read_a_file():
    """``flows/results.py`` imports no module of the Arrow engine at its top:
    ``flows/result_rows.py`` is imported where a file is read, so a pass with nothing to
    read need not load pyarrow and NumPy for the results flow."""
    import ast
    from pathlib import Path

    path = Path(__file__).resolve().parents[2] / "gateway" / "flows" / "results.py"
    heavy = ("pyarrow", "numpy", "gateway.validation.chunks", "gateway.validation.columnar",
             "gateway.validation.columnar_results", "gateway.validation.ownership",
             "gateway.masking_columns", "gateway.flows.result_rows", "gateway.flows.stage")
    found = []
    for node in ast.parse(path.read_text()).body:  # the module's top level only
        if isinstance(node, ast.ImportFrom) and node.module:
            names = [node.module, *(f"{node.module}.{a.name}" for a in node.names)]
        elif isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        else:
            continue
        found += [n for n in names if n.startswith(heavy)]
    assert found == []


def test_the_models_tables_made_on_postgresql_have_partial_unique_indexes():
    """The predicates are not in the model at import (that would load SQLAlchemy's
    PostgreSQL dialect at every start): they are added when a PostgreSQL ledger opens, and
    before the model's tables are created on one — in a fresh process, no ledger opened."""
    code = ("from sqlalchemy import create_mock_engine\n"
            "from gateway.ledger import Base\n"
            "ddl = []\n"
            "engine = create_mock_engine('postgresql+psycopg://', lambda sql, *a, **k: "
            "ddl.append(str(sql.compile(dialect=engine.dialect))))\n"
            "Base.metadata.create_all(engine, checkfirst=False)\n"
            "print('\\n'.join(d.strip() for d in ddl if 'UNIQUE INDEX' in d))\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    made = out.stdout.splitlines()
    assert "CREATE UNIQUE INDEX ux_cases_live ON cases (case_id) WHERE purged_at IS NULL" in made
    assert ("CREATE UNIQUE INDEX ix_alerts_open_key ON alerts (key) WHERE cleared_at IS NULL"
            in made)
