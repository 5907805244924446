# The two commands: `make demo` (the main job, offline on the CPU) and `make test` (what CI runs).
SHELL := /bin/bash
.SHELLFLAGS := -eo pipefail -c
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp
NBTEST := _build/nbtest

.PHONY: demo test lint unit notebooks book bench results clean

$(STAMP): requirements.txt pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q -r requirements.txt 2>&1 | { grep -v "is ignored: it is neither" || true; }
	$(PY) -m pip install -q --no-deps -e . 2>&1 | { grep -v "is ignored: it is neither" || true; }
	$(PY) -m ipykernel install --sys-prefix --name python3 >/dev/null
	touch $(STAMP)

demo: $(STAMP)
	$(PY) -m node_transfer demo

lint: $(STAMP)
	$(VENV)/bin/ruff check src tests bench book

unit: $(STAMP)
	$(VENV)/bin/pytest tests -q --durations=10

notebooks: $(STAMP)
	rm -rf $(NBTEST) && mkdir -p $(NBTEST)
	$(PY) -m node_transfer notebooks --out $(NBTEST)
	cd $(NBTEST) && ../../$(VENV)/bin/pytest --nbval-lax -p no:cacheprovider -q --durations=10 .

test: lint unit notebooks

book: $(STAMP)
	$(VENV)/bin/jupyter-book build . -W -n --keep-going

bench: $(STAMP)
	for script in bench/*.py; do $(PY) $$script; done

clean:
	rm -rf _build $(NBTEST)
