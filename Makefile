# impex-hub: `make run` starts the demo, `make test` runs the whole test suite (see README.md).

SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
ADDR ?= 127.0.0.1:8000
# ADDR is runserver's [host:]port; a bare port listens on 127.0.0.1.
ADMIN_URL = http://$(if $(findstring :,$(ADDR)),$(ADDR),127.0.0.1:$(ADDR))/admin/
RESET_PASSWORD ?=
PYTEST_ARGS ?=
BENCH_ARGS ?=

.PHONY: help run serve test lint bench

help:
	@echo "make run    set up .venv, migrate, load the demo, start the cluster and the web server on $(ADDR)"
	@echo "           ADDR=[host:]port: another address, e.g. make run ADDR=0.0.0.0:8080 (default 127.0.0.1:8000)"
	@echo "           RESET_PASSWORD=1: give the demo's admin a new random password"
	@echo "           (development mail is saved in var/mail/, one line in the console per mail)"
	@echo "make serve production: migrate, collectstatic, then the cluster and gunicorn on $(ADDR) (Ctrl-C stops both)"
	@echo "           DEBUG off: needs SECRET_KEY; ALLOWED_HOSTS for the names clients use; see README, Production"
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

# The cluster runs in a process group of its own (`set -m` around its start), so that a signal to the
# whole group (Ctrl-C, a service manager's or a closing terminal's SIGTERM/SIGHUP) reaches only its main
# process, through the EXIT trap: django-q2 stops its sentinel through a multiprocessing Event, whose
# set() blocks forever once the sentinel has died of that same signal (its SIGTERM is SIG_DFL), so the
# cluster then hung in "stopping". What is left of its group after 10 s (a task still running) is killed.
# `run` and `serve` start it so, then run their web server in the foreground.
WITH_CLUSTER = set -m; $(BIN)/python manage.py qcluster & qcluster=$$!; set +m; \
	stop_cluster() { \
		trap '' HUP INT TERM; \
		kill -TERM $$qcluster 2>/dev/null; \
		for _ in {1..100}; do kill -0 $$qcluster 2>/dev/null || break; sleep 0.1; done; \
		kill -KILL -- -$$qcluster 2>/dev/null; \
		wait $$qcluster 2>/dev/null; \
	}; \
	trap stop_cluster EXIT; \
	trap 'exit 129' HUP; trap 'exit 130' INT; trap 'exit 143' TERM;

# DEBUG defaults to on for every step of `make run` only (a development command: runserver then serves the admin's
# static files, and with no SECRET_KEY set the steps share this machine's key file, var/secret_key); settings keep
# DEBUG off unless it is set, and then require SECRET_KEY.
run: export DEBUG ?= 1
run: $(VENV)/.installed
	$(BIN)/python manage.py migrate --noinput
	$(BIN)/python manage.py impex_demo --url "$(ADMIN_URL)"$(if $(filter-out 0,$(RESET_PASSWORD)), --reset-password)
	@$(WITH_CLUSTER) \
	echo "Starting the django-q2 cluster (pid $$qcluster) and the web server at $(ADMIN_URL) (Ctrl-C stops both)"; \
	$(BIN)/python manage.py runserver "$(ADDR)"

# What a deployment runs (README "Production"): DEBUG off whatever the environment says, so SECRET_KEY must be set
# (the same on every machine: no key file here); gunicorn (config/gunicorn.py) serves the admin, the API and, through
# WhiteNoise, the static files collectstatic gathered in STATIC_ROOT.
serve: export DEBUG = 0
serve: export ADDR := $(ADDR)
serve: $(VENV)/.installed
	@test -n "$$SECRET_KEY" || { echo "make serve runs with DEBUG off and needs SECRET_KEY, the same on every machine:"; \
		echo "  export SECRET_KEY=\"\$$($(PYTHON) -c 'import secrets; print(secrets.token_urlsafe(50))')\""; exit 2; }
	$(BIN)/python manage.py migrate --noinput
	$(BIN)/python manage.py collectstatic --noinput -v0
	@$(WITH_CLUSTER) \
	echo "Starting the django-q2 cluster (pid $$qcluster) and gunicorn at $(ADMIN_URL) (Ctrl-C stops both)"; \
	$(BIN)/gunicorn -c config/gunicorn.py config.wsgi

test: $(VENV)/.installed-dev
	$(BIN)/pytest $(PYTEST_ARGS)

lint: $(VENV)/.installed-dev
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

bench: $(VENV)/.installed-dev
	$(BIN)/python bench/import_bench.py $(BENCH_ARGS)
