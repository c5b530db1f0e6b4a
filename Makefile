# wasm-chord: the two commands a new user needs are `make serve` and `make test`.
SHELL := /bin/bash
CARGO ?= cargo

.PHONY: test setup models check lint wasm unit wasm-test serve

## Everything CI runs: install what is missing, fetch the test models, lint, build for wasm, test.
test: setup models lint wasm unit wasm-test

setup:
	scripts/setup

models:
	scripts/fetch-models

lint:
	$(CARGO) fmt --check
	$(CARGO) clippy --all-targets -- -D warnings

wasm:
	$(CARGO) build --target wasm32-unknown-unknown --lib

unit:
	$(CARGO) test --release

## The engine compiled to wasm32, run in headless Chromium by wasm-bindgen-test (webdriver.json).
wasm-test:
	CARGO_TARGET_WASM32_UNKNOWN_UNKNOWN_RUNNER=wasm-bindgen-test-runner CHROMEDRIVER=$${CHROMEDRIVER:-/usr/bin/chromedriver} \
	WASM_BINDGEN_TEST_TIMEOUT=600 $(CARGO) test --release --no-default-features --target wasm32-unknown-unknown --test wasm_engine

serve:
	@echo "make serve arrives with the browser app (issue: Browser app). Until then: cargo run --release --bin chord -- inspect models/smollm2-135m-instruct-q4_k_m.gguf"; exit 1
