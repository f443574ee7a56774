# The two set-up commands of the README: `make demo` and `make test`. Both install what is missing first.
SHELL := /bin/bash
export ONNXRUNTIME_NODE_INSTALL := skip
export npm_config_fund := false
export npm_config_audit := false

.PHONY: install build test demo bench typecheck clean

node_modules/.vlakit-installed: package.json package-lock.json
	npm ci || npm install
	touch $@

install: node_modules/.vlakit-installed

dist/.built: node_modules/.vlakit-installed tsconfig.json tsconfig.build.json $(shell find src -type f 2>/dev/null)
	rm -rf dist
	npm run build
	touch $@

build: dist/.built

typecheck: install
	npx tsc -p tsconfig.json --noEmit

test: build typecheck
	@mkdir -p test/out
	npx vitest run --reporter=default --reporter=json --outputFile.json=test/out/vitest.json; \
	  status=$$?; node scripts/test-summary.mjs test/out/vitest.json || status=1; exit $$status

demo: build
	bash scripts/demo.sh

bench: build
	node --expose-gc --import tsx bench/io.ts
	node --import tsx bench/env.ts
	node --import tsx bench/annotate.ts
	node --import tsx bench/relabel.ts
	node --import tsx bench/train.ts
	node --import tsx bench/infer.ts
	node --import tsx bench/rollout.ts

clean:
	rm -rf dist oclif.manifest.json demo-out bench/out
