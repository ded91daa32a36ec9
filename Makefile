# videogen-lite: the two commands a newcomer runs are `make book` and `make test`.
#
#   make book         .venv + CPU torch + the package with [book,test] extras; builds _build/html
#   make test         the same install, then unit tests, strict nbval of book/*.ipynb (each chapter
#                     under an instruction set narrower than the machine's, most also as the machine
#                     runs them), the book built with warnings as errors, and every page opened in
#                     headless Chromium
#   make figures      re-execute chapter 5 into _build/ to refresh book/figures/reconstruction.gif
#   make checkpoints  retrain the lite checkpoints that the chapters load (long)
#   make bench        speed / memory benchmarks (prints figures)
#   make clean        remove build outputs (keeps .venv); `make distclean` removes .venv too

PY   ?= python3
VENV  = .venv
BIN   = $(VENV)/bin
# Extra arguments for installing torch, e.g. TORCH_PIP_ARGS="--index-url https://download.pytorch.org/whl/cpu"
TORCH_PIP_ARGS ?=

# Tools run from the venv see its other tools (jupyter, the kernel, videogen-lite) first on PATH.
export PATH := $(abspath $(BIN)):$(PATH)

# Run a command and print how long it took; keeps its exit status.
TIMED = bash -c 'start=$$(date +%s); "$$@"; rc=$$?; echo "[$$(( $$(date +%s) - start ))s, exit $$rc] $$*"; exit $$rc' timed

SANITIZE = $(if $(wildcard book/nbval_sanitize.cfg),--nbval-sanitize-with book/nbval_sanitize.cfg)

# The chapters' stored outputs must not depend on the CPU's vector instructions (float32 sums, matrix
# products and random draws differ in their last bits between AVX2, AVX-512 and Arm), so every chapter is
# compared with its stored outputs under an instruction set narrower than the one it was executed on
# (AVX-512 here): a printed digit that float32 noise can move fails there.
# - LOW_ISA: PyTorch's kernels at the baseline instruction set, oneDNN's at SSE4.1, MKL's at SSE4.2.
# - MID_ISA: all three at AVX2 (most laptops and Colab; the set whose last bits differed from AVX-512's
#   when this check was introduced).
LOW_ISA = ATEN_CPU_CAPABILITY=default ONEDNN_MAX_CPU_ISA=SSE41 MKL_ENABLE_INSTRUCTIONS=SSE4_2
MID_ISA = ATEN_CPU_CAPABILITY=avx2 ONEDNN_MAX_CPU_ISA=AVX2 MKL_ENABLE_INSTRUCTIONS=AVX2
# Chapters 6, 8 and 11 are three quarters of the nbval time (448 s together under MID_ISA, 1,160 s under
# LOW_ISA, measured on two cores here). To keep `make test` under 30 minutes they run once, under MID_ISA;
# the other chapters run twice, as the machine runs them and under LOW_ISA. Every chapter, every pass:
#   make test NBVAL_NATIVE=book/ NBVAL_LOW_ISA=book/ NBVAL_MID_ISA=book/
NBVAL_HEAVY = book/06_% book/08_% book/11_%
NBVAL_NATIVE ?= $(sort $(filter-out $(NBVAL_HEAVY),$(wildcard book/*.ipynb)))
NBVAL_LOW_ISA ?= $(NBVAL_NATIVE)
NBVAL_MID_ISA ?= $(sort $(filter $(NBVAL_HEAVY),$(wildcard book/*.ipynb)))
# One nbval pass: $(call nbval_pass,ENVIRONMENT,NOTEBOOKS); nothing when NOTEBOOKS is empty (a bare
# `pytest --nbval` would collect the unit tests too).
nbval_pass = $(if $(strip $(2)),$(TIMED) env $(1) $(BIN)/pytest -q -p no:cacheprovider --nbval $(2) $(SANITIZE),true)

# The stages of `make test` run one after another even under `make -j`.
.NOTPARALLEL:

.PHONY: install book test unit nbval book-strict site-check figures checkpoints bench clean distclean

install: $(VENV)/.installed

# torch goes in first, pinned: a bare `torch` requirement on a machine with no torch pulls the
# multi-GB CUDA build from PyPI. torch==2.13.0 resolves to the CPU wheel where one is offered (a
# local wheel directory on pip's find-links path, or an index given in TORCH_PIP_ARGS); the package
# itself keeps torch>=2.3 open for its users. Then the package, editable, with both extras.
$(VENV)/.installed: pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/python -m pip install --upgrade pip
	$(BIN)/pip install $(TORCH_PIP_ARGS) torch==2.13.0
	$(BIN)/pip install -e ".[book,test]"
	touch $@

book: install
	$(TIMED) $(BIN)/jupyter-book build .
	@echo "The book is in _build/html/index.html"

test: install
	@total=$$(date +%s); \
	$(MAKE) --no-print-directory unit nbval book-strict site-check || exit $$?; \
	echo "make test: all stages passed in $$(( $$(date +%s) - total ))s"

unit: install
	$(TIMED) $(BIN)/pytest -q tests

nbval: install
	@if ls book/*.ipynb >/dev/null 2>&1; then \
	  $(call nbval_pass,,$(NBVAL_NATIVE)) && \
	  $(call nbval_pass,$(LOW_ISA),$(NBVAL_LOW_ISA)) && \
	  $(call nbval_pass,$(MID_ISA),$(NBVAL_MID_ISA)); \
	else \
	  echo "nbval: skipped, book/ holds no notebooks yet"; \
	fi

# --all re-reads every page, so that warnings of pages unchanged since `make book` still count.
book-strict: install
	$(TIMED) $(BIN)/jupyter-book build . --all -W -n --keep-going

site-check: install
	$(TIMED) $(BIN)/python tools/check_site.py _build/html

# Chapter 5 writes the README's picture only when VIDEOGEN_WRITE_FIGURES=1 (make test leaves the working
# tree as it found it); the executed copy of the chapter goes to _build/figures, the committed one is untouched.
figures: install
	$(TIMED) env VIDEOGEN_WRITE_FIGURES=1 $(BIN)/jupyter nbconvert --to notebook --execute \
	  --ExecutePreprocessor.store_widget_state=False --output-dir _build/figures book/05_training_the_vqvae.ipynb
	@echo "Rewrote book/figures/reconstruction.gif"

checkpoints: install
	$(TIMED) bash checkpoints/train_lite.sh

bench: install
	$(TIMED) $(BIN)/videogen-lite bench

clean:
	rm -rf _build .pytest_cache .hypothesis .ruff_cache
	find . -path ./$(VENV) -prune -o -name __pycache__ -type d -prune -exec rm -rf {} +

distclean: clean
	rm -rf $(VENV) *.egg-info
