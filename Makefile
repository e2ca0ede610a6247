# Two commands on a fresh machine with Python 3.10+: "make run" and "make test".
PYTHON ?= python3
VENV ?= .venv
PORT ?= 7000
BIN = $(VENV)/bin

.PHONY: run test check test-bench lint docs venv clean cluster

$(BIN)/twistd: setup.cfg pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $@

venv: $(BIN)/twistd

run: venv
	$(BIN)/twistd -n --pidfile= streamd --port $(PORT)

# A local NATS server (with JetStream, its data under .cluster/) and three
# nodes sharing one JetStream stream on 7001-7003 (seq listeners on
# 7101-7103); the first runs the clock. Ctrl-C stops them all.  NATS asks
# for a token and the nodes sign what they send with a shared key, both
# made once in .cluster/ (mode 0600), never on a command line.
NATS_PORT ?= 4222
cluster: venv
	@umask 077; mkdir -p .cluster; \
	for secret in nats.token cluster.key; do \
		[ -s .cluster/$$secret ] || $(BIN)/python -c 'import secrets; print(secrets.token_hex(32))' > .cluster/$$secret; \
	done; \
	printf 'authorization { token: "%s" }\n' "$$(cat .cluster/nats.token)" > .cluster/nats.conf
	@echo "NATS on 127.0.0.1:$(NATS_PORT) (token in .cluster/nats.token); streamd nodes on 7001 7002 7003, seq on 7101 7102 7103 (Ctrl-C stops all)"
	@trap 'kill 0' INT TERM EXIT; \
	$(BIN)/nats-server -c .cluster/nats.conf -a 127.0.0.1 -p $(NATS_PORT) -js -sd .cluster & \
	for port in 7001 7002 7003; do \
		if [ $$port = 7001 ]; then source=clock; else source=none; fi; \
		$(BIN)/twistd -n --pidfile= streamd --port $$port --source $$source \
			--listen tcp:$$((port + 100)):interface=127.0.0.1:framing=seq \
			--cluster nats://127.0.0.1:$(NATS_PORT) --cluster-history jetstream \
			--cluster-token-file .cluster/nats.token --cluster-key-file .cluster/cluster.key & \
	done; \
	wait

# The unit tests: no processes, no sockets but socketpairs (tests/integration
# has those), each property test on a fifth of its examples (see
# tests/__init__.py).  Seconds.
test: venv
	HYPOTHESIS_PROFILE=quick $(BIN)/python -m pytest -q tests --ignore=tests/integration

# Everything CI runs on one Python: lint and types, the docs, the whole suite
# (real daemons, and nginx, Chromium and NATS where installed) and the
# benchmark's tests.  bash .ci/run adds the floor and newest Pythons.
check: lint docs
	$(BIN)/python -m pytest -q tests
	$(BIN)/python -m pytest -q bench/test

# The benchmark's own tests (bench/test): its commands run with tiny settings.
test-bench: venv
	$(BIN)/python -m pytest -q bench/test

lint: venv
	$(BIN)/ruff check streamd tests twisted bench
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
	rm -rf $(VENV) .cluster build docs/_build *.egg-info _trial_temp .pytest_cache .mypy_cache .ruff_cache
