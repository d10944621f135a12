# tollgate — `make help` lists the targets.
GO        ?= go
BIN       := bin/tollgate
DATA_DIR  ?= ./tollgate-data
BENCHTIME ?= 1s

.DEFAULT_GOAL := help

CONSOLE_KEYS ?= 1000
CONSOLE_DAYS ?= 31

.PHONY: help
help: ## List the targets
	@awk 'BEGIN{FS=":.*## "} /^[a-zA-Z_-]+:.*## /{printf "  %-14s %s\n", $$1, $$2}' $(MAKEFILE_LIST)

.PHONY: build
build: ## Build bin/tollgate
	$(GO) build -o $(BIN) ./cmd/tollgate

.PHONY: run
run: build ## Serve examples/tollgate.yaml with the demo upstream (gateway :8080, admin :8081)
	$(BIN) serve --config examples/tollgate.yaml --data-dir $(DATA_DIR) --demo-upstream 127.0.0.1:9080

.PHONY: test
# The latency targets (freshness of ClickHouse's reports, quota signals)
# are measured on their own, after the rest: run beside other packages'
# tests on 2 cores they measure the CPU contention, not the pipeline.
LATENCY_TESTS := TestFreshnessAndSignalLatency
# The end-to-end tests of the gateway listener that make test runs again
# on the net/http data plane (the default is fasthttp).
GATEWAY_E2E_TESTS := TestSIGTERMFlushesEveryEvent|TestEnforcerKilledReplaysItsSpillLog|TestServeAppliesEdgeLimits|TestServeFloodIsStoredPerMinute|TestServeMetersAndSurvivesRestart|TestAdminAPIChangesReachTheGateway|TestArticleWorkflowWithAWSCLI|TestFleetQuotaOvershootUnder1Percent|TestFleetServesThroughABrokerOutage

test: ## Run every test (vet included)
	$(GO) vet ./...
	$(GO) test -count=1 -timeout 10m -skip '^($(LATENCY_TESTS))$$' ./...
	$(GO) test -count=1 -timeout 5m -run '^($(LATENCY_TESTS))$$' ./aggregator
	TOLLGATE_TEST_DATA_PLANE=net/http $(GO) test -count=1 -timeout 5m ./enforcer
	TOLLGATE_TEST_DATA_PLANE=net/http $(GO) test -count=1 -timeout 5m -run '^($(GATEWAY_E2E_TESTS))$$' ./cmd/tollgate

.PHONY: bench
bench: ## Run the Go benchmarks of the hot paths
	$(GO) test -run '^$$' -bench . -benchmem -benchtime $(BENCHTIME) ./...

.PHONY: loadtest
# 13 sides at 64 connections and 6 paced, 5 rounds each: about 10 minutes.
# Five, not three: this machine's speed drifts by a third between rounds,
# and the targets are medians of per-round ratios (BENCHMARKS.md).
loadtest: build ## Load test: tollgate (both data planes) vs nginx, bare Go proxies and the direct upstream, same run (needs /usr/sbin/nginx: apt-get install nginx-light)
	$(GO) build -o bin/loadtest ./cmd/loadtest
	bin/loadtest run --tollgate $(BIN) --rounds 5 --duration 5s --warmup 1s --paced-duration 4s --out bin/loadtest.md

.PHONY: bench-scale
bench-scale: build ## Scale benchmark: catalogs of 10k, 100k and 1M keys, each figure beside its target (SCALE_FLAGS="--sizes 2000,10000")
	$(GO) build -o bin/scalebench ./cmd/scalebench
	bin/scalebench --tollgate $(BIN) --out bin/scalebench.md $(SCALE_FLAGS)

.PHONY: bench-history
bench-history: build ## Report benchmark: a month of 10k keys' history (104M events) in ClickHouse, reports timed against issue #12's targets (HISTORY_FLAGS="--keys 200 --days 2", "--reuse")
	$(GO) build -o bin/historybench ./cmd/historybench
	bin/historybench --tollgate $(BIN) --out bin/historybench.md $(HISTORY_FLAGS)

.PHONY: bench-console
bench-console: ## Console speed: every page on 1,000 keys × 31 days in the embedded store, each against 300 ms (CONSOLE_KEYS, CONSOLE_DAYS)
	TOLLGATE_CONSOLE_KEYS=$(CONSOLE_KEYS) TOLLGATE_CONSOLE_DAYS=$(CONSOLE_DAYS) $(GO) test -count=1 -run TestConsoleSpeed -v -timeout 30m ./console

.PHONY: bench-fleet-throttle
bench-fleet-throttle: ## A key's throttle across 3 enforcers and an aggregator (ClickHouse, TOLLGATE_CLICKHOUSE_DSN): even, skewed, moving traffic, an aggregator outage, and undivided throttles alongside
	TOLLGATE_FLEET_THROTTLE=1 $(GO) test -count=1 -run TestFleetThrottleMeasured -v -timeout 20m ./cmd/tollgate

.PHONY: screenshots
screenshots: ## Redraw docs/console-overview.png and docs/console-key.png (needs chromium)
	mkdir -p docs
	TOLLGATE_REQUIRE_CHROMIUM=1 TOLLGATE_SCREENSHOTS=$(CURDIR)/docs $(GO) test -count=1 -run TestConsoleInABrowser ./console

.PHONY: up
up: ## Run the whole fleet in Docker (Kafka, ClickHouse, aggregator, report API, two enforcers on :8080)
	docker compose up -d --build

.PHONY: down
down: ## Stop the fleet and remove its volumes
	docker compose down -v

.PHONY: fmt
fmt: ## gofmt the tree
	gofmt -w $$(git ls-files '*.go')

.PHONY: clean
clean: ## Remove build output and the default data folder
	rm -rf bin $(DATA_DIR)
