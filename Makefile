# edgemed — `make build` and `make test` work on a fresh clone: they create .venv themselves.
PYTHON_SYSTEM ?= python3
VENV := .venv
PYTHON := $(VENV)/bin/python
EDGEMED := $(VENV)/bin/edgemed
STAMP := $(VENV)/.installed
# Extras: the CPU ONNX Runtime (never together with onnxruntime-gpu), build tools, collector, fleet (Ray,
# PostgreSQL client), test tools.
EXTRAS ?= cpu,build,dashboard,fleet,dev
export TF_CPP_MIN_LOG_LEVEL := 2
export PYTHONHASHSEED := 0
# `make build` signs every bundle with a DEVELOPMENT key, made on first use in a git-ignored folder. Its bundles
# say so (manifest release.key_purpose "development") and devices log it on every load: never for patients.
# Run them with --trust-store $(DEV_KEYS)/trust-store. Release bundles are signed with a production key that
# lives off developer machines: edgemed build --sign-key PATH.
DEV_KEYS := .edgemed-keys/dev
DEV_KEY := $(DEV_KEYS)/signing-key.pem
# What `make build` ships: the real-data PVC detector and the breast-cancer classifier (edgemed scenarios lists
# them), the scenarios that pass the evidence rule (pipeline/clinical/evidence.py: every class 30 real test
# examples from 2 recordings or subjects not in training). Built only when named, with --allow-unvalidated: the
# synthetic 4-class ecg-arrhythmia, eeg-artifact (movement 8 test windows of one recording, electromagnetic 19 of
# its training recording), ppg-quality (6 artefact windows of one episode) and vitals-anomaly (one labelled
# anomaly) — their reports say what was measured and why that is not enough to ship.
BUILD_SCENARIOS ?= ecg-pvc breast-cancer
ECG_BUNDLE := bundles/ecg-pvc
# make dashboard(-pg): the second ECG build (seed 1), published beside the first and rolled out to some devices
ROLLOUT_BUNDLE := ecg-pvc-seed-1


.PHONY: setup browser build dev-key test lint export quantize evaluate bench real-ecg noise-stress validate-ecg dashboard scenarios gpu-check cpu-check clean distclean

setup: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(PYTHON) || $(PYTHON_SYSTEM) -m venv $(VENV)
	$(PYTHON) -m pip install --quiet --upgrade pip
	$(PYTHON) -m pip install --quiet -e ".[$(EXTRAS)]"
	# Real ECG/PPG/EEG recordings for the runtime's real-signal checks; its pinned deps are too old, and
	# we only read its HDF5 files (never import it).
	$(PYTHON) -m pip install --quiet --no-deps biosignalsnotebooks==0.6.14
	# Real PPG (heartpy's CSVs, GPL-3: read, never redistributed) and the UCR InternalBleeding vital-sign series
	# (aeon, BSD-3): data only, read as files, never imported.
	$(PYTHON) -m pip install --quiet --no-deps heartpy==1.2.7 aeon==1.6.0
	touch $(STAMP)

$(DEV_KEY): | $(STAMP)
	$(EDGEMED) keys generate --purpose development --out $(DEV_KEYS)

dev-key: setup $(DEV_KEY)

build: setup $(DEV_KEY)
	@echo "!!! make build signs with the DEVELOPMENT key $(DEV_KEY): bundles for development only, NOT FOR CLINICAL USE" >&2
	$(EDGEMED) build $(BUILD_SCENARIOS) --progress --sign-key $(DEV_KEY)
	@echo "!!! development-signed bundles: run them with --trust-store $(DEV_KEYS)/trust-store" >&2

export: setup
	$(EDGEMED) export $(BUILD_SCENARIOS) --progress

quantize: setup
	$(EDGEMED) quantize $(BUILD_SCENARIOS) --progress

evaluate: setup
	$(EDGEMED) evaluate $(BUILD_SCENARIOS) --progress

bench: setup
	$(EDGEMED) bench --ablation --progress

real-ecg: build
	$(EDGEMED) real-ecg $(ECG_BUNDLE)

# Real MIT-BIH ECG with real PLUX noise added (the NST's method), and real signals that are not ECG: the stream's
# readability check off and on (benchmarks/results/noise_stress.{json,png}; about a minute)
noise-stress: build
	$(EDGEMED) noise-stress $(ECG_BUNDLE)

# The shipped PVC design measured leave-one-record-out over the 10 vendored MIT-BIH records, once per training seed
# (LORO_SEEDS; 10 folds × 3 inner models each, about 6 minutes a seed on 2 cores): one seed's figures are one draw
# (record 200's V Se spans 40-80 % over eight seeds on one machine). benchmarks/results/ecg_pvc_loro.{json,md},
# shown by the dashboard.
LORO_SEEDS ?= 0 1 2
validate-ecg: setup
	$(PYTHON) -m pipeline.benchmark.ecg_pvc_loro --variants gated-template+rr --seeds $(LORO_SEEDS) --output benchmarks/results

# Wait for the collector started just before (pid in $$collector) to answer on 8787; stop when it has exited (its
# error is above: a taken port, a store it cannot open), so the fleet never goes to another process on that port.
WAIT_FOR_COLLECTOR = for attempt in $$(seq 50); do \
		kill -0 $$collector 2>/dev/null || { echo "the collector exited before answering (its error is above)" >&2; exit 1; }; \
		$(PYTHON) -c 'import urllib.request; urllib.request.urlopen("http://127.0.0.1:8787/v1/health", timeout=2)' 2>/dev/null && break; \
		sleep 0.2; done

# Collector on 127.0.0.1:8787, a simulated fleet of 8 devices (30 simulated minutes, scripted problems, and a
# rollout of a second ECG bundle trained with another seed to device 7), then the dashboard on 127.0.0.1.
dashboard: build
	$(EDGEMED) build ecg-pvc --seed 1 --name $(ROLLOUT_BUNDLE) --sign-key $(DEV_KEY)
	$(EDGEMED) collector --host 127.0.0.1 --port 8787 --database telemetry.sqlite3 & collector=$$!; \
	trap 'kill $$collector 2>/dev/null' EXIT INT TERM; \
	$(WAIT_FOR_COLLECTOR); \
	$(EDGEMED) simulate --devices 8 --minutes 30 --collector http://127.0.0.1:8787/v1/telemetry --bundle $(ECG_BUNDLE) \
		--rollout-bundle bundles/$(ROLLOUT_BUNDLE) --trust-store $(DEV_KEYS)/trust-store --outbox-dir .fleet-outboxes --summary fleet-summary.json && \
	$(EDGEMED) dashboard --database telemetry.sqlite3 --latency-objective-us 300

# The project's own PostgreSQL (Debian's binaries, installed first when missing and root): `initdb` into
# .postgres/ on first use, served on 127.0.0.1:$(POSTGRES_PORT) only; prints the database URL (the password stays
# in .postgres/pgpass). Stop it with `$(POSTGRES) stop`.
.PHONY: postgres dashboard-pg
POSTGRES_FOLDER := .postgres
POSTGRES_PORT ?= 5433
POSTGRES := $(EDGEMED) postgres
postgres: setup
	$(POSTGRES) start --folder $(POSTGRES_FOLDER) --port $(POSTGRES_PORT)

# `make dashboard` with the collector and the dashboard on that PostgreSQL server (stopped again on exit; the
# data stays in .postgres/). First a fleet of FLEET_DEVICES simulated devices (aggregates telemetry, the real bundle
# on every device's own stream, FLEET_PROCESSES worker processes, an accelerated clock: FLEET_MINUTES of signal as
# fast as the machine goes) sends to the collector (two worker processes). The outboxes stay in .fleet-outboxes:
# a device's sequences continue from one run to the next, as the protocol needs.
FLEET_DEVICES ?= 1000
FLEET_MINUTES ?= 10
FLEET_PROCESSES ?= 4
dashboard-pg: build postgres
	$(EDGEMED) build ecg-pvc --seed 1 --name $(ROLLOUT_BUNDLE) --sign-key $(DEV_KEY)
	database_url=$$($(POSTGRES) url --folder $(POSTGRES_FOLDER) --port $(POSTGRES_PORT)); \
	$(EDGEMED) collector --host 127.0.0.1 --port 8787 --database-url "$$database_url" --workers 2 & collector=$$!; \
	trap 'kill $$collector 2>/dev/null; $(POSTGRES) stop --folder $(POSTGRES_FOLDER)' EXIT INT TERM; \
	$(WAIT_FOR_COLLECTOR); \
	$(EDGEMED) simulate --devices $(FLEET_DEVICES) --minutes $(FLEET_MINUTES) --processes $(FLEET_PROCESSES) \
		--collector http://127.0.0.1:8787/v1/telemetry --bundle $(ECG_BUNDLE) --rollout-bundle bundles/$(ROLLOUT_BUNDLE) \
		--trust-store $(DEV_KEYS)/trust-store \
		--outbox-dir .fleet-outboxes --summary fleet-summary.json && \
	$(EDGEMED) dashboard --database-url "$$database_url" --latency-objective-us 300

scenarios: setup
	$(EDGEMED) scenarios

# Every bundle on CUDA (and TensorRT when present) through I/O binding, checked against its CPU answers on synthetic
# seeded N(0,1) inputs (gpu_check.json says so), then the bench on the GPU. A separate virtualenv holds onnxruntime-gpu (never beside onnxruntime). Without an NVIDIA GPU it
# says so and exits 0 having run nothing. Results: benchmarks/results/gpu/.
GPU_VENV := .venv-gpu
gpu-check:
	@if ! command -v nvidia-smi >/dev/null 2>&1 || ! nvidia-smi -L 2>/dev/null | grep -q '^GPU '; then \
		echo "gpu-check: no NVIDIA GPU on this machine (nvidia-smi missing or lists none): nothing was run or measured"; \
		exit 0; fi; \
	set -e; $(MAKE) build; \
	test -x $(GPU_VENV)/bin/python || $(PYTHON_SYSTEM) -m venv $(GPU_VENV); \
	$(GPU_VENV)/bin/python -m pip install --quiet --upgrade pip; \
	$(GPU_VENV)/bin/python -m pip install --quiet -e ".[gpu,build,dev]"; \
	if $(GPU_VENV)/bin/python -m pip show onnxruntime >/dev/null 2>&1; then \
		echo "gpu-check: $(GPU_VENV) has the CPU onnxruntime beside onnxruntime-gpu: remove $(GPU_VENV) and rerun"; exit 1; fi; \
	nvidia-smi -L; \
	$(GPU_VENV)/bin/python -m pipeline.benchmark.gpu_check --bundles bundles --trust-store $(DEV_KEYS)/trust-store \
		--output benchmarks/results/gpu; \
	$(GPU_VENV)/bin/edgemed bench --providers cuda,tensorrt,cpu --output benchmarks/results/gpu --no-plots

# The device runtime on CPUs this machine is not (SSE4.2-only and AVX2 x86, Arm Cortex-A53/A72/A76), each emulated
# by QEMU's user mode (installed with apt-get when missing), every bundle on its scenario's real recordings and rows,
# every event compared with this machine's. Results: benchmarks/results/cpu_check.{json,md}. The emulated Python,
# device packages and a copy of runtime/ are kept in .cpu-check/ (git-ignored).
cpu-check: build
	$(VENV)/bin/edgemed cpu-check --bundles bundles --trust-store $(DEV_KEYS)/trust-store --output benchmarks/results

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

# distclean also drops the development key: bundles it signed stop verifying against a new one.
distclean: clean
	rm -rf $(VENV) $(GPU_VENV) *.egg-info .edgemed-keys
