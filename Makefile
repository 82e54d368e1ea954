# The two commands: `make demo` (the gateway on a simulated site) and `make test` (the whole suite).
# Both set everything up first (tools/bootstrap): Debian packages, .venv, Python packages.

VENV := .venv
BIN := $(VENV)/bin

.PHONY: setup demo test bench clean

setup:
	@tools/bootstrap

demo: setup
	$(BIN)/evedge demo

test: setup
	$(BIN)/python -m pytest -q

bench: setup
	$(BIN)/python bench/ocpp_throughput.py
	$(BIN)/python bench/modbus_poll.py
	$(BIN)/python bench/loadcap.py
	$(BIN)/python bench/console.py
	$(BIN)/python bench/alarms.py

clean:
	rm -rf $(VENV) .pytest_cache .hypothesis build *.egg-info
