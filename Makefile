# neurosim: one virtual environment (.venv) built from pyproject.toml, then the jobs.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-dev
TORCH_STAMP := $(VENV)/.installed-torch
# No pip cache: a wheel kept twice (cache and venv) is disk a small CI machine may not have.
PIP    := $(BIN)/python -m pip --no-cache-dir

.PHONY: demo test bench results-core results-devices results-periphery results-energy results-noise results-rules results-noise-length paper-reproduction sweep-preconditioning clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet --upgrade pip
	$(PIP) install --quiet -e ".[dev]"
	touch $(STAMP)

# torch is optional; its extra pins torch==2.13.0 so pip takes the CPU wheel.
$(TORCH_STAMP): $(STAMP)
	$(PIP) install --quiet -e ".[dev,torch]"
	touch $(TORCH_STAMP)

demo: $(STAMP)
	$(BIN)/neurosim run experiments/quickstart.yaml --out runs/quickstart --overwrite

# The suite on TEST_WORKERS processes (pytest-xdist; each holds its own compiled kernels and
# datasets, about 3 GB), the slowest tests listed at the end.
TEST_WORKERS ?= 2
test: $(TORCH_STAMP)
	$(BIN)/python -m pytest -q -n $(TEST_WORKERS) --durations=25

bench: $(TORCH_STAMP)
	$(BIN)/python benchmarks/bench_core.py
	$(BIN)/python benchmarks/bench_devices.py
	$(BIN)/python benchmarks/bench_ledger.py
	$(BIN)/python benchmarks/bench_population.py
	$(BIN)/neurosim bench

results-core: $(STAMP)
	$(BIN)/python docs/scripts/results_core.py

results-devices: $(STAMP)
	$(BIN)/python docs/scripts/results_devices.py

results-periphery: $(STAMP)
	$(BIN)/python docs/scripts/results_periphery.py

results-energy: $(STAMP)
	$(BIN)/python docs/scripts/results_energy.py

results-noise: $(STAMP)
	$(BIN)/python docs/scripts/results_noise.py

results-rules: $(STAMP)
	$(BIN)/python docs/scripts/results_rules.py

results-noise-length: $(STAMP)
	$(BIN)/python docs/scripts/results_noise_length.py

paper-reproduction: $(STAMP)
	$(BIN)/python docs/scripts/paper_reproduction.py

# The shipped sweep on a local Dask cluster (every core), its report copied into docs/.
SWEEP_OUT := runs/sweep_preconditioning
SWEEP_DOC := docs/sweep-preconditioning
sweep-preconditioning: $(STAMP)
	$(BIN)/neurosim sweep experiments/sweep_preconditioning.yaml --out $(SWEEP_OUT) --quiet
	rm -rf $(SWEEP_DOC) && mkdir -p $(SWEEP_DOC)
	cd $(SWEEP_OUT) && cp --parents report.md sweep.json sweep_*.csv figures/*.png \
		*/report.md */comparison*.csv */comparison.json */figures/*.png $(CURDIR)/$(SWEEP_DOC)/

clean:
	rm -rf $(VENV) runs .pytest_cache .hypothesis
