# Two commands on a fresh Debian machine: `make demo` and `make test`.
VENV   ?= .venv
PYTHON ?= python3
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
DEMO_DIR ?= demo-run

# Debian packages the gateway and its integration tests drive for real.
DEB_PACKAGES := gnupg gpg-agent openssh-server

.PHONY: test demo lint system-deps venv bench clean

test: system-deps $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/pytest -q

demo: system-deps $(STAMP)
	rm -rf $(DEMO_DIR)
	$(BIN)/gateway demo --dir $(DEMO_DIR)

lint: $(STAMP)
	$(BIN)/ruff check .

venv: $(STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test]'
	touch $@

# Installs only what is absent; needs root (apt-get) only when something is missing.
system-deps:
	@missing=""; \
	$(PYTHON) -c 'import venv, ensurepip' >/dev/null 2>&1 || missing="$$missing python3-venv"; \
	command -v gpg >/dev/null 2>&1 || missing="$$missing gnupg"; \
	command -v gpg-agent >/dev/null 2>&1 || missing="$$missing gpg-agent"; \
	[ -x /usr/sbin/sshd ] || missing="$$missing openssh-server"; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ]; then \
	    echo "installing Debian packages:$$missing"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; \
	  else \
	    echo "missing Debian packages:$$missing — run 'sudo apt-get install$$missing' or 'make' as root"; exit 1; \
	  fi; \
	fi

bench: $(STAMP)
	$(BIN)/python benchmarks/bench_open.py

clean:
	rm -rf $(VENV) $(DEMO_DIR) .pytest_cache .ruff_cache
