# wardcall: `make run` starts a demo ward, `make test` runs the whole suite. Both set up first.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-$(shell cksum host/pyproject.toml | cut -d' ' -f1)
BEDS   ?= 6

.PHONY: setup run test bench deploy fleet-deploy monitor clean

setup: $(STAMP)

$(STAMP): host/pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check -e 'host[dev]'
	rm -f $(VENV)/.installed-*
	touch $@

run: setup
	$(BIN)/wardcall demo --beds $(BEDS)

test: setup
	$(BIN)/pytest

bench: setup
	$(BIN)/python bench/run_all.py

deploy: setup
	$(BIN)/wardcall deploy --config $(CONFIG) --port $(PORT) --device $(DEVICE)

fleet-deploy: setup
	$(BIN)/wardcall fleet deploy --config $(CONFIG) --plan $(PLAN)

monitor: setup
	$(BIN)/wardcall monitor --port $(PORT)

clean:
	rm -rf $(VENV) var .pytest_cache .hypothesis
