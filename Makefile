# make demo / make test: both create .venv when needed and install ppxgb with every extra
# (serve: the HTTP services; report: the demo's HTML report; test: the test tools), then compile
# and cache the numba kernels (ppxgb warmup), so no first run pays for compilation.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test test-fast postgres chromium bench clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[serve,report,test]'
	$(BIN)/ppxgb warmup --quiet   # compile and cache the numba kernels once, not in the first run
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/ppxgb demo --dp-results benchmarks/RESULTS_dp.json

test: $(STAMP) postgres chromium
	$(BIN)/python -m pytest -q tests

# the fast tier (no tests marked slow): a quick check while working
test-fast: $(STAMP)
	$(BIN)/python -m pytest -q -m "not slow" tests

# the services tests start a real PostgreSQL server from Debian's postgresql package;
# install it when missing (needs root); without root, fail loudly rather than skip
postgres:
	@command -v pg_ctl >/dev/null || ls /usr/lib/postgresql/*/bin/pg_ctl >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" -ne 0 ]; then \
	    echo "make: PostgreSQL (pg_ctl) is missing and installing it needs root: apt-get install -y postgresql" >&2; exit 1; fi; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null; }

# the report test renders the demo's HTML report in a real headless Chromium (Debian's chromium
# and chromium-driver packages, driven by selenium); install them when missing (needs root)
chromium:
	@{ command -v chromium >/dev/null || command -v chromium-browser >/dev/null; } && command -v chromedriver >/dev/null || { \
	  if [ "$$(id -u)" -ne 0 ]; then \
	    echo "make: Chromium (chromium, chromedriver) is missing and installing it needs root: apt-get install -y chromium chromium-driver" >&2; exit 1; fi; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver >/dev/null; }

# about an hour on 2 cores; each script prints its table and rewrites benchmarks/RESULTS_*.md
bench: $(STAMP)
	$(BIN)/python benchmarks/bench_horizontal.py
	$(BIN)/python benchmarks/bench_inference.py --write benchmarks/RESULTS_inference.md
	$(BIN)/python benchmarks/bench_vertical.py --rows 100000 --psi-ids 0
	$(BIN)/python benchmarks/bench_psi.py --write benchmarks/RESULTS_vertical.md
	$(BIN)/python benchmarks/bench_services.py

clean:
	rm -rf $(VENV) build *.egg-info
