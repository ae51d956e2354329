# Two commands matter on a fresh machine: `make demo` and `make test`.
PY      ?= python3
VENV    ?= .venv
BIN     := $(VENV)/bin
STAMP   := $(VENV)/.installed
PYTEST_ARGS ?=

.PHONY: venv check test test-fast demo bench bench-desk bench-fleet clean broker-tools not-a-station deb deb-tools deb-depends screenshots

$(STAMP): setup.py
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[desk,test]'
	touch $@

venv: $(STAMP)

# The packages below are for test machines only, never a station: on a Raspberry Pi this
# stops (the Pi gets the Debian package and nothing else). ALLOW_TEST_PACKAGES=1 overrides it
# on a Pi that is a test bench.
PI_MODEL ?= /proc/device-tree/model
not-a-station:
	@if grep -qa 'Raspberry Pi' $(PI_MODEL) 2>/dev/null && [ "$(ALLOW_TEST_PACKAGES)" != 1 ]; then \
	  echo "this is a Raspberry Pi: 'make test' would install test-only packages (brokers, systemd, openssl …) here."; \
	  echo "A station gets only the Debian package. On a Pi kept as a test bench: make test ALLOW_TEST_PACKAGES=1"; \
	  exit 1; fi

# Tests need a real mosquitto binary (the fixtures start their own on free ports).
broker-tools: not-a-station
	@command -v mosquitto >/dev/null 2>&1 || test -x /usr/sbin/mosquitto || { \
	  echo "mosquitto missing: installing it"; \
	  apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q mosquitto mosquitto-clients; }
	@command -v mosquitto_pub >/dev/null 2>&1 || { \
	  echo "mosquitto_pub missing: installing mosquitto-clients (the cluster tests probe with it)"; \
	  apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q mosquitto-clients; }
	@# The packaged service would grab port 1883; tests never use it.
	@test -x /usr/lib/rabbitmq/bin/rabbitmq-server || command -v rabbitmq-server >/dev/null 2>&1 || { \
	  echo "rabbitmq-server missing: installing it (tests/brokers start a node of their own)"; \
	  apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q rabbitmq-server; }
	@command -v systemd-analyze >/dev/null 2>&1 || { \
	  echo "systemd-analyze missing: installing systemd (tests verify the unit file)"; \
	  apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q systemd; }
	@# The web desk's browser tests (tests/desk) drive Debian's chromium through chromedriver.
	@{ test -x /usr/bin/chromium && test -x /usr/bin/chromedriver; } || { \
	  echo "chromium/chromedriver missing: installing them (tests/desk drive a real browser)"; \
	  apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium chromium-driver; }
	@command -v openssl >/dev/null 2>&1 || { \
	  echo "openssl missing: installing it (tests/security make a test CA)"; \
	  apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q openssl; }

# ruff (ruff.toml) and mypy --strict on the station package (setup.cfg); run first by `make test`.
check: venv
	$(BIN)/ruff check .
	$(BIN)/mypy

# Building and testing the Debian package (this machine only, never the Pi): dpkg-deb, lintian,
# iproute2 + util-linux (unshare, nsenter) for the throwaway root, python3-venv.
deb-tools: venv
	@missing=""; \
	command -v dpkg-deb >/dev/null 2>&1 || missing="$$missing dpkg-dev"; \
	command -v lintian >/dev/null 2>&1 || missing="$$missing lintian"; \
	command -v ip >/dev/null 2>&1 || missing="$$missing iproute2"; \
	command -v unshare >/dev/null 2>&1 || missing="$$missing util-linux"; \
	dpkg -s python3-venv >/dev/null 2>&1 || missing="$$missing python3-venv"; \
	test -z "$$missing" || { echo "package tools missing: installing$$missing"; \
	  apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q $$missing; }

# dist/polres-station_<version>_all.deb, version from git describe (packaging/build_deb.py).
deb: deb-tools
	$(BIN)/python packaging/build_deb.py

# The package's Depends on this machine (tests install it into a root without network).
deb-depends: deb
	@deb=$$(ls -t dist/polres-station_*_all.deb | head -1); \
	missing=""; for d in $$(dpkg-deb -f "$$deb" Depends | sed 's/([^)]*)//g; s/,/ /g'); do \
	  dpkg -s $$d >/dev/null 2>&1 || missing="$$missing $$d"; done; \
	test -z "$$missing" || { echo "$$deb depends on$$missing: installing"; \
	  apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q $$missing; }

test: not-a-station check broker-tools deb-tools deb-depends
	$(BIN)/python -m pytest -q $(PYTEST_ARGS)

# The tests that start no broker (marker `broker`, pytest.ini); a broker start fails loudly here.
test-fast: check
	POLRES_TESTS_NO_BROKER=1 $(BIN)/python -m pytest -q -m "not broker" $(PYTEST_ARGS)

demo: venv
	$(BIN)/polres-station demo

# Performance figures (~11 min; its own mosquitto on a free port): bench/results.json, the table,
# docs/PERFORMANCE.md. BENCH_ARGS=--quick: ~45 s, into bench/.work/results-quick.json.
bench: venv broker-tools
	$(BIN)/python bench/run.py $(BENCH_ARGS)

# The web desk's screenshots in docs/ (desk-wall.png, desk-detail.png): a real mosquitto, the
# real station killed with an alarm, simulated stations around it, Debian's chromium (~30 s).
screenshots: venv broker-tools
	$(BIN)/python tests/desk/screenshots.py docs

# The web desk at 2,000 stations (bench/results-desk.json; ~1 min): page usable, update p99.
bench-desk: venv broker-tools
	$(BIN)/python bench/desk.py

# Not in CI (~8 min, ~7 GiB): 200 real station processes and a monitoring desk against the
# three-node RabbitMQ cluster of config/rabbitmq/local-cluster.sh, 20 complaints/s while a node
# is SIGKILLed and brought back: bench/results-cluster.json, the fleet sections of
# docs/PERFORMANCE.md and docs/RELIABILITY.md. FLEET_ARGS="--stations 20 --before 20" to try.
bench-fleet: venv broker-tools
	$(BIN)/python bench/fleet.py $(FLEET_ARGS)

clean:
	rm -rf $(VENV) build dist *.egg-info .pytest_cache station/_version.py
