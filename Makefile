# fsvid: the two commands a new user needs are `make demo` and `make test`.
PYTHON ?= python3.11
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: venv test demo lab clean-venv notebook notebooks notebooks-refresh

# Idempotent: the venv is (re)built only when it is missing or pyproject.toml changed.
venv: $(STAMP)

$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --upgrade pip
	$(PY) -m pip install -e ".[dev]"
	$(PY) -m ipykernel install --prefix $(VENV) --name python3 --display-name "Python 3 (fsvid)"
	@touch $(STAMP)

test: venv
	$(PY) -m pytest

demo: venv
	$(PY) -m fsvid.demo

lab: venv
	$(VENV)/bin/jupyter lab notebooks/

clean-venv:
	rm -rf $(VENV)

# One notebook with parameters, e.g.
#   make notebook NB=07_training PARAMS=notebooks/params/strm_hmdb.yaml OUT=/scratch/strm_hmdb \
#        ARGS="-p data_root=/data/hmdb_ARN"
notebook: venv
	$(PY) -m fsvid.notebooks run $(NB) $(if $(PARAMS),--parameters $(PARAMS)) $(if $(OUT),--output-dir $(OUT)) $(ARGS)

# Every notebook at its defaults, executed into $$FSVID_HOME/notebook_runs (never into notebooks/)
notebooks: venv
	for nb in notebooks/[0-9][0-9]_*.ipynb; do $(PY) -m fsvid.notebooks run $$nb --quiet || exit 1; done

# After editing a notebook: store its checked outputs, clear the rest
notebooks-refresh: venv
	$(PY) -m fsvid.notebooks refresh notebooks/[0-9][0-9]_*.ipynb
