# fsvid: the two commands a new user needs are `make demo` and `make test`.
PYTHON ?= python3.11
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: venv test demo lab clean-venv

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
