# kho — the two commands a new user needs are `make run` and `make test`.
SHELL := /bin/bash
GO    ?= go
BIN   := bin
KHO   := $(BIN)/kho
VERSION ?= $(shell git describe --always --dirty 2>/dev/null || echo dev)

# Integration tests share one stack; keep package runs from stepping on each
# other's MinIO and Vault too hard on 2 cores.
TEST_FLAGS ?= -count=1 -timeout 30m

.PHONY: run test test-faults build up down status lint fmt vet bench clean

build:
	@mkdir -p $(BIN)
	$(GO) build -ldflags "-X main.version=$(VERSION)" -o $(BIN)/kho ./cmd/kho
	$(GO) build -ldflags "-X main.version=$(VERSION)" -o $(BIN)/khod ./cmd/khod

## run: start the stack, migrate, seed the demo data, run khod in the foreground
run: build
	$(KHO) dev up
	$(KHO) migrate
	$(KHO) demo seed
	$(KHO) dev khod

## test: start the stack (or reuse it), check formatting and vet, run every test
# Every test is listed by name; a skipped test fails the run, since an
# integration test that did not reach the real servers proves nothing.
test: build lint
	./scripts/ensure-tools
	$(KHO) dev up
	$(KHO) dev status
	@mkdir -p .kho
	set -o pipefail; $(GO) test -v $(TEST_FLAGS) ./... 2>&1 | tee .kho/test.log | grep -Ev '^=== (RUN|PAUSE|CONT|NAME)'
	@if grep -q -- '--- SKIP' .kho/test.log; then echo "skipped tests are not allowed:"; grep -- '--- SKIP' .kho/test.log; exit 1; fi
	@echo "all tests passed: $$(grep -c -- '--- PASS' .kho/test.log) tests and subtests, none skipped"

## test-faults: break a kho of its own (PostgreSQL, MinIO, Vault and khod in
## a folder and on ports of their own, stopped at the end; first the cluster
## profile under clients' load, then one node of each) while it works, and
## check after each fault that nothing acknowledged was lost, half-written,
## duplicated or falsely reported as tampered with; prints how long each fault
## took to be seen and to be over.
test-faults: build
	./scripts/ensure-tools
	@mkdir -p .kho
	set -o pipefail; $(GO) test -tags faults -v -count=1 -timeout 25m ./faults/ 2>&1 | tee .kho/test-faults.log | grep -Ev '^=== (RUN|PAUSE|CONT|NAME)'
	@if grep -q -- '--- SKIP' .kho/test-faults.log; then echo "skipped fault tests are not allowed"; exit 1; fi

up: build
	$(KHO) dev up

down: build
	$(KHO) dev down

status: build
	$(KHO) dev status

lint: fmt vet

fmt:
	@out="$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go' -not -path './.kho/*'))"; \
	if [ -n "$$out" ]; then echo "gofmt needed on:"; echo "$$out"; exit 1; fi

vet:
	$(GO) vet ./...

## bench: the Go benchmarks of the hot paths in benchstat's format
## (.kho/bench/go-bench.txt), then kho beside raw MinIO and MinIO's own
## encryption, end to end over HTTP (table on the terminal;
## .kho/bench/bench.json, bench.svg, bench.md). About 5 minutes on 2 cores
## once the ten million documents of the listing benchmark are loaded (the
## first run loads them, about 20 minutes more, into schema kho_bench_list).
BENCH_GO ?= Record8Writers|PolicyDecision|ConsentDecision|SignPDF1MiB|DecryptStream|ListTenMillion
bench: build
	$(KHO) dev up
	$(KHO) migrate
	$(KHO) demo seed
	@mkdir -p .kho/bench
	set -o pipefail; $(GO) test -run '^$$' -bench '$(BENCH_GO)' -benchmem -timeout 60m ./audit ./consent ./signing ./storage | tee .kho/bench/go-bench.txt
	$(KHO) bench

clean:
	rm -rf $(BIN)
