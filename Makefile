# Every target bootstraps its own .venv, so a fresh clone needs nothing else.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
DEV    := $(VENV)/.installed-test

.PHONY: demo test lint bench clean install uninstall

# sudo make install / uninstall: see systemd/install.sh. DESTDIR stages under another root.
PREFIX     ?= /opt/picometer
SYSCONFDIR ?= /etc
UNITDIR    ?= /etc/systemd/system
BINDIR     ?= /usr/local/bin
INSTALL_ENV = DESTDIR="$(DESTDIR)" PREFIX="$(PREFIX)" SYSCONFDIR="$(SYSCONFDIR)" UNITDIR="$(UNITDIR)" \
	BINDIR="$(BINDIR)" PYTHON="$(PYTHON)"

# What the daemon and the demo need, and no more (wheels alone on a Pi); the test and lint tools on top.
$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e .
	touch $(STAMP)

$(DEV): $(STAMP)
	$(BIN)/pip install --quiet -e '.[test]'
	touch $(DEV)

demo: $(STAMP)
	$(BIN)/picometer demo

lint: $(DEV)
	$(BIN)/ruff check picometer tests bench
	$(BIN)/ruff format --check picometer tests bench
	$(BIN)/mypy

test: lint
	sh scripts/test-deps.sh
	$(BIN)/pytest

bench: $(STAMP)
	$(BIN)/python bench/overhead.py
	$(BIN)/python bench/prompt.py
	$(BIN)/python bench/storage.py

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache .hypothesis

install:
	$(INSTALL_ENV) sh systemd/install.sh

uninstall:
	$(INSTALL_ENV) sh systemd/install.sh uninstall
