# lrstudy: `make study` runs the default study, `make test` the test suite. Both set up .venv first.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
DEBIAN_DATA := /usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz
ARGS   ?=
# The versions the README's results came from (constraints.txt). To opt out, `make clean venv CONSTRAINTS=`
# builds the venv from pyproject.toml's open ranges instead (the newest releases).
CONSTRAINTS ?= constraints.txt

.PHONY: venv data study smoke test test-fast bench clean

venv: $(VENV)/.installed data

$(VENV)/.installed: pyproject.toml $(CONSTRAINTS)
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check $(if $(CONSTRAINTS),-c $(CONSTRAINTS)) -e '.[dev]'
	touch $@

# Fashion-MNIST from Debian's package when we can install it; otherwise study.run falls back
# to --data-dir, $$FASHION_MNIST_DIR or torchvision's download.
data:
	@if [ -z "$$FASHION_MNIST_DIR" ] && [ ! -e $(DEBIAN_DATA) ] && [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
		echo "Installing Debian's dataset-fashion-mnist"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq dataset-fashion-mnist >/dev/null; \
	fi

study: venv
	$(BIN)/python -m study.run $(ARGS)

smoke: venv
	$(BIN)/python -m study.run --smoke --overwrite --name smoke $(ARGS)

test: venv
	$(BIN)/python -m pytest $(ARGS)

test-fast: venv
	$(BIN)/python -m pytest -m "not slow and not cluster" $(ARGS)

bench: venv
	$(BIN)/python -m benchmarks.bench $(ARGS)

clean:
	rm -rf $(VENV) .pytest_cache
