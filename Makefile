# MOEX streaming analytics — `make up` runs the platform, `make test` proves it.
SHELL := /bin/bash
.DEFAULT_GOAL := help

PY      := .venv/bin/python
# The `moex` command (moex/cli.py) of this checkout. `make venv` also installs it as .venv/bin/moex
# (editable); the targets run it as `python -m moex` so that a .venv shared by several checkouts
# (worktrees) still runs each checkout's own code: the script would run whichever was installed.
MOEX    := $(PY) -m moex
VENV    := .venv/.installed
JARS    := .cache/jars/.installed
CHROMIUM := /usr/bin/chromium

export PYTHONDONTWRITEBYTECODE := 1

.PHONY: help
help: ## Show this help
	@awk 'BEGIN {FS = ":.*## "} /^[a-zA-Z_-]+:.*## / {printf "  \033[36m%-12s\033[0m %s\n", $$1, $$2}' $(MAKEFILE_LIST)

$(VENV): requirements.txt requirements-dev.txt
	python3 -m venv .venv
	.venv/bin/pip install -q --upgrade pip
	.venv/bin/pip install -q -r requirements-dev.txt
	@# The project itself, editable, for the `moex` command; its pins came with the line above.
	.venv/bin/pip install -q -e . --no-deps
	@touch $@

$(JARS): jvm/pom.xml
	mvn -q -B -f jvm/pom.xml generate-resources
	@touch $@

.PHONY: venv
venv: $(VENV) ## Create .venv with the pinned Python packages

.PHONY: jars
jars: $(JARS) ## Fetch Kafka and the Flink Kafka connector from Maven Central into .cache/jars

$(CHROMIUM):
	apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium

.PHONY: chromium
chromium: $(CHROMIUM) ## Install Debian's Chromium (for the browser tests)

.PHONY: up
up: $(VENV) $(JARS) ## Run everything: Kafka, the Flink job, the producer, the gateway (Ctrl-C stops; WATCH=1 reloads on save)
	$(MOEX) up $(if $(filter-out 0,$(WATCH)),--watch)

.PHONY: down
down: ## Stop whatever `make up` started
	@$(MOEX) down

.PHONY: logs
logs: ## Follow the logs of every component
	@mkdir -p .run/logs && tail -n 20 -F .run/logs/*.log

TOPIC ?= moex.trades
N ?= 5
.PHONY: consume
consume: $(JARS) ## Print N records of a topic, read_committed: make consume TOPIC=moex.candles_1m N=3
	@java -Xmx256m -Dlog4j2.configurationFile=stack/tools-log4j2.yaml -cp '.cache/jars/kafka/*' \
		org.apache.kafka.tools.consumer.ConsoleConsumer --bootstrap-server $${KAFKA_BOOTSTRAP:-127.0.0.1:9092} \
		--topic $(TOPIC) --from-beginning --max-messages $(N) --isolation-level read_committed \
		--property print.key=true --property key.separator=' | '

.PHONY: status
status: ## What `make up` runs, with resident memory per component
	@$(MOEX) status

.PHONY: reload
reload: $(VENV) ## Validate edited sql/ files, then resubmit the running job from a savepoint
	$(MOEX) reload

.PHONY: test
test: $(VENV) $(JARS) $(CHROMIUM) ## Run the whole test suite (real Kafka, Flink MiniCluster, Chromium)
	$(PY) -m pytest

.PHONY: test-faults
test-faults: $(VENV) $(JARS) ## Fault-injection tests: job kills, broker restart, producer crash, hostile input, the 3-broker cluster (~25 min)
	MOEX_FAULT_TESTS=1 $(PY) -m pytest tests/test_faults_*.py

.PHONY: bench
bench: $(VENV) $(JARS) ## Measure throughput and latency; results in bench-results/
	$(MOEX) bench

.PHONY: lint
lint: $(VENV) ## Fix formatting and lint findings
	.venv/bin/ruff format .
	.venv/bin/ruff check --fix .

.PHONY: check
check: $(VENV) ## Lint, format check and SQL validation; changes nothing
	.venv/bin/ruff format --check .
	.venv/bin/ruff check .
	$(MOEX) check

.PHONY: demo
demo: $(VENV) $(JARS) ## Replay a seeded synthetic session through every output into .run/demo/, and backtest every strategy
	$(MOEX) produce synthetic --seed 7 --max-events 60000 --out .run/demo
	$(MOEX) replay --trades .run/demo/trades.jsonl --orderbook .run/demo/orderbook.jsonl \
		--status .run/demo/market_status.jsonl --out .run/demo/out
	@# The session above lasts 11 minutes: too short for indicators that warm up over 15-27
	@# candles. The backtest gets the same seed over 3 tickers for about 90 minutes.
	$(MOEX) produce synthetic --seed 7 --tickers SBER,LKOH,SNGS --max-events 300000 --out .run/demo/backtest
	$(MOEX) backtest --strategy all --trades .run/demo/backtest/trades.jsonl \
		--out .run/demo/backtest/out

.PHONY: warm
warm: $(VENV) $(JARS) ## Keep one JVM warm: replays and backtests of <= 100 K trades then run in it and start in seconds (Ctrl-C stops)
	$(MOEX) warm

.PHONY: up-cluster
up-cluster: $(VENV) $(JARS) ## Scale-out, no Docker: 3 Kafka brokers (RF 3), Flink JobManager + 2 TaskManagers, job at parallelism 2
	$(MOEX) cluster

.PHONY: sql
sql: $(VENV) $(JARS) ## Flink's SQL client on the running cluster, sql/'s tables declared: SELECT * FROM candles_1m WHERE ticker = 'SBER';
	@$(MOEX) sql

.PHONY: up-compose
up-compose: ## The same cluster in Docker containers (needs a Docker engine; see compose/)
	docker compose -f compose/docker-compose.yml up -d --build

SITE ?= .run/site
.PHONY: docs
docs: $(VENV) ## Build README.md + docs/ into a static site (SITE=.run/site; open its index.html)
	@rm -rf .run/docs-src && mkdir -p .run/docs-src && cp -r docs/. .run/docs-src/
	@sed -e 's#](docs/#](#g' README.md > .run/docs-src/index.md
	.venv/bin/mkdocs build -q -f mkdocs.yml -d $(abspath $(SITE))
	@echo "docs: $(SITE)/index.html"

.PHONY: clean
clean: ## Remove generated state (.run/); keeps the venv and jars
	rm -rf .run
