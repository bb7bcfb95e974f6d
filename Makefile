# Front door of hms-mgmt. `make help` lists the targets.
PYTHON ?= python3
VENV   ?= .venv
PY      = $(VENV)/bin/python
STAMP   = $(VENV)/.installed
BENCH  ?=
PROTOS  = $(wildcard protos/hms/mgmt/v1/*.proto)
PY_DIRS = $(wildcard control_plane tests bench services clients/python/hms_mgmt)
# The Python SDK's distribution (hms-mgmt-client): hms_mgmt and the generated hms/mgmt/v1, one copy that
# the server uses too.
PY_SDK  = clients/python
NODE_SVC = services/notification
NODE_STAMP = $(NODE_SVC)/node_modules/.package-lock.json
# gRPC's own Node xDS client (@grpc/grpc-js, @grpc/grpc-js-xds), used by tests/test_mesh_node.py.
MESH_NODE = tests/mesh_node
MESH_NODE_STAMP = $(MESH_NODE)/node_modules/.package-lock.json
JS_SDK   = clients/js
JS_STAMP = $(JS_SDK)/node_modules/.package-lock.json
# What the Node service installs of the SDK: it is copied in like a tarball (.npmrc: install-links).
JS_SHIPPED = $(JS_SDK)/package.json $(wildcard $(JS_SDK)/dist/*.js $(JS_SDK)/dist/*/*/*/*.js $(JS_SDK)/dist/*/*/*.js)
BUF_DIR  = tools/buf
BUF      = $(BUF_DIR)/node_modules/.bin/buf
# The wire contract of the last release; `buf breaking` compares protos/ with it. Replace it only
# when a release is cut (`make proto-release`), never to make a breaking change pass.
RELEASED = protos/released/v0.1.0.binpb

.DEFAULT_GOAL := help
.PHONY: help install proto proto-js proto-check proto-release buf-lint fmt lint typecheck test test-js test-postgres demo serve bench clean

help:  ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-14s %s\n", $$1, $$2}'

$(STAMP): pyproject.toml $(PY_SDK)/pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e ./$(PY_SDK) -e '.[test]'
	@# xds-protos ships an older copy of opentelemetry-proto's modules: whichever installs last owns the
	@# files, and the OTLP exporter needs opentelemetry-proto's own. Put them back (tests/test_cel_beside_xds.py).
	$(PY) -m pip install --quiet --no-deps --force-reinstall \
	  "opentelemetry-proto==$$($(PY) -c 'from importlib.metadata import version; print(version("opentelemetry-proto"))')"
	touch $(STAMP)

# Node.js parts install their locked dependencies; without npm they are skipped with a note, unless
# MGMT_REQUIRE_NODE=1 (CI) makes that an error.
NO_NPM = if [ "$$MGMT_REQUIRE_NODE" = 1 ]; then echo "npm not found: Node.js is required (MGMT_REQUIRE_NODE=1)" >&2; exit 1; fi; echo

# The JavaScript SDK with its build tools (ts-proto, TypeScript) and test dependencies.
$(JS_STAMP): $(JS_SDK)/package.json $(JS_SDK)/package-lock.json
	@if command -v npm >/dev/null 2>&1; then npm ci --prefix $(JS_SDK) --no-audit --no-fund --loglevel=error; \
	else $(NO_NPM) "npm not found: skipping $(JS_SDK) (its tests will be skipped)"; fi

# The NotificationService, with the SDK installed from clients/js as a user's package would be.
$(NODE_STAMP): $(NODE_SVC)/package.json $(NODE_SVC)/package-lock.json $(JS_SHIPPED)
	@if command -v npm >/dev/null 2>&1; then npm ci --prefix $(NODE_SVC) --no-audit --no-fund --loglevel=error; \
	else $(NO_NPM) "npm not found: skipping $(NODE_SVC) (its tests will be skipped)"; fi

$(MESH_NODE_STAMP): $(MESH_NODE)/package.json $(MESH_NODE)/package-lock.json
	@if command -v npm >/dev/null 2>&1; then npm ci --prefix $(MESH_NODE) --no-audit --no-fund --loglevel=error; \
	else $(NO_NPM) "npm not found: skipping $(MESH_NODE) (the Node xDS test will be skipped)"; fi

# buf from npm (@bufbuild/buf), locked in tools/buf. Without npm, the proto checks are skipped with a
# note, unless MGMT_REQUIRE_BUF=1 (CI) makes that an error.
$(BUF): $(BUF_DIR)/package.json $(BUF_DIR)/package-lock.json
	@if command -v npm >/dev/null 2>&1; then npm ci --prefix $(BUF_DIR) --no-audit --no-fund --loglevel=error; \
	elif [ "$$MGMT_REQUIRE_BUF" = 1 ]; then echo "npm not found: buf is required (MGMT_REQUIRE_BUF=1)" >&2; exit 1; \
	else echo "npm not found: skipping buf lint and buf breaking"; fi

install: $(STAMP) $(JS_STAMP) $(NODE_STAMP) $(MESH_NODE_STAMP)  ## create .venv, install the project with its test extras, the JS SDK, the Node service and the Node xDS test client

GEN = --plugin=protoc-gen-mypy=$(VENV)/bin/protoc-gen-mypy --plugin=protoc-gen-mypy_grpc=$(VENV)/bin/protoc-gen-mypy_grpc

proto: $(STAMP) proto-js  ## regenerate clients/python/hms/mgmt/v1 and the JS SDK's types (and dist/) from protos/; commit the result
	$(PY) -m grpc_tools.protoc -I protos $(GEN) --python_out=$(PY_SDK) --grpc_python_out=$(PY_SDK) --mypy_out=$(PY_SDK) --mypy_grpc_out=$(PY_SDK) $(PROTOS)
	$(PY) -m grpc_tools.protoc -I protos --include_source_info --descriptor_set_out=$(PY_SDK)/hms/mgmt/v1/documented.binpb $(PROTOS)

proto-js: $(JS_STAMP) $(BUF)  ## regenerate clients/js/src/gen (ts-proto) and rebuild clients/js/dist (tsc); commit the result
	@if [ -x $(BUF) ] && [ -d $(JS_SDK)/node_modules ]; then npm run --prefix $(JS_SDK) --silent generate && npm run --prefix $(JS_SDK) --silent build; fi

proto-check: proto  ## fail if the generated code (Python, TypeScript, the SDK's compiled JS) is stale or was edited by hand
	test -z "$$(git status --porcelain -- $(PY_SDK)/hms $(JS_SDK)/src/gen $(JS_SDK)/dist)"

fmt: $(STAMP)  ## format and autofix
	$(PY) -m ruff format $(PY_DIRS)
	$(PY) -m ruff check --fix $(PY_DIRS)

buf-lint: $(BUF)  ## buf lint (STANDARD + COMMENTS) and buf breaking against the last release
	@if [ -x $(BUF) ]; then $(BUF) lint && $(BUF) breaking --against $(RELEASED); fi

proto-release: $(BUF)  ## cut a release of the contract: RELEASED=protos/released/vX.Y.Z.binpb (then set it above)
	$(BUF) build -o $(RELEASED)

lint: $(STAMP) buf-lint  ## ruff, mypy, the import layering contracts, buf lint and buf breaking
	$(PY) -m ruff check $(PY_DIRS)
	$(PY) -m ruff format --check $(PY_DIRS)
	$(PY) -m mypy
	$(VENV)/bin/lint-imports

typecheck: $(STAMP)  ## mypy --strict only
	$(PY) -m mypy

# --durations: CI logs name the slowest tests of each pass. .ci/run runs lint and the JS SDK's tests
# beside the two pytest passes (MGMT_LINT_BESIDE=1, MGMT_JS_BESIDE=1): each pass is then the whole of its side.
LINT_IN_TEST = $(if $(filter 1,$(MGMT_LINT_BESIDE)),,lint)
JS_IN_TEST = $(if $(filter 1,$(MGMT_JS_BESIDE)),,test-js)
test: $(LINT_IN_TEST) $(NODE_STAMP) $(MESH_NODE_STAMP) $(JS_IN_TEST)  ## install, lint and run every test
	$(PY) -m pytest -q --durations=30

test-js: $(STAMP) $(JS_STAMP) $(BUF)  ## the JavaScript SDK's tests (node --test), each against a real control plane
	@if command -v node >/dev/null 2>&1 && [ -d $(JS_SDK)/node_modules ]; then \
	  cd $(JS_SDK) && MGMT_PYTHON=$(abspath $(PY)) node --test --test-concurrency=1 test/*.test.js; \
	elif [ "$$MGMT_REQUIRE_NODE" = 1 ]; then echo "node not found: the JS SDK's tests are required (MGMT_REQUIRE_NODE=1)" >&2; exit 1; \
	else echo "node or npm not found: skipping the JavaScript SDK's tests"; fi

# Only the tests whose outcome depends on the store run again (tests/conftest.py says which, and prints
# how many it left out): the others ran in `make test` and would do the same here.
test-postgres: $(STAMP) $(NODE_STAMP) $(MESH_NODE_STAMP)  ## the store-dependent tests again with the control planes on PostgreSQL (required, not skipped)
	MGMT_REQUIRE_POSTGRES=1 MGMT_TEST_STORE=postgres $(PY) -m pytest -q --durations=30

demo: $(STAMP) $(NODE_STAMP)  ## the building-permit platform end to end: four services, three applications
	$(PY) -m services.permit.demo

serve: $(STAMP)  ## run a control plane on 127.0.0.1:50051 with data in ./.mgmt-data
	$(VENV)/bin/mgmt serve

$(VENV)/.installed-bench: $(STAMP)
	$(PY) -m pip install --quiet -e '.[test,bench]'
	touch $@

bench: $(VENV)/.installed-bench  ## run the benchmarks (BENCH=registry for one; scale uses MGMT_BENCH_POSTGRES_URL) into bench/results.json
	$(PY) -m bench $(BENCH)

clean:  ## remove the virtual environment and local data
	rm -rf $(VENV) .mgmt-data .pytest_cache .mypy_cache .ruff_cache
