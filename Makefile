# wasm-chord: the two commands a new user needs are `make serve` and `make test`.
SHELL := /bin/bash
CARGO ?= cargo

.PHONY: test setup models check lint wasm unit wasm-test serve web e2e dist fuzz-ci

## Everything CI runs: install what is missing, fetch the test models, lint, build for wasm, test,
## then each fuzz target briefly.
test: setup models lint unit wasm-test e2e fuzz-ci

setup:
	scripts/setup

models:
	scripts/fetch-models

## Lints both targets: the wasm32 checks (threaded on the pinned nightly, and single-threaded
## with relaxed SIMD) stand in for separate wasm builds (wasm-test and web build and link the
## module for real).
lint:
	$(CARGO) fmt --check
	$(CARGO) clippy --all-targets -- -D warnings
	@# (No wasm32 check without SIMD128: no build ships one; the two below cover SIMD128, each
	@# with what it adds.)
	@# The threaded build (feature web-threads) only compiles on the pinned nightly: its
	@# cfg(target_feature = "atomics") is unstable, and wasm-bindgen-rayon refuses to build without it.
	@# A check needs no build-std (nothing links); rustc warns once that atomics is unstable.
	CARGO_TARGET_WASM32_UNKNOWN_UNKNOWN_RUSTFLAGS="-C target-feature=+atomics,+bulk-memory,+simd128" \
	rustup run $$(cat scripts/threads-toolchain) $(CARGO) clippy --target wasm32-unknown-unknown --lib --tests \
	  --no-default-features --features web-threads --target-dir $${CARGO_TARGET_DIR:-target}/threads-check -- -D warnings
	CARGO_TARGET_DIR=$${CARGO_TARGET_DIR:-target}/relaxed-simd CARGO_TARGET_WASM32_UNKNOWN_UNKNOWN_RUSTFLAGS="-C target-feature=+simd128,+relaxed-simd" \
	$(CARGO) clippy --target wasm32-unknown-unknown --lib --tests --no-default-features -- -D warnings

wasm:
	$(CARGO) build --target wasm32-unknown-unknown --lib

## GPU tests run on Mesa's software Vulkan driver (lavapipe) unless told otherwise.
unit:
	XDG_RUNTIME_DIR=$${XDG_RUNTIME_DIR:-/tmp} WGPU_BACKEND=$${WGPU_BACKEND:-vulkan} VK_ICD_FILENAMES=$${VK_ICD_FILENAMES:-/usr/share/vulkan/icd.d/lvp_icd.x86_64.json} \
	$(CARGO) test --profile ci

## The engine compiled to wasm32 with SIMD128 (as scripts/build-web builds it), run in headless
## Chromium by wasm-bindgen-test (webdriver.json): engine parity and the SIMD128 kernels; then the
## kernels again built with relaxed SIMD too (their own target dir: other RUSTFLAGS).
wasm-test:
	CARGO_TARGET_WASM32_UNKNOWN_UNKNOWN_RUSTFLAGS="-C target-feature=+simd128" \
	CARGO_TARGET_WASM32_UNKNOWN_UNKNOWN_RUNNER=wasm-bindgen-test-runner CHROMEDRIVER=$${CHROMEDRIVER:-/usr/bin/chromedriver} \
	WASM_BINDGEN_TEST_TIMEOUT=600 $(CARGO) test --profile ci --no-default-features --target wasm32-unknown-unknown \
	  --test wasm_engine --test wasm_kernels --test wasm_gpu --test wasm_zoo
	CARGO_TARGET_DIR=$${CARGO_TARGET_DIR:-target}/relaxed-simd CARGO_TARGET_WASM32_UNKNOWN_UNKNOWN_RUSTFLAGS="-C target-feature=+simd128,+relaxed-simd" \
	CARGO_TARGET_WASM32_UNKNOWN_UNKNOWN_RUNNER=wasm-bindgen-test-runner CHROMEDRIVER=$${CHROMEDRIVER:-/usr/bin/chromedriver} \
	WASM_BINDGEN_TEST_TIMEOUT=600 $(CARGO) test --profile ci --no-default-features --target wasm32-unknown-unknown \
	  --test wasm_kernels

## The browser app's wasm module into pkg/ (release, SIMD128, wasm-bindgen --target web), and its
## relaxed-SIMD build into pkg/relaxed/ and the threaded builds into pkg/threads/ and (with
## relaxed SIMD) pkg/threads-relaxed/ (atomics, shared memory; the pinned nightly).
web:
	scripts/build-web

## Browser tests: headless Chromium against `chord serve` (tests/e2e, node --test); the server and
## the native oracle are the `ci` profile's `chord`, built beside the tests' own artifacts.
e2e: web dist
	$(CARGO) build --profile ci --bin chord
	cd tests/e2e && { [ -d node_modules/playwright-core ] && [ -d node_modules/vite ] && [ -d node_modules/openai ] || npm ci --no-audit --no-fund; } && CHORD_PROFILE=ci node --test --test-concurrency=1 .

## The chat page on http://127.0.0.1:8080/ with the test models (default: SmolLM2-135M-Instruct Q4_K_M).
serve: setup models web
	$(CARGO) run --release --bin chord -- serve --port $${PORT:-8080} --models models

## A static site in dist/ that any static host serves as it is (no special headers: the service
## worker adds COOP/COEP): the chat page, the worker and the wasm module; models come from public
## URLs or local files. Try it: python3 -m http.server -d dist
dist: web
	rm -rf dist
	mkdir -p dist/www dist/worker dist/pkg
	cp index.html dist/
	cp www/app.js www/chats.js www/device.js www/markdown.js www/style.css www/sw.js dist/www/
	cp -r www/vendor dist/www/
	cp www/sw.js dist/sw.js
	cp worker/adapter.js worker/auto.js worker/client.js worker/client.d.ts worker/pool-worker.js worker/protocol.js worker/remote.js worker/store.js worker/worker.js dist/worker/
	cp pkg/wasm_chord.js pkg/wasm_chord_bg.wasm dist/pkg/
	mkdir -p dist/pkg/threads
	cp -r pkg/threads/wasm_chord.js pkg/threads/wasm_chord_bg.wasm pkg/threads/snippets dist/pkg/threads/
	mkdir -p dist/pkg/threads-relaxed
	cp -r pkg/threads-relaxed/wasm_chord.js pkg/threads-relaxed/wasm_chord_bg.wasm pkg/threads-relaxed/snippets dist/pkg/threads-relaxed/
	mkdir -p dist/pkg/relaxed
	cp pkg/relaxed/wasm_chord.js pkg/relaxed/wasm_chord_bg.wasm dist/pkg/relaxed/
	touch dist/.nojekyll
	@echo "dist/: $$(du -sh dist | cut -f1)"

## Each fuzz target briefly (libFuzzer, stable Rust; docs/fuzzing.md), then the committed crashers.
fuzz-ci:
	scripts/fuzz seed
	scripts/fuzz regress
	scripts/fuzz ci
