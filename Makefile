# Spillway: the two commands a newcomer needs are `make run` and `make test`.
# Both install what they need first (`make tools`).

SHELL   := /bin/bash
GO      ?= go
BIN     := bin/spillway
PKG     := github.com/spillwayhq/spillway
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
REV     ?= $(shell git rev-parse HEAD 2>/dev/null || echo unknown)
LDFLAGS := -X $(PKG)/controlplane/buildinfo.Version=$(VERSION) -X $(PKG)/controlplane/buildinfo.Revision=$(REV)
# Each fuzz target runs this many inputs in `make test` (and CI). A count,
# not a duration: a duration ends with Go's fuzzing deadline, which can fail
# a run ("context deadline exceeded") when a worker is slow to stop.
FUZZTIME ?= 20000x

.PHONY: all build run test unit fuzz bench lint vet fmt fmt-check tools clean webui

all: build

## build: compile bin/spillway
build:
	$(GO) build -ldflags '$(LDFLAGS)' -o $(BIN) ./cmd/spillway

## run: start the local hybrid-cloud lab with the control plane (Ctrl-C stops it)
run: tools build
	./$(BIN) lab

## test: lint, then every test with the race detector, then bounded fuzzing; ends with the slowest tests
test: tools lint terraform-fmt-check nomad-fmt-check unit fuzz
	@$(GO) run ./internal/testreport -summary < bin/test.json

## unit: every test with the race detector (the end-to-end labs run side by side: SPILLWAY_E2E_LABS, 3 by default)
unit:
	@mkdir -p bin
	set -o pipefail; $(GO) test -race -json -timeout 45m ./... | $(GO) run ./internal/testreport -save bin/test.json -slowest 0

## fuzz: run every fuzz target for FUZZTIME
fuzz:
	@set -e; for pkg in $$($(GO) list ./...); do \
		dir=$$($(GO) list -f '{{.Dir}}' $$pkg); \
		for target in $$(grep -ho '^func Fuzz[A-Za-z0-9_]*' $$dir/*_test.go 2>/dev/null | sed 's/^func //'); do \
			echo "fuzz: $$pkg $$target ($(FUZZTIME))"; \
			$(GO) test -run '^$$' -fuzz "^$$target$$" -fuzztime $(FUZZTIME) $$pkg; \
		done; \
	done

## terraform-fmt-check: terraform fmt -check on terraform/ (skipped, saying so, without terraform)
.PHONY: terraform-fmt-check
terraform-fmt-check:
	@if command -v terraform >/dev/null 2>&1; then \
		terraform fmt -check -recursive -diff terraform && echo "terraform fmt: ok"; \
	else \
		echo "terraform fmt: SKIPPED: terraform is not installed (the HCL contract test in terraform/ still runs)"; \
	fi

## nomad-fmt-check: nomad fmt -check on deploy/ (skipped, saying so, without nomad; deploy/'s Go tests validate the job on a real server)
.PHONY: nomad-fmt-check
nomad-fmt-check:
	@nomad="$${SPILLWAY_NOMAD_BIN:-$${XDG_CACHE_HOME:-$$HOME/.cache}/spillway/tools/nomad-1.6.3/nomad}"; \
	if [ ! -x "$$nomad" ]; then nomad=$$(command -v nomad 2>/dev/null || true); fi; \
	if [ -n "$$nomad" ]; then \
		"$$nomad" fmt -check -list=true deploy && echo "nomad fmt: ok"; \
	else \
		echo "nomad fmt: SKIPPED: nomad is not installed (run 'make tools')"; \
	fi

# The scale simulation make bench runs (spillway bench scaleout): the
# scenarios, the burst each needs and the seed (the same seed gives the same
# simulated figures).
BENCH_SCENARIOS ?= plain,exhausted,throttled,api-errors,restart,consistency,large
BENCH_HOSTS     ?= 1000
BENCH_SEED      ?= 1

## bench: the Go benchmarks of the hot paths, then the scale simulation (BENCH_SCENARIOS at +BENCH_HOSTS), which writes BENCHMARKS.md; starts no lab
bench: tools build
	@mkdir -p bin
	@set -o pipefail; status=0; \
	$(GO) test -run '^$$' -bench . -benchmem $$($(GO) list ./... | grep -v /test/e2e) 2>&1 | tee bin/bench-go.txt || status=1; \
	./$(BIN) bench scaleout --scenario $(BENCH_SCENARIOS) --hosts $(BENCH_HOSTS) --seed $(BENCH_SEED) \
		--go-bench bin/bench-go.txt --cpuprofile bin/bench.cpu.pprof --memprofile bin/bench.heap.pprof --missed bin/bench.missed --markdown BENCHMARKS.md || exit 1; \
	for k in $$(cat bin/bench.missed); do \
		printf '\n## CPU profile of %s+%s, which missed a target (go tool pprof -top)\n\n```\n' $$k $(BENCH_HOSTS) >> BENCHMARKS.md; \
		$(GO) tool pprof -top -nodecount=25 $(BIN) bin/bench.cpu.pprof.$$k 2>/dev/null | grep -v '^Build ID' >> BENCHMARKS.md; \
		printf '```\n\nIts heap once the burst was placed (go tool pprof -sample_index=inuse_space -top):\n\n```\n' >> BENCHMARKS.md; \
		$(GO) tool pprof -sample_index=inuse_space -top -nodecount=15 $(BIN) bin/bench.heap.pprof.$$k 2>/dev/null | grep -v '^Build ID' >> BENCHMARKS.md; \
		printf '```\n' >> BENCHMARKS.md; \
	done; \
	echo "bench: wrote BENCHMARKS.md"; \
	if [ $$status -ne 0 ]; then echo "bench: a Go benchmark failed (see BENCHMARKS.md)"; fi; \
	exit $$status

## bench-lab: the lab's end-to-end benchmarks (abuse, alert sweep); each starts a lab, bounded by BENCH_LAB_TIMEOUT
BENCH_LAB_TIMEOUT ?= 30m
.PHONY: bench-lab
bench-lab: tools
	$(GO) test -run '^$$' -bench . -benchmem -timeout $(BENCH_LAB_TIMEOUT) ./test/e2e

## bench-quick: the hot paths only (no lab, no simulation): evaluation, planning, reconcile, the cluster model, the journal
.PHONY: bench-quick
bench-quick: tools
	$(GO) test -run '^$$' -bench . -benchmem $$($(GO) list ./... | grep -v /test/e2e)

## lint: go vet, staticcheck, a gofmt check and a go.mod that go mod tidy would not change
lint: vet staticcheck fmt-check tidy-check

vet:
	$(GO) vet ./...

## staticcheck: the static analyser, pinned in go.mod as a tool (honnef.co/go/tools v0.8.2)
.PHONY: staticcheck tidy-check
staticcheck:
	$(GO) tool staticcheck ./...

tidy-check:
	@out=$$($(GO) mod tidy -diff) || { echo "go.mod or go.sum is not tidy; run 'go mod tidy':"; echo "$$out"; exit 1; }

fmt-check:
	@out=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); \
	if [ -n "$$out" ]; then echo "gofmt needed on:"; echo "$$out"; exit 1; fi

## fmt: format the Go code
fmt:
	gofmt -w $$(git ls-files '*.go')

## tools: install the pinned real components (Nomad, Prometheus, Alertmanager, PostgreSQL, Chromium); check Node.js
tools:
	@bash scripts/tools.sh

## webui: build the console into webui/dist (Node.js ^20.19 or >= 22.12) and stamp it; commit both (see webui/README.md)
webui:
	@bash scripts/tools.sh node
	cd webui && npm ci --no-audit --no-fund && npx tsc --noEmit && npx vite build
	$(GO) test ./webui -count=1 -run '^TestBuildStampMatchesSources$$' -update

clean:
	rm -rf bin
