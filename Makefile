# fsvid: the two commands a new user needs are `make demo` and `make test`.
PYTHON ?= python3.11
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

# The notebooks' Jupyter kernel: named fsvid, not python3 (which another Jupyter or an editor maps to its own Python)
KERNEL := $(VENV)/share/jupyter/kernels/fsvid/kernel.json
# make lab: JupyterLab's address; the token is Jupyter's own random one unless LAB_TOKEN is set
LAB_IP    ?= 127.0.0.1
LAB_PORT  ?= 8888
LAB_TOKEN ?=
# --allow-root for root (containers, CI); no browser is opened without a display (the URL is printed)
LAB_FLAGS := $(if $(filter 0,$(shell id -u)),--allow-root) \
             $(if $(DISPLAY)$(WAYLAND_DISPLAY)$(filter Darwin,$(shell uname -s)),,--no-browser) \
             $(if $(LAB_TOKEN),--IdentityProvider.token=$(LAB_TOKEN))

.PHONY: venv test test-browser demo lab clean-venv notebook notebooks notebooks-refresh notebooks-clear

# Idempotent: the venv is (re)built only when it is missing or pyproject.toml changed.
venv: $(STAMP) $(KERNEL)

$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --upgrade pip
	$(PY) -m pip install -e ".[dev]"
	@touch $(STAMP)

$(KERNEL): $(STAMP)
	$(PY) -m ipykernel install --prefix $(VENV) --name fsvid --display-name "Python 3 (fsvid)"

test: venv
	$(PY) -m pytest

# JupyterLab in headless Chromium: runs notebooks, moves a slider (installs Chromium and Playwright when missing)
test-browser: venv
	$(PY) tests_browser/run.py

demo: venv
	$(PY) -m fsvid.demo

lab: venv
	@echo "JupyterLab on http://$(LAB_IP):$(LAB_PORT)/lab (open the URL with ?token=... printed below; Ctrl-C stops it)"
	$(VENV)/bin/jupyter lab --ip=$(LAB_IP) --port=$(LAB_PORT) $(strip $(LAB_FLAGS)) notebooks/

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

# Before committing a notebook you ran in JupyterLab: drop its outputs (the checked cells' text stays)
notebooks-clear: venv
	$(PY) -m fsvid.notebooks clear notebooks/[0-9][0-9]_*.ipynb
