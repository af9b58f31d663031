# make demo / make test: both create .venv when needed and install ppxgb with every extra
# (serve: the HTTP services; report: the demo's HTML report; test: the test tools).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test bench clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[serve,report,test]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/ppxgb demo

test: $(STAMP)
	$(BIN)/python -m pytest -q tests

# about an hour on 2 cores; each script prints its table and rewrites benchmarks/RESULTS_*.md
bench: $(STAMP)
	$(BIN)/python benchmarks/bench_horizontal.py
	$(BIN)/python benchmarks/bench_inference.py --write benchmarks/RESULTS_inference.md
	$(BIN)/python benchmarks/bench_vertical.py --rows 100000 --psi-ids 1000000

clean:
	rm -rf $(VENV) build *.egg-info
