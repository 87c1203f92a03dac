# babelwire — every target bootstraps what it needs (.venv, PostgreSQL binaries) by itself.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-$(shell cat requirements.txt requirements-dev.txt | cksum | cut -d' ' -f1)
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: run test lint fmt bench eval check postgres chromium feedtools wrk clean venv native corpus

$(STAMP): requirements.txt requirements-dev.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --disable-pip-version-check -q -r requirements-dev.txt
	rm -f $(VENV)/.installed-*; touch $(STAMP)

# The project itself, installed editable: its package build (pyproject.toml, setup.py) compiles
# dedupe's Cython kernels in place; again whenever a .pyx or the build configuration changes.
EXT_SUFFIX := $(shell $(PYTHON) -c "import sysconfig; print(sysconfig.get_config_var('EXT_SUFFIX'))")
NATIVE_SRC := $(wildcard aggregator/dedupe/_*.pyx)
NATIVE := $(NATIVE_SRC:.pyx=$(EXT_SUFFIX))

$(NATIVE) &: $(NATIVE_SRC) setup.py pyproject.toml $(STAMP)
	$(PY) -m pip install --disable-pip-version-check -q --no-build-isolation --no-deps -e .
	$(PY) -m compileall -q core sources aggregator api app  # bytecode, as an install writes it: starts do not compile
	touch $(NATIVE)

# The benchmarks' peers (reader, for the ingest bench): installed by `make bench` only.
BENCH_STAMP := $(VENV)/.bench-$(shell cat requirements-bench.txt requirements.txt requirements-dev.txt | cksum | cut -d' ' -f1)

$(BENCH_STAMP): requirements-bench.txt $(STAMP)
	$(PY) -m pip install --disable-pip-version-check -q -r requirements-bench.txt
	rm -f $(VENV)/.bench-*; touch $(BENCH_STAMP)

venv: $(STAMP) $(NATIVE)  ## the virtualenv with the requirements and the project (kernels built)

# feedparser's own test feeds, from the source distribution of the pinned feedparser (git-ignored).
FEEDPARSER := $(shell sed -n 's/^feedparser==//p' requirements.txt)
CORPUS := .corpus/feedparser-$(FEEDPARSER)/tests

$(CORPUS): requirements.txt | $(STAMP)
	rm -rf .corpus/feedparser-* && mkdir -p .corpus
	$(PY) -m pip download -q --no-binary :all: --no-deps -d .corpus feedparser==$(FEEDPARSER)
	tar -xzf .corpus/feedparser-$(FEEDPARSER).tar.gz -C .corpus feedparser-$(FEEDPARSER)/tests feedparser-$(FEEDPARSER)/LICENSE
	touch $(CORPUS)

corpus: $(CORPUS)  ## fetch the test corpora that come from the package index (make test does it)

native: $(NATIVE)  ## rebuild dedupe's compiled kernels after a .pyx change (every target does it)

run: $(STAMP) $(NATIVE)  ## serve the API on http://127.0.0.1:8000 with the offline demo outlets (SQLite)
	mkdir -p data
	$(PY) main.py migrate
	$(PY) main.py serve --demo

postgres:  ## install the PostgreSQL server binaries when missing (the tests start their own server)
	@if command -v pg_ctl >/dev/null 2>&1 || ls /usr/lib/postgresql/*/bin/pg_ctl >/dev/null 2>&1; then :; else \
		echo "installing PostgreSQL server binaries"; \
		$(SUDO) apt-get update -q && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -q postgresql; fi

chromium:  ## install Debian's Chromium when missing (the dashboard's browser tests drive it with Playwright)
	@if [ -x /usr/bin/chromium ]; then :; else \
		echo "installing chromium"; \
		$(SUDO) apt-get update -q && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -q chromium; fi

feedtools:  ## install jing (RELAX NG) and newsboat (a real feed reader) when missing: the re-export tests use them
	@if command -v jing >/dev/null 2>&1 && command -v newsboat >/dev/null 2>&1; then :; else \
		echo "installing jing and newsboat"; \
		$(SUDO) apt-get update -q && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -q jing newsboat; fi

wrk:  ## install wrk (Debian package) when missing: the API bench drives the server with it
	@command -v wrk >/dev/null 2>&1 || { echo "installing wrk"; \
		$(SUDO) apt-get update -q && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -q wrk; }

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy

fmt: $(STAMP)
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

test: $(STAMP) $(NATIVE) $(CORPUS) postgres chromium feedtools lint  ## lint, then every test a clone alone can run, on SQLite and a throwaway PostgreSQL (+ Chromium)
	$(PY) -m pytest -q -m "not shared"

check: $(STAMP) $(NATIVE) postgres feedtools  ## what needs ../shared beside the clone: the outside CLI contract check and the tests marked shared
	@test -d ../shared || { echo "make check: ../shared is missing beside this clone" >&2; exit 1; }
	$(PY) ../shared/contract/check
	$(PY) -m pytest -q -m shared

eval: $(STAMP) $(NATIVE)  ## dedupe quality on the labelled corpus, end to end through the CLI
	$(PY) bench/run_all.py --only eval
	sed -n '/<!-- bench:eval -->/,/<!-- \/bench:eval -->/p' BENCHMARKS.md

bench: $(STAMP) $(NATIVE) $(BENCH_STAMP) postgres wrk  ## speed and memory; writes BENCHMARKS.md
	$(PY) bench/run_all.py

clean:
	rm -rf $(VENV) data .corpus .pytest_cache .mypy_cache .ruff_cache build *.egg-info tests/artifacts $(NATIVE) $(NATIVE_SRC:.pyx=.c)
