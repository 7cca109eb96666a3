# Quick start: `make demo` runs the shipped pipelines on sample_images/; `make test` runs the tests.
# Both create (or reuse) the virtual environment .venv.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
INSTALLED := $(VENV)/.installed

.PHONY: demo test test-cellpose3 bench clean

$(INSTALLED): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $(INSTALLED)

demo: $(INSTALLED)
	$(BIN)/imaging demo --out demo_results

LINTED := imaging plugins tests benchmarks
test: $(INSTALLED)
	$(BIN)/ruff check $(LINTED)
	$(BIN)/ruff format --check $(LINTED)
	$(BIN)/python -m pytest -q

# The cellpose adapter under cellpose 3 (the main environment has cellpose 4): a separate
# environment with the CPU torch build that pip finds on this machine's disk.
CP3_VENV := .venv-cellpose3
test-cellpose3:
	test -x $(CP3_VENV)/bin/python || $(PYTHON) -m venv $(CP3_VENV)
	$(CP3_VENV)/bin/python -m pip install --quiet torch==2.13.0
	$(CP3_VENV)/bin/python -m pip install --quiet 'cellpose>=3.1,<4' -e '.[test]'
	CI=true $(CP3_VENV)/bin/python -m pytest -q tests/segment/test_cellpose_backend.py

bench: $(INSTALLED)
	$(BIN)/python benchmarks/throughput.py
	$(BIN)/python benchmarks/scaling.py
	$(BIN)/python benchmarks/segmentation.py

clean:
	rm -rf demo_results .pytest_cache
