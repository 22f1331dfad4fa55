# Two commands on a fresh machine: `make run` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
PIP := $(BIN)/python -m pip
HOST ?= 127.0.0.1
PORT ?= 8000

.PHONY: run test install install-test browser lint bench clean lerobot-venv

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip

$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(PIP) install -q -e .
	touch $@

$(VENV)/.installed-test: pyproject.toml | $(BIN)/python
	$(PIP) install -q -e '.[test]'
	touch $(VENV)/.installed $@

install: $(VENV)/.installed
install-test: $(VENV)/.installed-test

run: install
	$(BIN)/ciyuan quickstart --host $(HOST) --port $(PORT)

# Browser tests drive Debian's Chromium (no browser download); install it when missing and we may.
browser:
	@{ test -x /usr/bin/chromium && test -d /usr/share/fonts/truetype/wqy; } || \
	  { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null && apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium fonts-wqy-microhei >/dev/null; } || \
	  echo "note: /usr/bin/chromium is missing and could not be installed; browser tests will say so"

test: install-test browser
	$(BIN)/python -m pytest -q -n 2 --dist loadgroup

# ruff, and the layers' import contract of docs/architecture.md ([tool.importlinter] in pyproject.toml).
lint: install-test
	$(BIN)/ruff check ciyuan tests bench scripts
	$(BIN)/lint-imports

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache

# lerobot 0.6 (Python >= 3.12, torch) in a venv of its own, for tests/ingest/test_lerobot_client.py;
# not part of `make test`'s install: PyPI's torch for Python 3.12 brings the CUDA wheels (several GB).
LEROBOT_PYTHON ?= $(shell pyenv root 2>/dev/null)/versions/3.12.1/bin/python
lerobot-venv:
	$(LEROBOT_PYTHON) -m venv .lerobot-venv
	.lerobot-venv/bin/python -m pip install -q 'lerobot[dataset]==0.6.1'
