# The two everyday commands are `make book` and `make test` (see README.md).
# Both create the virtual environment in .venv on first use.

SHELL      := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
PYTHON     ?= $(shell command -v python3.11 || command -v python3)
VENV       := .venv
BIN        := $(VENV)/bin
STAMP      := $(VENV)/.installed
export TQDM_DISABLE := 1
# MKL's AVX2 code branch: bit-reproducible across processes (floss_utils/__init__.py also sets it on import)
export MKL_CBWR ?= AVX2

# The chapter notebooks are exactly the .ipynb files listed in _toc.yml.
CHAPTERS = $(shell sed -n 's/^ *- *file: *\(book\/[^ #]*\).*/\1/p' _toc.yml | while read -r f; do [ -f "$$f.ipynb" ] && echo "$$f.ipynb"; done)

# tests/nbval_machine.py: outputs compared exactly on the machine that executed the notebook
# (its `executed_on` stamp), with numbers masked on any other (floss_utils/book/reproducibility.py).
# The whole book re-executes at book scale within this budget on the 2-core CI machine (the
# design's 30 minutes); `make test` fails when nbval, which re-executes every chapter, takes longer.
BOOK_BUDGET_S ?= 1800

NBVAL_FLAGS := --nbval --nbval-current-env --nbval-cell-timeout=1800 \
               --nbval-sanitize-with tests/nbval_sanitize.cfg -p tests.nbval_machine -p no:cacheprovider

.PHONY: help venv lock check-install test unit nbval book execute student clean

help:
	@echo "make book     build the book from the committed outputs into _build/html"
	@echo "make test     unit tests, notebook hygiene, smoke runs, book build, nbval"
	@echo "make execute  re-execute every chapter at book scale (refreshes committed outputs)"
	@echo "make student  write the student edition (solutions removed) into _build/student"
	@echo "make venv     create/update .venv from requirements.txt"
	@echo "make lock     regenerate requirements.txt from pyproject.toml (pip-compile; keeps every pin)"
	@echo "make check-install  build the wheel from HEAD, install it in a throwaway venv, run floss"
	@echo "make clean    remove build and run outputs (keeps .venv)"

venv: $(STAMP)

$(STAMP): requirements.txt pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q -r requirements.txt
	@touch $@

# requirements.txt, the book's pinned environment, is generated (never edited by hand) by
# pip-tools' pip-compile from pyproject.toml: [project] dependencies plus every extra. pip-compile
# uses pip's resolver and pip's configuration, so it sees the local CPU torch wheel. Every current
# pin is passed as a constraint (-c), so no version moves unless asked:
#   make lock                       after editing the dependencies in pyproject.toml: packages
#                                   new to the lock get their newest allowed version, pins stay
#   make lock UPGRADE="numpy scipy" lets these packages move too (then `make execute`)
#   make lock UPGRADE=all           re-resolves everything (then `make execute`)
# The output is post-processed: the project's own line (from the self-referencing extra `tests`)
# is dropped for `-e .`, torch's local label "+cpu" is stripped (see requirements.txt), and the
# constraint file is left out of the "# via" annotations. No hashes: pip refuses `-e .` in
# hash-checking mode, and torch's artifact differs by machine (local CPU wheel, PyTorch's index).
# pip-tools lives in its own venv (.venv-lock): it is not in the lock and CI never needs it.
LOCK_VENV := .venv-lock
PIP_TOOLS := pip-tools==7.6.2
UPGRADE   ?=

lock:
	@test -x $(LOCK_VENV)/bin/python || $(PYTHON) -m venv $(LOCK_VENV)
	@$(LOCK_VENV)/bin/python -m pip install -q $(PIP_TOOLS)
	@tmp=$$(mktemp -d); trap 'rm -rf "$$tmp"' EXIT; \
	touch requirements.txt; \
	pins() { grep -E '^[A-Za-z0-9]' "$$1" | sed -E 's/[ ;#].*//' \
	  | awk -F'==' '{ n = tolower($$1); gsub(/[_.]+/, "-", n); print n "==" $$2 }' | sort; }; \
	pins requirements.txt > "$$tmp/old.txt"; \
	if [ "$(UPGRADE)" = all ]; then : > "$$tmp/pins.txt"; \
	elif [ -n "$(UPGRADE)" ]; then \
	  grep -viE "^($$(echo '$(UPGRADE)' | tr '_.' '--' | tr -s ' ' '|'))==" "$$tmp/old.txt" > "$$tmp/pins.txt" || true; \
	else cp "$$tmp/old.txt" "$$tmp/pins.txt"; fi; \
	echo "== pip-compile pyproject.toml (all extras), $$(wc -l < "$$tmp/pins.txt") current pins as constraints"; \
	CUSTOM_COMPILE_COMMAND="make lock" $(LOCK_VENV)/bin/pip-compile --quiet --all-extras --strip-extras \
	  --allow-unsafe --annotation-style=line --no-emit-index-url --no-emit-find-links \
	  --constraint "$$tmp/pins.txt" --output-file "$$tmp/compiled.txt" pyproject.toml; \
	{ echo '# The pinned environment of the book (Python 3.11), generated from pyproject.toml by'; \
	  echo '# pip-compile (pip-tools): regenerate with `make lock` (Makefile, README.md), never by hand.'; \
	  echo '# torch: pip-compile pins the local CPU wheel as 2.13.0 plus the local label "cpu", which'; \
	  echo '# only that wheel and the PyTorch CPU index carry; `make lock` strips the label. pip still'; \
	  echo '# prefers the local CPU wheel for torch==2.13.0 where it exists (README.md, "The torch pin").'; \
	  sed -E -e '/^floss-utils @ /d' -e 's/# via -c [^ ,]*(, )?/# via /' -e 's/ *# via $$//' \
	         -e 's/floss-utils, //' -e 's/^(torch==[0-9.]+)\+[A-Za-z0-9.]+/\1/' "$$tmp/compiled.txt"; \
	  echo "# floss_utils itself, editable (a development checkout; users: pip install .)"; \
	  echo "-e ."; } > "$$tmp/requirements.txt"; \
	if grep -nE '\+cpu|file://|^floss' "$$tmp/requirements.txt"; then echo "make lock: unexpected lines above (a local label, a file URL or the project itself)"; exit 1; fi; \
	mv "$$tmp/requirements.txt" requirements.txt; \
	pins requirements.txt > "$$tmp/new.txt"; \
	changed=$$(diff "$$tmp/old.txt" "$$tmp/new.txt" | grep '^[<>]' || true); \
	echo "== requirements.txt: $$(wc -l < "$$tmp/new.txt") pins, $${changed:+changed (< old, > new):}"; \
	echo "$${changed:-   no pin added, removed or changed}"

# Is floss_utils installable? The wheel of HEAD (git archive: committed files only) into a
# throwaway venv, then `floss list`/`floss params` outside any checkout (.ci/check_install).
check-install:
	bash .ci/check_install

# Unit tests, hygiene, chapter smoke runs (papermill) and the book build, then nbval: the
# committed notebooks re-executed at book scale and compared with their stored outputs.
test: venv
	@start=$$(date +%s); status=0; \
	echo "== pytest tests/ (unit, hygiene, smoke, build)"; \
	$(BIN)/python -m pytest tests --durations=20 || status=1; \
	mid=$$(date +%s); \
	echo "== nbval: $(CHAPTERS)"; \
	if [ -n "$(strip $(CHAPTERS))" ]; then \
	  $(BIN)/python -m pytest $(NBVAL_FLAGS) --durations=15 $(CHAPTERS) || status=$$((status + 2)); \
	else echo "no chapter notebooks listed in _toc.yml"; status=$$((status + 2)); fi; \
	end=$$(date +%s); \
	if [ $$((end - mid)) -gt $(BOOK_BUDGET_S) ]; then \
	  echo "== the book took $$((end - mid)) s to re-execute at book scale: over its $(BOOK_BUDGET_S) s budget"; \
	  status=$$((status + 4)); fi; \
	echo "== summary: pytest tests/ $$([ $$((status & 1)) -eq 0 ] && echo passed || echo FAILED) ($$((mid - start)) s)," \
	     "nbval $$([ $$((status & 2)) -eq 0 ] && echo passed || echo FAILED) ($$((end - mid)) s," \
	     "budget $(BOOK_BUDGET_S) s)"; \
	exit $$status

unit: venv
	$(BIN)/python -m pytest tests -m "not slow"

nbval: venv
	$(BIN)/python -m pytest $(NBVAL_FLAGS) $(CHAPTERS)

book: venv
	$(BIN)/jupyter-book build . -W -n --keep-going
	@echo "Open _build/html/index.html"

# Re-execute each chapter in place at its committed (book) scale, keeping the parameters cell
# (nbclient's `jupyter execute`, run from the notebook's folder like nbval), and stamp it with
# this machine's fingerprint (floss_utils/book/reproducibility.py).
execute: venv
	@for nb in $(CHAPTERS); do \
	  echo "== executing $$nb"; start=$$(date +%s); \
	  $(BIN)/jupyter execute --inplace --timeout=1800 --kernel_name=python3 "$$nb"; \
	  $(BIN)/python -m floss_utils.book.reproducibility stamp "$$nb"; \
	  echo "   $$(( $$(date +%s) - start )) s"; \
	done

# The student edition: every chapter with its exercise solutions removed.
student: venv
	$(BIN)/python -c "import sys; from floss_utils.book.student import write_student_edition as w; \
	  print('\n'.join(map(str, w(sys.argv[1:], '_build/student'))))" $(CHAPTERS)

clean:
	rm -rf _build _output book/_output runs .pytest_cache
	find . -path ./.venv -prune -o -name __pycache__ -type d -prune -exec rm -rf {} +
