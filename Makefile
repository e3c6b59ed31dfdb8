# edgemed — `make build` and `make test` work on a fresh clone: they create .venv themselves.
PYTHON_SYSTEM ?= python3
VENV := .venv
PYTHON := $(VENV)/bin/python
EDGEMED := $(VENV)/bin/edgemed
STAMP := $(VENV)/.installed
# Extras: the CPU ONNX Runtime (never together with onnxruntime-gpu), build tools, collector, test tools.
EXTRAS ?= cpu,build,dashboard,dev
export TF_CPP_MIN_LOG_LEVEL := 2
export PYTHONHASHSEED := 0


.PHONY: setup browser build test lint export quantize evaluate bench real-ecg dashboard scenarios clean distclean

setup: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(PYTHON) || $(PYTHON_SYSTEM) -m venv $(VENV)
	$(PYTHON) -m pip install --quiet --upgrade pip
	$(PYTHON) -m pip install --quiet -e ".[$(EXTRAS)]"
	# Real ECG/PPG/EEG recordings for the runtime's real-signal checks; its pinned deps are too old, and
	# we only read its HDF5 files (never import it).
	$(PYTHON) -m pip install --quiet --no-deps biosignalsnotebooks==0.6.14
	touch $(STAMP)

build: setup
	$(EDGEMED) build --progress

export: setup
	$(EDGEMED) export --progress

quantize: setup
	$(EDGEMED) quantize --progress

evaluate: setup
	$(EDGEMED) evaluate --progress

bench: setup
	$(EDGEMED) bench --ablation --progress

real-ecg: build
	$(EDGEMED) real-ecg bundles/ecg-arrhythmia

# Collector on 127.0.0.1:8787, a simulated fleet of 8 devices (30 simulated minutes, scripted problems, and a
# rollout of a second ECG bundle trained with another seed to devices 6-7), then the dashboard on 127.0.0.1.
dashboard: build
	$(EDGEMED) build ecg-arrhythmia --seed 1 --bundles .rollout-bundles
	$(EDGEMED) collector --host 127.0.0.1 --port 8787 --database telemetry.sqlite3 & collector=$$!; \
	trap 'kill $$collector' EXIT INT TERM; \
	for attempt in $$(seq 50); do $(PYTHON) -c 'import urllib.request; urllib.request.urlopen("http://127.0.0.1:8787/v1/health")' 2>/dev/null && break; sleep 0.2; done; \
	$(EDGEMED) simulate --devices 8 --minutes 30 --collector http://127.0.0.1:8787/v1/telemetry \
		--rollout-bundle .rollout-bundles/ecg-arrhythmia --outbox-dir .fleet-outboxes --summary fleet-summary.json && \
	$(EDGEMED) dashboard --database telemetry.sqlite3 --latency-objective-us 300

scenarios: setup
	$(EDGEMED) scenarios

# The dashboard's real-browser test drives Debian's chromium (never a downloaded browser build).
browser:
	@test -x /usr/bin/chromium || { \
		if [ "$$(id -u)" = 0 ]; then \
			apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; \
		else echo "install Debian's chromium (sudo apt-get install chromium) for the browser test"; fi; }

test: setup browser
	$(PYTHON) -m pytest

lint: setup
	$(VENV)/bin/ruff check .

clean:
	rm -rf artifacts bundles .rollout-bundles .fleet-outboxes fleet-summary.json telemetry.sqlite3* .pytest_cache .ruff_cache

distclean: clean
	rm -rf $(VENV) *.egg-info
