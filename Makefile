# Two commands on a fresh Debian machine: `make demo` and `make test`.
VENV   ?= .venv
PYTHON ?= python3
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
DEMO_DIR ?= demo-run
# The runtime dependencies as wheels, so tests/integration/test_package.py can install the
# built gateway wheel into a fresh venv without the network.
WHEELHOUSE := $(VENV)/wheelhouse

# Debian packages the gateway and its integration tests drive for real
# (gnupg, gpg-agent, openssh-server, postgresql; chromium and chromium-driver for the
# console's browser tests; nginx-light, Debian 12's small nginx, for the console behind a
# TLS reverse proxy — /usr/sbin is not on a user's PATH, hence the second test; rsyslog, which
# carries internal-sftp's log lines out of the chroots as deploy/rsyslog.d says).

.PHONY: test demo lint docs dist sbom lock system-deps venv bench bench-forward faults two-nodes clean

# The gateway's bytecode is compiled first, as pip compiles an installed wheel's: the suite
# starts the gateway some hundreds of times, and with PYTHONDONTWRITEBYTECODE set (as on
# this project's VMs) each start would compile its ~120 modules again.
test: system-deps $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/mypy
	$(BIN)/python -m compileall -q gateway > /dev/null
	$(BIN)/pytest -q --durations=15 -n 2 --dist worksteal

demo: system-deps $(STAMP)
	rm -rf $(DEMO_DIR)
	$(BIN)/gateway demo --dir $(DEMO_DIR)

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/mypy

# The reference pages, generated from the code (gateway/reference/): the configuration
# models and the command line, the gateway's and the agency kit's (agency.toml,
# gateway-agency). tests/unit/test_reference_docs.py fails until they are rewritten.
REFERENCE_PAGES := config:configuration cli:cli agency-config:agency-configuration agency-cli:agency-cli
docs: $(STAMP)
	@set -e; for page in $(REFERENCE_PAGES); do \
	  $(BIN)/python -m gateway.reference $${page%%:*} > docs/$${page#*:}.md.tmp; \
	  mv docs/$${page#*:}.md.tmp docs/$${page#*:}.md; echo "wrote docs/$${page#*:}.md"; \
	done

# The wheel and the sdist in dist/, versioned from the git tag (setuptools-scm; no tag:
# 0.1.devN+g<hash>). The wheel is built from the sdist, so both carry everything. The
# runtime lock goes beside them: a host installs the dependencies from it, hash-checked,
# then the wheel with --no-deps (docs/install.md).
dist: $(STAMP)
	rm -rf dist
	$(BIN)/python -m build --outdir dist .
	cp requirements/runtime.lock dist/

venv: $(STAMP)

# Every package the venv holds comes from the locks, each pinned with the SHA-256 of its
# files: requirements/runtime.lock (what the gateway needs to run) and requirements/test.lock
# (the tests' and developers' tools, and pip itself; nothing that runtime.lock already has).
# A file whose hash is not in the lock, or a dependency missing from it, fails the install.
# pip is upgraded from the lock in the same step; the gateway itself goes in editable, without
# dependencies and without build isolation (its build backend is in test.lock), and `pip check`
# then fails if pyproject.toml asks for something the locks do not hold.
# The wheelhouse holds the runtime lock as wheels (from pip's cache, hash-checked again);
# test_package.py installs the built gateway wheel from it with --no-index.
$(STAMP): pyproject.toml requirements/runtime.lock requirements/test.lock
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --require-hashes -r requirements/runtime.lock -r requirements/test.lock
	$(BIN)/pip install --quiet --no-deps --no-build-isolation -e .
	$(BIN)/pip check
	rm -rf $(WHEELHOUSE)
	$(BIN)/pip wheel --quiet --require-hashes --wheel-dir $(WHEELHOUSE) -r requirements/runtime.lock
	touch $@

# Rewrites the locks from pyproject.toml. Run it after changing `dependencies` or the `test`
# extras (`make venv` then fails on its `pip check` until you do), and to take updates: pins
# that still satisfy pyproject.toml are kept unless LOCK_ARGS says otherwise, e.g.
# `make lock LOCK_ARGS=--upgrade` (everything) or `LOCK_ARGS='--upgrade-package paramiko'`;
# then `make venv` and `make test`, and commit the locks with the change that needed them.
# Needs PyPI. Resolved for CPython 3.11 on x86-64 Linux (the Debian hosts and CI), whichever
# machine runs it; every file of a pinned version is hashed, so the locks install on other
# platforms too (arm64 Linux, say) where no dependency differs by environment marker.
# test.lock is resolved with runtime.lock as constraints, so shared packages agree, and
# leaves them out (--no-emit-package), so each package's hashes are in exactly one lock.
# It uses the venv's uv (pinned in test.lock) without rebuilding the venv first, since a
# pyproject.toml the locks do not match yet is why it runs; the venv's pip install step put
# uv there even if its `pip check` then failed.
UV ?= $(BIN)/uv
LOCK_COMPILE = $(UV) pip compile --quiet --generate-hashes --python-version 3.11 \
	--python-platform x86_64-manylinux_2_28 --custom-compile-command 'make lock'
lock:
	@[ -x $(UV) ] || { echo "no $(UV): run 'make venv' first (it installs uv from the locks)"; exit 1; }
	$(LOCK_COMPILE) $(LOCK_ARGS) pyproject.toml -o requirements/runtime.lock
	$(LOCK_COMPILE) $(LOCK_ARGS) pyproject.toml --extra test requirements/installer.in \
		-c requirements/runtime.lock \
		$$(sed -n 's/^\([A-Za-z0-9._-]*\)==.*/--no-emit-package \1/p' requirements/runtime.lock) \
		-o requirements/test.lock

# A CycloneDX SBOM (JSON, spec 1.6) of the venv as installed: every distribution in it — the
# runtime lock's and the test lock's, the tools too — with version, PURL and declared licence,
# and the dependency graph; the main component is the gateway (from pyproject.toml, its
# version the installed one's), depending on its runtime dependencies and its test extras.
# cyclonedx-py validates it against the CycloneDX schema as it writes it.
SBOM ?= dist/sbom.cdx.json
sbom: $(STAMP)
	mkdir -p $(dir $(SBOM))
	$(BIN)/cyclonedx-py environment --pyproject pyproject.toml --sv 1.6 --of JSON \
		--output-reproducible -o $(SBOM) $(BIN)/python
	$(BIN)/python -c 'import json, sys, importlib.metadata as m; d = json.load(open(sys.argv[1])); d["metadata"]["component"]["version"] = m.version("gateway"); json.dump(d, open(sys.argv[1], "w"), indent=2)' $(SBOM)

# Installs only what is absent; needs root (apt-get) only when something is missing.
system-deps:
	@missing=""; \
	$(PYTHON) -c 'import venv, ensurepip' >/dev/null 2>&1 || missing="$$missing python3-venv"; \
	command -v gpg >/dev/null 2>&1 || missing="$$missing gnupg"; \
	command -v gpg-agent >/dev/null 2>&1 || missing="$$missing gpg-agent"; \
	[ -x /usr/sbin/sshd ] || missing="$$missing openssh-server"; \
	ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || command -v initdb >/dev/null 2>&1 \
	  || missing="$$missing postgresql"; \
	command -v chromium >/dev/null 2>&1 || missing="$$missing chromium"; \
	command -v chromedriver >/dev/null 2>&1 || missing="$$missing chromium-driver"; \
	command -v nginx >/dev/null 2>&1 || [ -x /usr/sbin/nginx ] || missing="$$missing nginx-light"; \
	command -v rsyslogd >/dev/null 2>&1 || [ -x /usr/sbin/rsyslogd ] || missing="$$missing rsyslog"; \
	ls /usr/lib/*/rsyslog/lmnsd_gtls.so >/dev/null 2>&1 \
	  || missing="$$missing rsyslog-gnutls"; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ]; then \
	    echo "installing Debian packages:$$missing"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; \
	  else \
	    echo "missing Debian packages:$$missing — run 'sudo apt-get install$$missing' or 'make' as root"; exit 1; \
	  fi; \
	fi

# The gateway against the cost of its cryptography (docs/engineering/performance.md): for each
# of BENCH_SIZES (or the one size BENCH_CASES), that many cases and as many result rows, one
# JSON line per flow and one of the fixed costs (an idle run, a 100-case batch), each flow's
# with where its file's reading waited (file.stages). The lines go to BENCH_OUT — only once
# every size has run — and the tables in README.md and docs/engineering/performance.md are
# regenerated from them (benchmarks/table.py). The engine alone: benchmarks/bench_open.py.
BENCH_CASES ?=
BENCH_SIZES ?= $(or $(BENCH_CASES),100000 1000000)
BENCH_OUT ?= benchmarks/last-run.jsonl
bench: system-deps $(STAMP)
	rm -f $(BENCH_OUT).part
	@set -e; for n in $(BENCH_SIZES); do \
	  echo "throughput.py --cases $$n --floor --fixed"; \
	  $(BIN)/python benchmarks/throughput.py --cases $$n --floor --fixed --out $(BENCH_OUT).part; \
	done
	mv $(BENCH_OUT).part $(BENCH_OUT)
	$(BIN)/python benchmarks/table.py $(BENCH_OUT)

# What forwarding the audit log to a SIEM costs the flows: batches through a running daemon
# with and without a TLS syslog destination, alternated (docs/engineering/performance.md).
bench-forward: system-deps $(STAMP)
	$(BIN)/python benchmarks/forward_overhead.py --cases 200000 --rounds 7

# >= 50 seeded SIGKILLs from outside, then the reliability table in docs/engineering/reliability.md
# regenerated from this run and from the hostile-input suites (FAULT_KILLS / FAULT_SEED to vary it).
FAULT_KILLS ?= 60
FAULT_SEED ?= 1
faults: system-deps $(STAMP)
	$(BIN)/python -m tests.faults --kills $(FAULT_KILLS) --seed $(FAULT_SEED) --json docs/faults.json
	$(BIN)/python -m tests.reliability --faults docs/faults.json --page docs/engineering/reliability.md

# Two daemons, one PostgreSQL, the same zones: HA_FILES batches and as many result files
# dropped while they run; prints the figures (files, seconds, work per node) as JSON.
HA_FILES ?= 100
two-nodes: system-deps $(STAMP)
	HA_FILES=$(HA_FILES) $(BIN)/pytest -q -s -p no:cacheprovider \
		tests/integration/test_two_nodes.py -k exactly_once -o timeout=1200

clean:
	rm -rf $(VENV) $(DEMO_DIR) dist build .pytest_cache .ruff_cache .mypy_cache
