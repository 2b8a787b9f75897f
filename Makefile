# Funcky: `make run` starts a coordinator with the example host; `make test` runs every test.
# Both install what is missing first (Debian packages, npm packages for the compat test).

BUILD ?= build
JOBS ?= 2
FUNCKY_PORT ?= 8288
HELLO_PORT ?= 3000
PG_PORT ?= 55432
STATE := .funcky
# Lets ccache hit across clones and checkouts in other folders.
export CCACHE_BASEDIR := $(CURDIR)

DEB_PACKAGES := g++ cmake ninja-build ccache pkg-config libboost1.81-dev libssl-dev \
  nlohmann-json3-dev libpqxx-dev libsqlite3-dev libgtest-dev libgmock-dev libspdlog-dev \
  libcli11-dev postgresql docker-compose

.PHONY: all deps build test run stop clean format compat-deps bench

all: build

# Installs the Debian packages that are missing (needs root, as on CI and dev machines here).
deps:
	@missing=$$(for p in $(DEB_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || echo $$p; done); \
	command -v npm >/dev/null 2>&1 || missing="$$missing nodejs npm"; \
	if [ -n "$$missing" ]; then \
	  echo "installing: $$missing"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing; \
	fi

build: deps
	cmake -S . -B $(BUILD) -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
	cmake --build $(BUILD) -j $(JOBS)

compat-deps:
	cd tests/compat && npm ci --no-audit --no-fund --loglevel=error

test: build compat-deps
	cd $(BUILD) && ctest -j $(JOBS) --output-on-failure --timeout 300
	docker-compose -f docker-compose.yml config -q && echo "docker-compose.yml: valid"

# Benchmarks print figures; they are not part of `make test` (see bench/README.md).
bench: build
	bench/claim_backlog.sh $(BUILD)

# A private PostgreSQL cluster under .funcky/, the coordinator and the hello host.
run: build
	@mkdir -p $(STATE)
	@db=$$(scripts/pg.sh start $(STATE)/pg $(PG_PORT)) && \
	$(BUILD)/coordinator/funcky serve --db "$$db" --port $(FUNCKY_PORT) > $(STATE)/funcky.log 2>&1 & echo $$! > $(STATE)/funcky.pid; \
	sleep 1; \
	$(BUILD)/examples/hello --coordinator http://127.0.0.1:$(FUNCKY_PORT) --port $(HELLO_PORT) > $(STATE)/hello.log 2>&1 & echo $$! > $(STATE)/hello.pid; \
	sleep 1; \
	echo; \
	echo "Funcky is running (logs in $(STATE)/):"; \
	echo "  coordinator + API:  http://127.0.0.1:$(FUNCKY_PORT)/   (runs: /v1/runs, events: /v1/events)"; \
	echo "  example host:       http://127.0.0.1:$(HELLO_PORT)/api/funcky"; \
	echo; \
	echo "Send an event:"; \
	echo "  curl -X POST http://127.0.0.1:$(FUNCKY_PORT)/e/dev -d '{\"name\":\"demo/hello\",\"data\":{\"name\":\"Ada\"}}'"; \
	echo "See the run:"; \
	echo "  curl http://127.0.0.1:$(FUNCKY_PORT)/v1/runs"; \
	echo; \
	echo "Stop everything with: make stop"

stop:
	@for f in hello funcky; do [ -f $(STATE)/$$f.pid ] && kill $$(cat $(STATE)/$$f.pid) 2>/dev/null; rm -f $(STATE)/$$f.pid; done; true
	@scripts/pg.sh stop $(STATE)/pg

format:
	clang-format -i $$(git ls-files '*.cc' '*.h')

clean:
	rm -rf $(BUILD)
