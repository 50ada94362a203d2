# impex-hub: `make run` starts the demo, `make test` runs the whole test suite (see README.md).

SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
ADDR ?= 127.0.0.1:8000
PYTEST_ARGS ?=
BENCH_ARGS ?=

.PHONY: help run test lint bench

help:
	@echo "make run    set up .venv, migrate, load the demo, start the cluster and the web server on $(ADDR)"
	@echo "make test   run the whole test suite (extra pytest arguments: PYTEST_ARGS=...)"
	@echo "make lint   ruff check and ruff format --check"
	@echo "make bench  run bench/import_bench.py (arguments: BENCH_ARGS=...)"

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

# Stamps: re-runs install again only when a requirements file has changed.
$(VENV)/.installed: requirements.txt | $(BIN)/python
	$(BIN)/python -m pip install -q -r requirements.txt
	touch $@

$(VENV)/.installed-dev: requirements.txt requirements-dev.txt | $(BIN)/python
	$(BIN)/python -m pip install -q -r requirements-dev.txt
	touch $@ $(VENV)/.installed

# DEBUG defaults to on for `make run` only (a development command: runserver then serves the admin's
# static files); settings keep DEBUG off unless it is set. Ctrl-C stops both processes.
run: $(VENV)/.installed
	$(BIN)/python manage.py migrate --noinput
	$(BIN)/python manage.py impex_demo
	@export DEBUG="$${DEBUG:-1}"; \
	$(BIN)/python manage.py qcluster & qcluster=$$!; \
	trap 'kill -TERM $$qcluster 2>/dev/null; wait $$qcluster 2>/dev/null' EXIT; \
	trap 'exit 130' INT TERM; \
	echo "Starting the django-q2 cluster (pid $$qcluster) and the web server at http://$(ADDR)/admin/ (Ctrl-C stops both)"; \
	$(BIN)/python manage.py runserver $(ADDR)

test: $(VENV)/.installed-dev
	$(BIN)/pytest $(PYTEST_ARGS)

lint: $(VENV)/.installed-dev
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

bench: $(VENV)/.installed-dev
	$(BIN)/python bench/import_bench.py $(BENCH_ARGS)
