# The two README commands are `make demo` and `make test`; everything else is set-up they call.
SHELL := /bin/bash
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# Trust the platform certificate store (machines behind a TLS-inspecting proxy need it).
export UV_SYSTEM_CERTS ?= 1

.PHONY: setup demo test test-fast bench bench-compare bench-sitting lock lint clean stack stack-down bench-stack-fanout

setup: $(STAMP)

# uv comes from PyPI into a bootstrap venv, so a machine without uv still installs fast.
# --compile-bytecode writes .pyc files at install time (pip does, uv does not by default): where
# PYTHONDONTWRITEBYTECODE is set, as on the development machines, every process would otherwise
# compile Airflow from source on import, 8 s instead of 3.6 s per task process.
$(STAMP): requirements.txt pyproject.toml
	@command -v $(PYTHON) >/dev/null || { echo "Python 3.11 is required ($(PYTHON) not found)"; exit 1; }
	@if ! command -v uv >/dev/null; then \
		$(PYTHON) -m venv .uv-bootstrap && .uv-bootstrap/bin/pip install -q uv==0.13.9; \
	fi
	@UV=$$(command -v uv || echo .uv-bootstrap/bin/uv); \
	$$UV venv -q --allow-existing --python $(PYTHON) $(VENV) && \
	$$UV pip install -q --compile-bytecode --python $(BIN)/python -r requirements.txt && \
	$$UV pip install -q --python $(BIN)/python --no-deps -e .
	@touch $(STAMP)

demo: setup
	$(BIN)/python -m scripts.demo

# --dist loadgroup: the stack tests (tests/stack, one xdist group) share one booted stack.
test: setup
	$(BIN)/python -m pytest -q -p no:cacheprovider -n 2 --dist loadgroup $(PYTEST_ARGS)

test-fast: setup
	$(BIN)/python -m pytest -q -x -m "not slow" $(PYTEST_ARGS)

# A production-shaped Airflow in the background (CeleryExecutor, 2 workers, triggerer, emulator):
# scripts/stack.py. Prints the UI address and login; `make stack-down` stops it by PID.
stack: setup
	$(BIN)/python -m scripts.stack up

stack-down:
	$(BIN)/python -m scripts.stack down

bench: setup
	$(BIN)/python -m scripts.benchmark $(BENCH_ARGS)

# Side by side with the official client (per-record PUTs) and Singer's tap-mailchimp (installed into
# .bench/tap-mailchimp at first use): scripts/bench_compare.py; sizes in BENCH_COMPARE_ARGS.
bench-compare: setup
	$(BIN)/python -m scripts.bench_compare $(BENCH_COMPARE_ARGS)

# The production-size figures of the README (1M members, 1M orders, 10M activity rows, bench-compare)
# one after another on a quiet machine, with the load sampled: scripts/bench_sitting.py (~1.5 h).
bench-sitting: setup
	$(BIN)/python -m scripts.bench_sitting $(SITTING_ARGS)

# One Celery worker against two on a stack of its own (.bench/stack-fanout), the email activity
# mapped over shards: scripts/bench_stack_fanout.py; sizes and shard counts in BENCH_FANOUT_ARGS.
bench-stack-fanout: setup
	$(BIN)/python -m scripts.bench_stack_fanout $(BENCH_FANOUT_ARGS)

# Re-pin requirements.txt from requirements.in (needs uv).
lock:
	@UV=$$(command -v uv || echo .uv-bootstrap/bin/uv); $$UV pip compile --python-version 3.11 requirements.in -o requirements.txt

clean:
	rm -rf $(VENV) .uv-bootstrap .demo .bench
