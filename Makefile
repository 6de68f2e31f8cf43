# Two commands matter: `make reproduce` (main job) and `make test`. See README.md.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
PROFILE ?= default
SET     ?=
SETARGS := $(if $(strip $(SET)),--set $(SET))
NBVAL_FLAGS := -o addopts=-ra --nbval-lax --nbval-current-env --nbval-sanitize-with tests/nbval_sanitize.cfg -p no:python

.PHONY: setup data check reproduce notebooks test test-unit test-notebooks golden publish-figures bench clean

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

bench: setup
	$(PY) benchmarks/bench_preprocess.py

clean:
	rm -rf runs/ .pytest_cache
	for d in data/*/; do if [ -f "$$d/.synth_stamp.json" ]; then rm -rf "$$d"; fi; done   # synthetic cohorts only
