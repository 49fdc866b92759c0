# Two commands on a fresh machine: `make run` (the relay in dry-run) and `make test`.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
CONFIG ?= config/relay.example.yaml
SRC    := relay tests benchmarks

.PHONY: setup run test test-deps lint check-config bench clean install check-unit man deb deb-deps

# The venv is rebuilt when pyproject.toml changes. With the `fast` extra (uvloop), as installed
# servers run, so the tests' `serve` processes run on it too.
$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev,fast]'
	touch $@

setup: $(VENV)/.installed

run: setup
	$(BIN)/smsc-relay serve -c $(CONFIG)

lint: setup
	$(BIN)/ruff check $(SRC)
	$(BIN)/ruff format --check $(SRC)
	$(BIN)/mypy
	$(BIN)/lint-imports

# Debian packages the tests need: installed when root, else the command to type (no test skips).
test-deps:
	./scripts/test-deps.sh

test: test-deps lint
	$(BIN)/smsc-relay check -c $(CONFIG)
	$(BIN)/pytest --cov --cov-report=term

# Server install (root): /opt/smsc-relay, /etc/smsc-relay, /var/lib/smsc-relay, the systemd unit
# and smsc-relay(8). See docs/install.md. Every path can be moved, the defaults staying those:
# make install PREFIX=... ETC=... STATE_DIR=... UNIT_DIR=... BIN_DIR=... MAN_DIR=...
# (make hands variables given on its command line to the script's environment).
install:
	./scripts/install.sh

# The Debian package: smsc-relay_<version>_<arch>.deb here, built by debian/rules in a copy of the
# checkout, then lintian (an error fails it). Needs debhelper, python3.11-venv and lintian
# (`make deb-deps` installs them as root) and PyPI. `apt-get install ./smsc-relay_*.deb` installs it.
deb:
	./scripts/build-deb.sh

deb-deps:
	./scripts/deb-deps.sh

# smsc-relay(8) from the argument parser, to read before installing: man -l var/smsc-relay.8
man: setup
	mkdir -p var
	$(BIN)/python scripts/manpage.py var/smsc-relay.8

# The unit as installed: systemd-analyze verify, and an exposure score of 2.0 or lower.
check-unit:
	./scripts/check-unit.sh

bench: setup
	$(BIN)/python benchmarks/accept.py

clean:
	rm -rf $(VENV) var .pytest_cache .mypy_cache .ruff_cache .hypothesis
