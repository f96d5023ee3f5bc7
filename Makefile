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

# Until `predict` exists: make labelled face clips, prepare them, train a small model on them for a few
# epochs and evaluate it. The clips come from the real face photos in ../shared/data/faces when that folder
# is there (5 labels), else from scikit-image's astronaut photo (one label: prepare only). A demo shows the
# pipeline running end to end; a few clips and epochs say nothing about accuracy.
DEMO_PHOTOS ?= $(wildcard ../shared/data/faces)
demo: setup
	$(PY) cli.py make-clips --out data/demo/clips --with-bad-files $(if $(DEMO_PHOTOS),--photos $(DEMO_PHOTOS))
	$(PY) cli.py prepare --source data/demo/clips --out data/demo/stacks/interval_5 --interval 5
ifneq ($(DEMO_PHOTOS),)
	$(PY) cli.py train --data data/demo/stacks/interval_5 --backbone resnet18 --image-size 64 --epochs 3 \
		--batch-size 4 --name demo --runs-dir data/demo/runs --overwrite
	$(PY) cli.py evaluate data/demo/runs/demo --split val
else
	@echo "(no ../shared/data/faces: one label only, so the demo stops before training)"
endif

lint: setup
	$(PY) -m ruff check .

bench: setup
	$(PY) benchmarks/prepare_speed.py
	$(PY) benchmarks/train_speed.py

clean:
	rm -rf data/demo .pytest_cache
