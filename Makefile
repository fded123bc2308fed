# Two entry points: `make run` (the default digits search) and `make test` (ruff, mypy, pytest).
# Both create .venv and install everything on first use, so they work from a fresh clone.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
EXTRAS := test,dashboard,postgres,mysql,redis,plotly
STAMP := $(VENV)/.installed

.PHONY: run test lint typecheck pytest install clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

# Chromium for the dashboard's browser test: installed with apt-get where it is missing and
# apt-get can install (root, or sudo without a password); the install never fails without it.
$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet -e '.[$(EXTRAS)]'
	@if [ ! -x /usr/bin/chromium ] && command -v apt-get >/dev/null 2>&1; then \
	  if [ "$$(id -u)" = 0 ]; then apt-get install -y chromium >/dev/null 2>&1; \
	  else sudo -n apt-get install -y chromium >/dev/null 2>&1; fi \
	  || echo "chromium not installed: the dashboard's browser test will be skipped" >&2; \
	fi
	touch $(STAMP)

install: $(STAMP)

run: $(STAMP)
	$(BIN)/explore study run

lint: $(STAMP)
	$(BIN)/ruff check .

typecheck: $(STAMP)
	$(BIN)/mypy

# pytest exits 5 when it collects nothing; that must fail, never pass by accident.
pytest: $(STAMP)
	$(BIN)/python -m pytest -q $(PYTEST_ARGS); rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "pytest collected no tests: failing" >&2; exit 1; fi; exit $$rc

test: lint typecheck pytest

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
