# wasm-chord: the two commands a new user needs are `make serve` and `make test`.
SHELL := /bin/bash
CARGO ?= cargo

.PHONY: test setup models check lint wasm unit serve

## Everything CI runs: install what is missing, fetch the test models, lint, build for wasm, test.
test: setup models lint wasm unit

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

serve:
	@echo "make serve arrives with the browser app (issue: Browser app). Until then: cargo run --release --bin chord -- inspect models/smollm2-135m-instruct-q4_k_m.gguf"; exit 1
