# Two commands matter: `make reproduce` (main job) and `make test`. See README.md.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
PROFILE ?= default
SET     ?=
SETARGS := $(if $(strip $(SET)),--set $(SET))
NBVAL_FLAGS := -o addopts=-ra --nbval-lax --nbval-current-env --nbval-sanitize-with tests/nbval_sanitize.cfg -p no:python

.PHONY: setup data check reproduce notebooks test test-unit test-notebooks golden publish-figures results bench clean \
        check-paper-config

setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e ".[notebooks,test]"
	$(PY) -m ipykernel install --sys-prefix --name python3 --display-name "Python 3 (medbind)" >/dev/null
	touch $@

data: setup                 ## write the synthetic cohort of $(PROFILE) (refused, exit 2, for real-data profiles)
	$(PY) -m medbind_lib.synth --profile $(PROFILE) $(SETARGS)

check: setup                ## pre-flight: every missing dataset file of $(PROFILE), at once
	$(PY) -m medbind_lib.check --profile $(PROFILE) $(SETARGS)

reproduce: setup            ## the main job: cohort (synthetic profiles) + every notebook of $(PROFILE) into runs/$(PROFILE)/
	$(PY) -m medbind_lib.synth --profile $(PROFILE) --if-synthetic $(SETARGS)
	$(PY) -m medbind_lib.run --profile $(PROFILE) $(SETARGS)

notebooks: setup            ## regenerate notebooks/*.ipynb from their jupytext .py sources (the source of truth)
	$(VENV)/bin/jupytext --to ipynb --set-kernel python3 notebooks/[0-9][0-9]_*.py

test: setup test-unit test-notebooks

test-unit: setup
	$(PY) -m pytest -q tests

test-notebooks: setup       ## nbval on the committed smoke-profile golden copies
	$(PY) -m medbind_lib.run --profile smoke --producers   # pipeline.producers() (00,01,02,08,09): what 03-07 and 10-12 read
	$(PY) -m pytest -q $(NBVAL_FLAGS) tests/golden

golden: setup               ## re-execute the smoke profile and refresh tests/golden/
	$(PY) -m medbind_lib.synth --profile smoke
	$(PY) -m medbind_lib.run --profile smoke
	$(PY) -m medbind_lib.golden

publish-figures:            ## copy runs/$(PROFILE)/figures/ over the committed figures/$(PROFILE)/ (after a full run)
	test -d runs/$(PROFILE)/figures || { echo "runs/$(PROFILE)/figures missing: make reproduce PROFILE=$(PROFILE)"; exit 1; }
	mkdir -p figures/$(PROFILE)
	cp runs/$(PROFILE)/figures/*.png runs/$(PROFILE)/figures/*.pdf figures/$(PROFILE)/
	$(PY) -c "import json; e = json.load(open('runs/$(PROFILE)/env.json')); print(f'Figures of the $(PROFILE) run of commit {e[\"git_commit\"]}, created {e[\"created\"]} (runs/$(PROFILE)/env.json).')" > figures/$(PROFILE)/PROVENANCE.md

results:                    ## docs/RESULTS.md from the last complete run of $(PROFILE): each paper claim beside our number
	$(PY) -m medbind_lib.reports.results_page --profile $(PROFILE) --out docs/RESULTS.md

# check-paper-config: the `gpu` profile's architecture and settings (Swin-T / ViT-B/16 at 224 px, the full ECG
# transformer, 256-piece text, channels_last, DataLoader workers, fine-tuned task encoders, Table 4 with the full
# MiniLM, every variant, task and row) end to end on the CPU, before any GPU runs them. ONLY sizes change (below),
# into its own folders (never runs/gpu or data/gpu); then every pre-training's training steps once more with bf16
# autocast forced (amp: bf16; benchmarks/check_bf16.py). Measured time and what it cannot reach: README.md.
# Sizes: 30 patients + 15 EHR-only + 30 CXR-only (a retrieval hold-out of some size; notebook 12 draws a case-study
# row only for a population with >= 2 patients), 2 optimizer steps per pre-training, batches of 16 (MEDBind: EMCL needs >= 2 pairs in a batch, else it
# is a constant 0; check_bf16.py asserts it) and 8 (MEDCSP), one epoch / grid point / Table 4 epoch, 2 task runs,
# 50 bootstrap replicates, 5 few-shot support sets, 20 CheXpert images per class, 2 DataLoader workers (gpu: 8), a
# checkpoint every step (gpu: 500, so the mid-epoch checkpoint path runs too).
GPU_CHECK_RUNS := runs/gpu-check
GPU_CHECK_SET := runs_dir=$(GPU_CHECK_RUNS) data_root=data/gpu-check \
    n_patients=30 synth_ehr_only_fraction=0.5 synth_cxr_only_fraction=1.0 n_workers=2 \
    epochs=1 max_steps=2 batch_size=16 checkpoint_every_steps=1 medcsp_epochs=1 medcsp_batch_size=8 \
    fewshot_support_sets=5 chexpert_5x200_per_class=20 llm_epochs=1 llm_batch_size=16 llm_n_boot=50 \
    'medcsp_task_lrs=[0.0002]' 'medcsp_task_batch_sizes=[32]' medcsp_task_epochs=1 medcsp_task_patience=1 \
    medcsp_task_runs=2 medcsp_task_n_boot=50 medhmp_stay_epochs=1 medhmp_admission_epochs=1
GPU_CHECK_NICE ?= nice -n 19

check-paper-config: setup   ## the gpu profile's code paths on a tiny synthetic cohort on the CPU (README.md "gpu")
	rm -rf $(GPU_CHECK_RUNS)      # every fit from step 0 (a finished checkpoint would skip its training); the cohort is reused
	$(GPU_CHECK_NICE) $(PY) -m medbind_lib.run --profile gpu --set $(GPU_CHECK_SET) $(SET)
	$(GPU_CHECK_NICE) $(PY) benchmarks/check_bf16.py --profile gpu --set $(GPU_CHECK_SET) $(SET)

bench: setup
	$(PY) benchmarks/bench_preprocess.py

clean:
	rm -rf runs/ .pytest_cache
	for d in data/*/; do if [ -f "$$d/.synth_stamp.json" ]; then rm -rf "$$d"; fi; done   # synthetic cohorts only
