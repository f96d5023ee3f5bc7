# One command each on a fresh machine: `make demo`, `make test`. Both set up .venv first.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: setup test demo lint bench clean

# Reinstalls when a requirements file changes; the stamp marks a finished install.
$(STAMP): requirements.txt requirements-dev.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install -r requirements-dev.txt
	touch $(STAMP)

setup: $(STAMP)

test: setup
	$(PY) -m pytest

# Until `predict` exists: make clips from a photo shipped with scikit-image, prepare them, print the summary.
demo: setup
	$(PY) cli.py make-clips --out data/demo/clips --with-bad-files
	$(PY) cli.py prepare --source data/demo/clips --out data/demo/stacks/interval_5 --interval 5

lint: setup
	$(PY) -m ruff check .

bench: setup
	$(PY) benchmarks/prepare_speed.py

clean:
	rm -rf data/demo .pytest_cache
