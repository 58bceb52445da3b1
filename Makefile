# deepimagej-py: two commands for a fresh machine, `make demo` and `make test`.
# Both install what they need (Debian packages, .venv, pip extras, the Java shim) first; idempotent.
PY := .venv/bin/python
export PYTHONUNBUFFERED := 1

.PHONY: setup demo test lint lock bench models stress soak clean

setup:
	@bash scripts/setup.sh

demo: setup
	@$(PY) -m deepimagej demo

test: setup
	@$(PY) -m pytest -q tests

# ruff (rules in pyproject.toml), the formatter's check, and mypy on the package
lint: setup
	@.venv/bin/ruff check python tests benchmarks scripts
	@.venv/bin/ruff format --check python tests benchmarks scripts
	@.venv/bin/mypy

bench: setup
	@$(PY) benchmarks/bench_tiling.py
	@if [ -f benchmarks/bench_imagej.py ]; then $(PY) benchmarks/bench_imagej.py; fi
	@$(PY) benchmarks/bench_plugin.py
	@$(PY) benchmarks/bench_streaming.py

# the exact versions of the current .venv, for every later install (scripts/setup.sh)
lock:
	@{ head -2 requirements.lock; .venv/bin/pip freeze --exclude-editable | grep -v '^-e\|^#\|^deepimagej'; } > requirements.lock.new
	@mv requirements.lock.new requirements.lock

models: setup
	@$(PY) scripts/build_models.py

# a macro syntax error 200 times under CPU load, in one JVM and in fresh processes: no stall, nothing left behind
stress: setup
	@$(PY) benchmarks/stress_macro_errors.py

# 1000 macro-driven DeepImageJ Run calls in one JVM: memory, threads, images and windows do not grow
soak: setup
	@nice -n 19 $(PY) benchmarks/soak_imagej.py

clean:
	rm -rf .venv python/deepimagej/imagej/java/build python/deepimagej/imagej/plugin/java/build .pytest_cache
