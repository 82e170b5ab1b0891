# edge-mnist: the two commands are `make demo` and `make test`.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip
KAFKA_VERSION := 4.1.1
KAFKA_LIBS ?= $(or $(XDG_CACHE_HOME),$(HOME)/.cache)/edge-mnist/kafka-$(KAFKA_VERSION)/libs
EXTRAS ?= dev,dashboards
DASHBOARD_PORT ?= 8866
PYTEST_ARGS ?=

.PHONY: help install kafka-jars test test-unit lint bench bench-hub demo dashboard image train clean

help:
	@echo "make demo   - train a model if none, start broker + hub + three edge cameras"
	@echo "make test   - install everything, fetch Apache Kafka jars with Maven, run the whole suite"
	@echo "make lint   - ruff and mypy"
	@echo "make bench  - benchmarks against the reference design"
	@echo "make bench-hub - the hub against a Quix Streams hub and a minimal loop (Apache Kafka, Tansu, PostgreSQL)"
	@echo "make image  - build the edge image edge-camera-classifier-app:v1 with buildah (no Docker needed)"
	@echo "make dashboard - Voila dashboard on http://127.0.0.1:$(DASHBOARD_PORT) (set EDGE_MNIST_API_URL, EDGE_MNIST_API_TOKEN)"

$(VENV)/.installed: pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	$(PIP) install -q -e '.[$(EXTRAS)]'
	touch $@

install: $(VENV)/.installed

$(KAFKA_LIBS)/.resolved: kafka/pom.xml
	@command -v mvn >/dev/null || { echo "Maven (mvn) is needed to fetch Apache Kafka's jars: apt-get install maven"; exit 1; }
	@command -v java >/dev/null || { echo "Java 17+ is needed to run Apache Kafka: apt-get install openjdk-17-jre-headless"; exit 1; }
	mkdir -p $(KAFKA_LIBS)
	mvn -q -B -f kafka/pom.xml dependency:copy-dependencies -DoutputDirectory=$(KAFKA_LIBS) -Dkafka.version=$(KAFKA_VERSION)
	touch $@

kafka-jars: $(KAFKA_LIBS)/.resolved

test: install kafka-jars
	EDGE_MNIST_KAFKA_LIBS=$(KAFKA_LIBS) $(PY) -m pytest tests $(PYTEST_ARGS)

test-unit: install
	$(PY) -m pytest tests/unit $(PYTEST_ARGS)

lint: install
	$(VENV)/bin/ruff check edgemnist edge_app metro_app tests bench notebooks
	$(VENV)/bin/ruff format --check edgemnist edge_app metro_app tests bench notebooks
	$(VENV)/bin/mypy edgemnist

bench: install
	$(PY) bench/edge.py

bench-hub: install kafka-jars
	EDGE_MNIST_KAFKA_LIBS=$(KAFKA_LIBS) $(PY) bench/hub.py

dashboard: install
	$(VENV)/bin/voila notebooks/render-metro-views.ipynb --no-browser --Voila.ip=127.0.0.1 --port=$(DASHBOARD_PORT)

image:
	docker/build-image.sh

train: install
	$(VENV)/bin/edge-mnist train --out models

demo: install
	@ls models/*.skops >/dev/null 2>&1 || $(VENV)/bin/edge-mnist train --out models
	$(VENV)/bin/edge-mnist demo

clean:
	rm -rf $(VENV) build dist *.egg-info .pytest_cache
