VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.lipdub-installed

.PHONY: install test demo clean

install: $(STAMP)

# torch==2.13.0 is pinned so pip takes the CPU build; silero-vad goes in without its
# dependencies (torchaudio would pull a CUDA torch): lipdub only uses its ONNX file.
$(STAMP): pyproject.toml Makefile
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q "torch==2.13.0"
	$(PY) -m pip install -q -e ".[test]"
	$(PY) -m pip install -q --no-deps "silero-vad==6.2.3"
	touch $(STAMP)

test: $(STAMP)
	$(PY) -m pytest -q

# The astronaut photo (scikit-image) says the shipped sentence (src/lipdub/assets): no input, no
# system packages beyond python3-venv; espeak-ng is needed only for custom text.
demo: $(STAMP)
	$(VENV)/bin/lipdub demo -o demo.mp4

clean:
	rm -rf $(VENV) build dist src/*.egg-info .pytest_cache
