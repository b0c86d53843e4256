# wardcall: `make run` starts a demo ward, `make test` runs the whole suite. Both set up first.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-$(shell cksum host/pyproject.toml | cut -d' ' -f1)
BEDS   ?= 6
HOSPITAL_BEDS ?= 3

.PHONY: setup browser nats-server run run-hospital test bench deploy fleet-deploy monitor clean

setup: $(STAMP)

# The console tests drive Debian's Chromium (Playwright cannot download browsers here).
browser:
	@command -v chromium >/dev/null 2>&1 || { \
	  echo "installing Debian's chromium for the browser tests"; \
	  if [ "$$(id -u)" = 0 ]; then SUDO=; else SUDO=sudo; fi; \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq chromium fonts-dejavu-core >/dev/null; }

# The federation tests and the hospital demo run Debian's nats-server (docs/FEDERATION.md).
nats-server:
	@command -v nats-server >/dev/null 2>&1 || [ -x /usr/sbin/nats-server ] || { \
	  echo "installing Debian's nats-server for the hospital (federation)"; \
	  if [ "$$(id -u)" = 0 ]; then SUDO=; else SUDO=sudo; fi; \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq nats-server >/dev/null; }

$(STAMP): host/pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check -e 'host[dev]'
	rm -f $(VENV)/.installed-*
	touch $@

run: setup
	$(BIN)/wardcall demo --beds $(BEDS)

# two wards federated over NATS and the hospital console (a single ward needs no broker: `make run`)
run-hospital: setup nats-server
	$(BIN)/wardcall demo --hospital --beds $(HOSPITAL_BEDS)

test: setup browser nats-server
	$(BIN)/pytest -n 2

bench: setup nats-server
	$(BIN)/python bench/run_all.py

deploy: setup
	$(BIN)/wardcall deploy --config $(CONFIG) --port $(PORT) --device $(DEVICE)

fleet-deploy: setup
	$(BIN)/wardcall fleet deploy --config $(CONFIG) --plan $(PLAN)

monitor: setup
	$(BIN)/wardcall monitor --port $(PORT)

clean:
	rm -rf $(VENV) var .pytest_cache .hypothesis
