# deepimagej-py: two commands for a fresh machine, `make demo` and `make test`.
# Both install what they need (Debian packages, .venv, pip extras, the Java shim) first; idempotent.
PY := .venv/bin/python
export PYTHONUNBUFFERED := 1

.PHONY: setup demo test bench models clean

setup:
	@bash scripts/setup.sh

demo: setup
	@$(PY) -m deepimagej.cli demo

test: setup
	@$(PY) -m pytest -q tests

bench: setup
	@$(PY) benchmarks/bench_tiling.py
	@if [ -f benchmarks/bench_imagej.py ]; then $(PY) benchmarks/bench_imagej.py; fi
	@$(PY) benchmarks/bench_streaming.py

models: setup
	@$(PY) scripts/build_models.py

clean:
	rm -rf .venv python/deepimagej/imagej/java/build .pytest_cache
