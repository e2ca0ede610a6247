# Two commands on a fresh machine with Python 3.10+: "make run" and "make test".
PYTHON ?= python3
VENV ?= .venv
PORT ?= 7000
BIN = $(VENV)/bin

.PHONY: run test test-unit lint docs venv clean

$(BIN)/twistd: setup.cfg pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $@

venv: $(BIN)/twistd

run: venv
	$(BIN)/twistd -n --pidfile= streamd --port $(PORT)

test: venv
	$(BIN)/python -m pytest -q tests

# The unit tests alone: no processes, no sockets but socketpairs (tests/integration has those).
test-unit: venv
	$(BIN)/python -m pytest -q tests --ignore=tests/integration

lint: venv
	$(BIN)/ruff check streamd tests twisted
	$(BIN)/mypy

# The docs' tools are not in the test extra, so the floor and newest venvs of
# .ci/run stay lean: "make docs" installs them into the venv on first use.
$(BIN)/sphinx-build: $(BIN)/twistd
	$(BIN)/python -m pip install --quiet -e '.[docs]'
	touch $@

# docs/ and the API from the docstrings (pydoctor), warnings as errors.
docs: $(BIN)/sphinx-build
	$(BIN)/sphinx-build -b html -W --keep-going -n -q docs docs/_build/html

clean:
	rm -rf $(VENV) build docs/_build *.egg-info _trial_temp .pytest_cache .mypy_cache .ruff_cache
