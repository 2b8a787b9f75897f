# Funcky: `make run` starts a coordinator with the example host; `make test` runs every test.
# Both install what is missing first (Debian packages, npm packages for the compat test).

BUILD ?= build
JOBS ?= 2
FUNCKY_PORT ?= 8288
HELLO_PORT ?= 3000
STATE ?= .funcky
# Lets ccache hit across clones and checkouts in other folders (paths relative to the
# checkout, and the folder left out of the hash of objects with debug information).
export CCACHE_BASEDIR := $(CURDIR)
export CCACHE_NOHASHDIR := 1

DEB_PACKAGES := g++ cmake ninja-build ccache pkg-config libboost1.81-dev libboost-url1.81-dev \
  libssl-dev openssl prometheus-cpp-dev python3-prometheus-client \
  nlohmann-json3-dev libpq-dev libsqlite3-dev libgtest-dev libgmock-dev libspdlog-dev \
  libcli11-dev postgresql docker-compose curl python3 tzdata chromium

.PHONY: all deps build test sanitize-test run start stop clean format compat-deps bench fuzz

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

compat-deps: deps
	@node -e 'process.exit(Number(process.versions.node.split(".")[0]) >= 20 ? 0 : 1)' || \
	  { echo "Node.js 20 or later is needed (the inngest npm package and playwright-core); this is $$(node --version)" >&2; exit 1; }
	cd tests/compat && npm ci --no-audit --no-fund --loglevel=error

test: build compat-deps
	cd $(BUILD) && ctest -j $(JOBS) --output-on-failure --timeout 300
	@$(MAKE) --no-print-directory sanitize-test
	docker-compose -f docker-compose.yml config -q && echo "docker-compose.yml: valid"

# The unit, store and mid-level tests under AddressSanitizer and UndefinedBehaviorSanitizer,
# and a SIGTERM under load of a sanitizer-built coordinator (part of `make test`).
SAN_BUILD ?= build-sanitize
SAN_TARGETS := unit_tests store_tests funcky
sanitize-test: build
	cmake -S . -B $(SAN_BUILD) -G Ninja -DCMAKE_BUILD_TYPE=Debug -DFUNCKY_SANITIZE=ON >/dev/null
	cmake --build $(SAN_BUILD) -j $(JOBS) --target $(SAN_TARGETS) $$(grep -q 'NAME mid_tests' tests/CMakeLists.txt && echo mid_tests)
	cd $(SAN_BUILD) && ASAN_OPTIONS=detect_leaks=1 UBSAN_OPTIONS=print_stacktrace=1 \
	  ctest -j $(JOBS) -L 'unit|store|mid' --output-on-failure --timeout 300
	FUNCKY_TEST_COORDINATOR_BIN=$(CURDIR)/$(SAN_BUILD)/coordinator/funcky ASAN_OPTIONS=detect_leaks=0 \
	  $(BUILD)/tests/e2e_tests --gtest_filter='RecoveryTest.SigtermUnderLoad*'

# Benchmarks print figures; they are not part of `make test` (see bench/README.md).
# side_by_side.py needs the Node pieces of bench/package-lock.json (npm ci when the lock changes).
bench: build bench/node_modules/.installed
	bench/side_by_side.py --build $(BUILD)
	bench/store_bench.sh claim_backlog $(BUILD)
	bench/store_bench.sh apply_latency $(BUILD)
	bench/store_bench.sh cancel_on $(BUILD)
	bench/list_runs.sh $(BUILD)

# --ignore-scripts: no package needs its install script, and restate-server's would send install
# analytics off the machine.
bench/node_modules/.installed: bench/package.json bench/package-lock.json
	cd bench && npm ci --ignore-scripts --no-audit --no-fund --loglevel=error
	touch $@

# Fuzzes, with libFuzzer (clang), ASan and UBSan, each parser of untrusted input: expressions
# (expr), host replies (ops), event bodies (event_body) and URLs (url). FUZZ_SECONDS is split
# evenly across the targets. Not part of `make test`. Crashes are written to $(BUILD)/fuzz/;
# each seed corpus is fuzz/corpus/<target>/, new inputs go to $(BUILD)/fuzz/corpus/<target>/.
FUZZ_SECONDS ?= 60
FUZZ_TARGETS := expr ops event_body url
FUZZ_FLAGS := -std=c++20 -O1 -g -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined -I.
fuzz_srcs_expr := coordinator/expr/expr.cc common/crypto.cc common/json_parse.cc common/status.cc -lcrypto
fuzz_srcs_ops := common/ops.cc common/json_parse.cc common/status.cc
fuzz_srcs_event_body := coordinator/api/event_body.cc common/json_parse.cc common/status.cc
fuzz_srcs_url := common/url.cc common/status.cc -lboost_url
fuzz: deps
	@command -v clang++ >/dev/null 2>&1 || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends clang; }
	@for t in $(FUZZ_TARGETS); do mkdir -p $(BUILD)/fuzz/corpus/$$t; done
	$(foreach t,$(FUZZ_TARGETS),clang++ $(FUZZ_FLAGS) fuzz/$(t)_fuzz.cc $(fuzz_srcs_$(t)) -o $(BUILD)/fuzz/$(t)_fuzz &&) true
	cd $(BUILD)/fuzz && for t in $(FUZZ_TARGETS); do \
	  ./$${t}_fuzz -max_total_time=$$(( $(FUZZ_SECONDS) / $(words $(FUZZ_TARGETS)) )) -max_len=4200 \
	    -print_final_stats=1 -artifact_prefix=$$t- corpus/$$t $(CURDIR)/fuzz/corpus/$$t || exit 1; \
	done

# `funcky dev` (SQLite under .funcky/, no database server) and the hello host.
run: build
	@$(MAKE) --no-print-directory start

# What `make run` does after building; tests/make_run_test.sh runs it with its own ports.
# Refuses to start over a running one (its pid files would be overwritten, and `make stop`
# would stop nothing), and fails, with the log, when the coordinator or the host did not come up.
start:
	@mkdir -p $(STATE)
	@for f in funcky hello; do \
	  if [ -f $(STATE)/$$f.pid ] && kill -0 $$(cat $(STATE)/$$f.pid) 2>/dev/null; then \
	    echo "$$f is already running (pid $$(cat $(STATE)/$$f.pid)); run make stop first" >&2; exit 1; \
	  fi; \
	done
	@for p in $(FUNCKY_PORT) $(HELLO_PORT); do \
	  curl -s -o /dev/null --max-time 2 http://127.0.0.1:$$p/; \
	  if [ $$? -ne 7 ]; then echo "port $$p on 127.0.0.1 is in use (FUNCKY_PORT=… HELLO_PORT=… choose others)" >&2; exit 1; fi; \
	done
	@$(BUILD)/coordinator/funcky dev --db $(STATE)/dev.db --port $(FUNCKY_PORT) > $(STATE)/funcky.log 2>&1 & echo $$! > $(STATE)/funcky.pid
	@for i in $$(seq 1 100); do curl -sf http://127.0.0.1:$(FUNCKY_PORT)/healthz >/dev/null && break; sleep 0.1; done
	@kill -0 $$(cat $(STATE)/funcky.pid) 2>/dev/null && curl -sf http://127.0.0.1:$(FUNCKY_PORT)/healthz >/dev/null || \
	  { echo "the coordinator did not start; its log ($(STATE)/funcky.log):" >&2; tail -n 20 $(STATE)/funcky.log >&2; \
	    kill $$(cat $(STATE)/funcky.pid) 2>/dev/null; rm -f $(STATE)/funcky.pid; exit 1; }
	@$(BUILD)/examples/hello --coordinator http://127.0.0.1:$(FUNCKY_PORT) --port $(HELLO_PORT) > $(STATE)/hello.log 2>&1 & echo $$! > $(STATE)/hello.pid
	@for i in $$(seq 1 100); do grep -q "serving" $(STATE)/hello.log 2>/dev/null && break; sleep 0.1; done
	@kill -0 $$(cat $(STATE)/hello.pid) 2>/dev/null && grep -q "serving" $(STATE)/hello.log || \
	  { echo "the example host did not start; its log ($(STATE)/hello.log):" >&2; tail -n 20 $(STATE)/hello.log >&2; \
	    $(MAKE) --no-print-directory stop; exit 1; }
	@echo
	@echo "Funcky is running (funcky dev: SQLite in $(STATE)/dev.db; logs in $(STATE)/):"
	@echo "  dashboard:          http://127.0.0.1:$(FUNCKY_PORT)/   (API: /v1/runs, /v1/events, /v1/lanes)"
	@echo "  example host:       http://127.0.0.1:$(HELLO_PORT)/api/funcky"
	@echo
	@echo "Send an event:"
	@echo "  curl -X POST http://127.0.0.1:$(FUNCKY_PORT)/e/dev -d '{\"name\":\"demo/hello\",\"data\":{\"name\":\"Ada\"}}'"
	@echo "See the run:"
	@echo "  curl http://127.0.0.1:$(FUNCKY_PORT)/v1/runs"
	@echo
	@echo "Stop everything with: make stop"

stop:
	@for f in hello funcky; do [ -f $(STATE)/$$f.pid ] && kill $$(cat $(STATE)/$$f.pid) 2>/dev/null; rm -f $(STATE)/$$f.pid; done; true

format:
	clang-format -i $$(git ls-files '*.cc' '*.h')

clean:
	rm -rf $(BUILD) $(SAN_BUILD)
