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

.PHONY: install demo test lint format lock clean bench bench-venv bench-train bench-conv bench-profile bench-fused bench-sim bench-events bench-heap

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

# Benchmarks that regenerate docs/benchmarks.md's tables, in their own venv (benchmarks/.venv, ~2 min
# to build): training speed against snnTorch, SpikingJelly, Norse and lava-dl on the MLP (bench-train)
# and two conv nets (bench-conv, with the allocator's defaults once, the 1-D convolution as matrix
# products against torch's, and the VGG's 2-D convolutions in channels-last order), the profile of
# a training step (bench-profile), the fused loop's variants (bench-fused); the reference simulator
# against Lava on one and two threads, and its chunk size (bench-sim), and the event-driven dense
# synapse against the matrix product (bench-events), and what keeping freed memory changes for users
# (bench-heap), all three in the project's .venv; `bench` runs them all (about 35 to 45 minutes). BENCH_ARGS=--write-docs updates the docs. Each sets OMP_NUM_THREADS to its thread count.
BENCH_PY := benchmarks/.venv/bin/python

bench-venv:
	bash benchmarks/setup_venv.sh

bench-train: bench-venv
	OMP_NUM_THREADS=1 $(BENCH_PY) benchmarks/train_speed.py --threads 1 --repeats 6 $(BENCH_ARGS)
	OMP_NUM_THREADS=2 $(BENCH_PY) benchmarks/train_speed.py --threads 2 --repeats 6 $(BENCH_ARGS)

bench-conv: bench-venv
	OMP_NUM_THREADS=1 $(BENCH_PY) benchmarks/train_speed_conv.py --threads 1 --repeats 8 $(BENCH_ARGS)
	OMP_NUM_THREADS=2 $(BENCH_PY) benchmarks/train_speed_conv.py --threads 2 --repeats 8 $(BENCH_ARGS)
	OMP_NUM_THREADS=1 $(BENCH_PY) benchmarks/train_speed_conv.py --threads 1 --nets gsc --allocator-defaults --no-memory $(BENCH_ARGS)
	OMP_NUM_THREADS=1 $(PY) benchmarks/unfolded_conv1d.py --threads 1 $(BENCH_ARGS)
	OMP_NUM_THREADS=2 $(PY) benchmarks/unfolded_conv1d.py --threads 2 $(BENCH_ARGS)
	OMP_NUM_THREADS=1 $(PY) benchmarks/conv2d_layout.py --threads 1 $(BENCH_ARGS)

bench-profile: bench-venv
	OMP_NUM_THREADS=1 $(BENCH_PY) benchmarks/profile_train.py $(BENCH_ARGS)
	OMP_NUM_THREADS=1 $(BENCH_PY) benchmarks/profile_train.py --net vgg $(BENCH_ARGS)
	OMP_NUM_THREADS=1 $(BENCH_PY) benchmarks/profile_train.py --net gsc $(BENCH_ARGS)

bench-fused: bench-venv
	OMP_NUM_THREADS=1 $(BENCH_PY) benchmarks/fused_variants.py --threads 1 --repeats 7 --compile $(BENCH_ARGS)
	OMP_NUM_THREADS=2 $(BENCH_PY) benchmarks/fused_variants.py --threads 2 --repeats 7 $(BENCH_ARGS)
	OMP_NUM_THREADS=2 $(BENCH_PY) benchmarks/fused_variants.py --threads 2 --repeats 9 --busy 2 $(BENCH_ARGS)

bench-sim: install
	OMP_NUM_THREADS=1 $(PY) benchmarks/sim_speed.py $(BENCH_ARGS)
	OMP_NUM_THREADS=2 $(PY) benchmarks/sim_speed.py --threads 2 $(BENCH_ARGS)
	OMP_NUM_THREADS=1 $(PY) benchmarks/sim_speed.py --chunks 3 $(BENCH_ARGS)
	OMP_NUM_THREADS=1 $(PY) benchmarks/sim_speed.py --neuron-loops 3 --samples 256 $(BENCH_ARGS)

bench-events: install
	OMP_NUM_THREADS=1 $(PY) benchmarks/event_synapses.py --threads 1 $(BENCH_ARGS)
	OMP_NUM_THREADS=2 $(PY) benchmarks/event_synapses.py --threads 2 $(BENCH_ARGS)

bench-heap: install
	OMP_NUM_THREADS=1 $(PY) benchmarks/heap.py $(BENCH_ARGS)

bench: bench-train bench-conv bench-profile bench-fused bench-sim bench-events bench-heap

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache runs
