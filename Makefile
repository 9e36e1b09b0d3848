# Entry points of mmsaip. `make setup` is implied by the other targets.
PYTHON ?= python3.11
VENV ?= .venv
# Folder with the small real datasets used by the tests and the demo.
MMSAIP_DATA_ROOT ?= $(abspath ../shared/data)
DEMO_DATA ?= $(MMSAIP_DATA_ROOT)/person_crops
DEMO_CONFIG ?= configs/saip/saip_vit-tiny_1xb8-40it_demo.py
DEMO_WORK_DIR ?= work_dirs/saip_demo
PYTEST_ARGS ?=

export MMSAIP_DATA_ROOT

.PHONY: setup demo test

setup: $(VENV)/.setup-done

# Rerun the set-up when anything it installs from changes.
$(VENV)/.setup-done: scripts/setup_env.sh setup.py requirements/runtime.txt requirements/tests.txt
	PYTHON=$(PYTHON) VENV=$(abspath $(VENV)) bash scripts/setup_env.sh
	touch $@

demo: setup
	@if [ ! -d "$(DEMO_DATA)" ]; then \
		echo "error: person crops not found in $(DEMO_DATA)." \
			"Run 'make demo DEMO_DATA=/path/to/person/images'." >&2; \
		exit 1; \
	fi
	$(VENV)/bin/python tools/train.py $(DEMO_CONFIG) \
		--work-dir $(DEMO_WORK_DIR) \
		--cfg-options train_dataloader.dataset.data_root=$(DEMO_DATA)

test: setup
	$(VENV)/bin/python -m pytest tests $(PYTEST_ARGS)
