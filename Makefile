# The two commands: `make demo` (the main job, offline on the CPU) and `make test` (what CI runs).
SHELL := /bin/bash
.SHELLFLAGS := -eo pipefail -c
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp
NBTEST := _build/nbtest
# --all: Sphinx rebuilds only pages whose Markdown changed, so after new results (same code cells, new outputs in the
# execution cache) an incremental build would keep showing the old numbers; pages still come from the cache.
BUILD_BOOK := $(VENV)/bin/jupyter-book build . -W -n --keep-going --all
NBSTRICT := _build/nbstrict
LINTBOOK := _build/lint
# The pages show their figures inline. A shell's MPLBACKEND=Agg (the suites' setting, results/README.md) would
# leave the executed pages without figures, and through the shared execution cache the book too; `reproduce` sets
# Agg itself for the committed notebooks, which were made with it.
unexport MPLBACKEND

.PHONY: demo test lint unit notebooks reproduce book browser chromium fashion-mnist slurm bench gpu-check gpu-carry clean

$(STAMP): requirements.txt pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q -r requirements.txt 2>&1 | { grep -v "is ignored: it is neither" || true; }
	$(PY) -m pip install -q --no-deps -e . 2>&1 | { grep -v "is ignored: it is neither" || true; }
	$(PY) -m ipykernel install --sys-prefix --name python3 >/dev/null
	touch $(STAMP)

demo: $(STAMP)
	$(PY) -m node_transfer demo

# The book's pages are Markdown: their code cells are linted as scripts written under $(LINTBOOK). The workflows
# (.github/workflows: the book's publishing) are checked offline against GitHub's workflow schema, which
# check-jsonschema ships.
lint: $(STAMP)
	$(VENV)/bin/ruff check src tests bench
	$(VENV)/bin/check-jsonschema --builtin-schema vendor.github-workflows .github/workflows/*.yml
	rm -rf $(LINTBOOK)
	$(PY) -m node_transfer notebooks --scripts $(LINTBOOK) >/dev/null
	$(VENV)/bin/ruff check $(LINTBOOK)

unit: $(STAMP) fashion-mnist slurm
	$(VENV)/bin/pytest tests -q --durations=10 --ignore=tests/browser

# Every book page under nbval-lax (each cell must run; cells marked NBVAL_CHECK_OUTPUT are compared), in a
# folder of its own under _build, so the runs the pages write never land in the source tree. Each page that
# passes goes into the book's execution cache with nbval's outputs, so the book build does not run it again.
notebooks: $(STAMP) fashion-mnist
	rm -rf $(NBTEST) && mkdir -p $(NBTEST)
	$(PY) -m node_transfer notebooks --out $(NBTEST)
	cd $(NBTEST) && ../../$(VENV)/bin/pytest --nbval-lax -p no:cacheprovider -q --durations=10 \
		-p node_transfer.app.book_cache --book-cache ../.jupyter_cache .

# Committed executed notebooks (results/nbval-strict.txt) re-executed and compared output by output.
# One thread and the Agg backend, as they were run: float reductions depend on the thread count.
reproduce: $(STAMP)
	rm -rf $(NBSTRICT) && mkdir -p $(NBSTRICT)
	while read -r nb; do [ -n "$$nb" ] && cp "results/$$nb" "$(NBSTRICT)/$$(echo $$nb | tr / _)"; done \
		< <(grep -v '^#' results/nbval-strict.txt)
	cd $(NBSTRICT) && OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 MPLBACKEND=Agg ../../$(VENV)/bin/pytest --nbval -p no:cacheprovider -q \
		--nbval-sanitize-with ../../results/nbval-sanitize.cfg .

test: lint unit notebooks reproduce browser

# Pages whose code is unchanged since they were last executed (by `make notebooks` or a build) come from the
# execution cache (_build/.jupyter_cache); the others are executed here.
book: $(STAMP) fashion-mnist
	$(BUILD_BOOK)

chromium:
	command -v chromium >/dev/null && command -v chromedriver >/dev/null || \
		{ apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver; }

# Fashion-MNIST's four original files, from Debian's package (the tests use the real data)
fashion-mnist:
	test -f /usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz || \
		{ apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq dataset-fashion-mnist; }

# Debian's SLURM and munge: the tests marked `slurm` start a one-node cluster with them (tests/slurm/one_node_cluster.sh)
slurm:
	command -v slurmctld >/dev/null && command -v slurmd >/dev/null && command -v munged >/dev/null || \
		{ apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq slurm-wlm munge; }

browser: book chromium
	$(VENV)/bin/pytest tests/browser -q

bench: $(STAMP)
	for script in bench/*.py; do $(PY) $$script; done

# The device check (node_transfer.gpucheck) on a machine with one CUDA GPU: every head and gradient path under bf16
# autocast and channels_last, torchrun with NCCL, a resume after SIGTERM, predict, throughput; under 8 minutes, a
# report (Markdown + JSON) in GPU_CHECK_OUT. Without CUDA it stops at once (exit 2).
GPU_CHECK_OUT ?= runs/gpu-check-$(shell date +%Y%m%d-%H%M%S)
gpu-check: $(STAMP) fashion-mnist
	$(PY) -m node_transfer.gpucheck run --out $(GPU_CHECK_OUT)

# What a bare GPU machine (its own python3 and torch, no registry) lacks, into .gpu-carry (git-ignored, < 64 MiB
# with the working tree): run the check there with `PYTHONPATH=src python3 -m node_transfer.gpucheck run
# --carry .gpu-carry --out DIR`.
gpu-carry: $(STAMP) fashion-mnist
	$(PY) -m node_transfer.gpucheck prepare --carry .gpu-carry

clean:
	rm -rf _build
