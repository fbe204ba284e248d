# Two commands do all set-up on a fresh machine: `make demo` and `make test`.
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed-stamp
PYTHON ?= python3

.PHONY: install demo test test-fast browser docs lint-imports bench clean

$(STAMP): pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet torch==2.13.0
	$(PY) -m pip install --quiet -c constraints.txt -e '.[test]'
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/recourse explain datasets/german_credit/examples/denied_applicant.json

test: $(STAMP) browser postgres
	$(PY) -m pytest

# The browser tests drive Debian's chromium (Playwright's own browser download cannot work here).
browser:
	@command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1 || \
	  (apt-get update -qq && apt-get install -y -qq chromium >/dev/null) || \
	  echo "warning: chromium could not be installed (apt-get as root); the browser tests will be skipped"

# The log tests run on SQLite and on a throwaway PostgreSQL server that the test run starts and stops
# (tests/pg.py: Debian's binaries, a data directory under build/, a random local port).
postgres:
	@ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || command -v initdb >/dev/null 2>&1 || \
	  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null) || \
	  echo "warning: postgresql could not be installed (apt-get as root); the PostgreSQL log tests will be skipped"

# Without the tests that start servers or CLI subprocesses, or take more than a few seconds.
test-fast: $(STAMP)
	$(PY) -m pytest -m "not slow and not integration"

# The documentation site (Sphinx + MyST on docs/); warnings are errors. Open build/docs/index.html.
docs: $(STAMP)
	$(PY) -m sphinx -W --keep-going -q -b html docs build/docs

# The import rules of pyproject.toml ([tool.importlinter]); also run by tests/test_architecture.py.
lint-imports: $(STAMP)
	$(VENV)/bin/lint-imports

# The S-CFE tables (benchmarks/scfe.py through `recourse bench scfe`); also bench engine/audit/vision/http.
bench: $(STAMP)
	for d in wine german; do for k in kde gmm knn; do $(VENV)/bin/recourse bench scfe --dataset $$d --density $$k --n 100 --json; done; done

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .hypothesis
