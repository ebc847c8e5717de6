# neurosim: one virtual environment (.venv) built from pyproject.toml, then the jobs.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-dev
TORCH_STAMP := $(VENV)/.installed-torch

.PHONY: demo test bench results-core results-devices results-energy clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[dev]"
	touch $(STAMP)

# torch is optional; its extra pins torch==2.13.0 so pip takes the CPU wheel.
$(TORCH_STAMP): $(STAMP)
	$(BIN)/python -m pip install --quiet -e ".[dev,torch]"
	touch $(TORCH_STAMP)

demo: $(STAMP)
	$(BIN)/neurosim run experiments/quickstart.yaml --out runs/quickstart --overwrite

test: $(STAMP)
	$(BIN)/python -m pytest -q

bench: $(TORCH_STAMP)
	$(BIN)/python benchmarks/bench_core.py
	$(BIN)/python benchmarks/bench_devices.py
	$(BIN)/python benchmarks/bench_ledger.py

results-core: $(STAMP)
	$(BIN)/python docs/scripts/results_core.py

results-devices: $(STAMP)
	$(BIN)/python docs/scripts/results_devices.py

results-energy: $(STAMP)
	$(BIN)/python docs/scripts/results_energy.py

clean:
	rm -rf $(VENV) runs .pytest_cache .hypothesis
