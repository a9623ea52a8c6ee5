# t10k-lab: `make demo` runs the main job, `make test` runs the whole test suite.
# Each installs the system packages it needs (scripts/bootstrap: as root it installs them, otherwise
# it prints the one command to run), creates its own virtual environment (.venv) and installs into it.

PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: demo test venv lint clean

$(STAMP): pyproject.toml
	@scripts/bootstrap demo
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $(STAMP)

venv: $(STAMP)

demo: $(STAMP)
	$(BIN)/t10k lab demo

test: $(STAMP)
	@scripts/bootstrap test
	$(BIN)/t10k lab guest --build --json >/dev/null   # the QEMU guest's image (cached; a kernel from Debian)
	$(BIN)/python -m pytest

lint: $(STAMP)
	$(BIN)/lint-imports

clean:
	rm -rf $(VENV) .pytest_cache .hypothesis *.egg-info
