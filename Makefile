# Two commands on a fresh machine: `make demo` and `make test`. Each creates .venv and installs
# what it needs on first use (about 1.5 minutes), then reuses it.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
LAVA := lava-nc==0.10.0 lava-dl==0.6.0
# Other libraries' NIR exporters, for tests/test_foreign_nir.py: their declared dependencies would
# replace torch (torchvision, torchaudio) or nir (sinabs: nir<=1.0.4), or pull samna; what they
# import beyond torch and nir (loguru, pbr) is in requirements.lock. norse ships as an sdist only.
FOREIGN_NIR := spikingjelly==2.0.0 norse==1.1.0 sinabs==3.1.3

.PHONY: install demo test lint format lock clean bench-train

install: $(STAMP)

$(STAMP): pyproject.toml requirements.lock
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements.lock
	@# Lava is archived upstream and declares Python <3.11 and torch <2.4: install it without
	@# its declared dependencies; toolchain.lava_compat makes it work here (docs/lava.md).
	$(PY) -m pip install --quiet --disable-pip-version-check --no-deps --ignore-requires-python $(LAVA)
	$(PY) -m pip install --quiet --disable-pip-version-check --no-deps $(FOREIGN_NIR)
	$(PY) -m pip install --quiet --disable-pip-version-check --no-deps --no-build-isolation -e .
	@touch $(STAMP)

demo: install
	$(VENV)/bin/toolchain run models/digits-demo/recipe.toml --out runs/digits-demo

test: install
	$(PY) -m ruff check toolchain tests benchmarks
	$(PY) -m ruff format --check toolchain tests benchmarks
	$(VENV)/bin/lint-imports
	$(PY) -m pytest

lint: install
	$(PY) -m ruff check toolchain tests benchmarks
	$(VENV)/bin/lint-imports

format: install
	$(PY) -m ruff format toolchain tests benchmarks

# Re-pin requirements.lock from the current .venv (after changing pyproject.toml's ranges).
lock: install
	@{ sed -n '1,3p' requirements.lock; $(PY) -m pip freeze --exclude-editable | grep -viE '^(lava-|neuro-toolchain|spikingjelly==|norse==|sinabs==)' \
	  | sed 's/^torch==\(.*\)+cpu$$/torch==\1/'; } > requirements.lock.new && mv requirements.lock.new requirements.lock

# Training speed against snnTorch, SpikingJelly and lava-dl (own venv in benchmarks/.venv, ~2 min
# to build; minutes to run). BENCH_ARGS=--write-docs updates docs/benchmarks.md.
bench-train:
	bash benchmarks/setup_venv.sh
	benchmarks/.venv/bin/python benchmarks/train_speed.py --threads 1 $(BENCH_ARGS)
	benchmarks/.venv/bin/python benchmarks/train_speed.py --threads 2 $(BENCH_ARGS)

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache runs
