# subgate: Kong plugins in Go. `make help` lists the targets.
SHELL   := bash
GO      ?= go
PLUGINS := $(notdir $(wildcard plugins/*))
BIN     := $(CURDIR)/bin
# Executions per fuzz target: `make fuzz` runs FUZZTIME, `make test` (CI) the
# short CI_FUZZTIME. A count, not a duration: a -fuzztime duration races the
# fuzz coordinator's deadline in Go 1.26 (golang/go#75804, fixed in 1.27) and
# fails with "context deadline exceeded" on a loaded machine.
FUZZTIME ?= 300000x
CI_FUZZTIME ?= 20000x
STATICCHECK ?= honnef.co/go/tools/cmd/staticcheck@v0.8.2

.PHONY: help build test lint validate readme fuzz bench bench-kong bench-memory capacity soak demo demo-docker docker-validate k8s-validate clean

help:
	@echo "build        build every plugin binary into bin/ (named as the plugin)"
	@echo "test         everything CI runs: lint, unit and integration tests, end-to-end specs, short fuzzing"
	@echo "lint         gofmt, go vet, go mod tidy -diff, staticcheck (pinned, via go run)"
	@echo "validate     check kong/kong.yml as Kong would at load (and kong config parse, with a Kong), and each plugin config with its binary's -check"
	@echo "readme       regenerate the READMEs' generated tables (codes; each plugin's config, codes, PDK calls)"
	@echo "fuzz         every Go fuzz target for FUZZTIME executions each (default 300000x; CI runs 20000x)"
	@echo "bench        Go benchmarks (see README for the figures)"
	@echo "bench-kong   the coaching route through a real Kong, side by side: no plugin, empty plugin, floor, chain, subgate (BASE=rev adds that revision's subgate)"
	@echo "bench-memory Redis memory per ownership pair, 1,000,000 pairs in a real redis-server"
	@echo "capacity     10,000,000 ownership pairs through the writer: pairs/s and bytes per pair (CLUSTER=1: a cluster)"
	@echo "soak         the chain and subgate under steady load with a fault a minute (SOAK=10m), resources once a minute"
	@echo "demo         the local demo (no Docker needed)"
	@echo "demo-docker  the docker-compose demo with a real Kong (needs a Docker engine)"
	@echo "docker-validate  check the compose file, Dockerfiles and Kong settings without Docker"
	@echo "k8s-validate check the Kubernetes deployment (docker/k8s) offline: chart render, schemas, wiring, plugin configs"

build:
	@mkdir -p $(BIN)
	@for p in $(PLUGINS); do $(GO) build -trimpath -o $(BIN)/$$p ./plugins/$$p || exit 1; done
	@$(GO) build -trimpath -o $(BIN)/subgate-pluginservers ./docker/subgate-pluginservers
	@echo "built: $(PLUGINS) subgate-pluginservers -> $(BIN)"

lint:
	@out=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); \
	  if [ -n "$$out" ]; then echo "gofmt would change:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...
	$(GO) mod tidy -diff
	$(GO) run $(STATICCHECK) ./...

# Unit and integration tests, with the race detector. Integration tests start
# their own redis-server; SUBGATE_REQUIRE_REDIS=1 makes a missing one a
# failure instead of a skip. The specs drive the binaries built into bin/.
test: lint build
	SUBGATE_REQUIRE_REDIS=1 SUBGATE_BIN=$(BIN) $(GO) test -race -count=1 ./...
	$(MAKE) --no-print-directory validate
	$(MAKE) --no-print-directory fuzz FUZZTIME=$(CI_FUZZTIME)
	bash docker/validate.sh
	$(MAKE) --no-print-directory k8s-validate

# Validates kong/kong.yml with the schemas the built binaries print (-dump),
# as Kong does at load, plus subgate's own rules, each plugin config through
# its binary's -check (the plugin's own start-time validation) and, where a
# Kong is found, `kong config parse` (spec/validate).
validate: build
	$(GO) run ./spec/validate -bin $(BIN) -kong auto kong/kong.yml

# Each Fuzz target in turn. Seed corpora live in each package's
# testdata/fuzz/<Target> (plain `go test` runs them too); what a run finds
# interesting stays in $(go env GOCACHE)/fuzz, a crasher lands in testdata.
fuzz:
	@for t in $$(grep -rl --include='*_test.go' '^func Fuzz' pkg plugins | xargs -n1 dirname | sort -u); do \
	  for f in $$(grep -ho '^func Fuzz[A-Za-z0-9_]*' $$t/*_test.go | sed 's/^func //'); do \
	    echo "fuzz $$t $$f ($(FUZZTIME))"; \
	    $(GO) test -run='^$$' -fuzz="^$$f$$" -fuzztime=$(FUZZTIME) ./$$t || exit 1; \
	  done; done

bench: build
	SUBGATE_BIN=$(BIN) $(GO) test -run='^$$' -bench=. -benchmem ./...

# The coaching route through a real Kong 3.9.3 (spec/realkong; KONG= to
# choose one), the plugin servers supervised as shipped: no plugin, an empty
# Go plugin, the exact floor, the chain and subgate, interleaved rounds at
# concurrency 1, 8 and 32 with worker_processes 1 and 2; p50, p99, req/s,
# CPU per request, and their ratios (docs/benchmarks.md). BASE=<git rev>
# measures that revision's subgate beside this one; ROUNDS, DURATION
# (per cell and round) and BENCH_FLAGS (e.g. -pprof 127.0.0.1:6060) tune it.
# Not part of `test`: it takes ~10 minutes and wants a quiet machine.
bench-kong: build
	$(GO) run ./spec/benchkong -bin $(BIN) -rounds $${ROUNDS:-3} -duration $${DURATION:-2s} $${BASE:+-base $$BASE} $(BENCH_FLAGS)

# Loads 1,000,000 pairs under layout v1 and under the naive layout into a
# real redis-server and prints bytes per pair (slow; not part of `test`).
bench-memory:
	SUBGATE_REQUIRE_REDIS=1 SUBGATE_MEMORY_NAIVE=1 SUBGATE_MEMORY_PAIRS=$${PAIRS:-1000000} $(GO) test -count=1 -run '^TestMemoryPerPair$$' -v ./pkg/ownership

# Capacity (issue 16 section 3): 10,000,000 pairs through the writer
# (Store.Import, pipelined) into a real redis-server: pairs per second, and
# bytes per pair from INFO memory and MEMORY USAGE of sampled buckets (goal
# 22 or fewer). PAIRS=N to change the count, CLUSTER=1 for a Redis Cluster.
capacity:
	SUBGATE_REQUIRE_REDIS=1 SUBGATE_MEMORY_CLUSTER=$${CLUSTER:-0} SUBGATE_MEMORY_PAIRS=$${PAIRS:-10000000} $(GO) test -count=1 -timeout 30m -run '^TestMemoryPerPair$$' -v ./pkg/ownership

# Soak (issue 16 section 3): the chain and subgate at a steady rate
# (SOAK_RATE, default 100 requests/s) for SOAK (default 10m) with a fault a
# minute, resources per plugin server once a minute (spec/soak_test.go);
# CLUSTER=1 on a 3+3 Redis Cluster. `make test` runs the same test for 60 s.
soak: build
	SUBGATE_REQUIRE_REDIS=1 SUBGATE_BIN=$(BIN) SOAK=$${SOAK:-10m} SOAK_CLUSTER=$${CLUSTER:-0} $(GO) test -count=1 -timeout 0 -run '^TestSoak$$' -v ./spec

# The local demo: Redis (redis-server, or an embedded miniredis when it is not
# installed), the plugin servers, demo services and a local gateway on :8000.
demo: build
	$(GO) run ./spec/demo -bin $(BIN) -kong kong/kong.yml

# Regenerates the generated README tables: the codes (pkg/denial), each
# plugin's config and codes (spec) and PDK calls (its own tests).
readme:
	SUBGATE_UPDATE_README=1 $(GO) test -count=1 -run '^(TestReadmeTable|TestREADMEConfigTablesAreGenerated|TestReadmePDKCalls)$$' ./pkg/denial ./spec ./plugins/...

demo-docker:
	SUBGATE_REVISION=$$(git rev-parse HEAD 2>/dev/null || echo unknown) docker compose -f docker/docker-compose.yml up --build

docker-validate:
	bash docker/validate.sh

# The Kubernetes deployment, offline (docker/k8s: a Go module of its own, so
# that Helm and the Kubernetes libraries stay out of go.mod): Kong's chart
# (../shared/k8s/kong-chart) rendered with the values, every object and
# manifest against Kubernetes' types and the chart's CRDs, the Kong pod's
# plugin-server wiring, each plugin config with spec/validate. The tests
# break each check on a copy of the files.
k8s-validate: build
	cd docker/k8s && $(GO) vet ./... && $(GO) mod tidy -diff && $(GO) run $(STATICCHECK) ./... && \
	  SUBGATE_BIN=$(BIN) $(GO) test -count=1 ./... && $(GO) run . -repo $(CURDIR) -bin $(BIN)

clean:
	rm -rf $(BIN)
