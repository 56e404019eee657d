# divan — top-level entry points.  CMake does the building; this file only
# names the things people run.  See README.md.
#
#   make            release build in build/ (build/divan)
#   make run        build and start the server, data in ./data
#   make test       every test: unit + property + crash tests under ASan/UBSan,
#                   the same in the release build, HTTP tests, fuzz smoke runs
#   make http-test  HTTP tests (node:test) against build/divan, and against
#                   the ASan build too when it exists
#   make bench      benchmarks (not tests; print tables of ratios); BENCH_STEPS=store|http|views
#   make crash-long long crash/power-loss runs (>= 1000 iterations)
#   make fuzz       run each libFuzzer target for FUZZ_SECONDS (default 60)

JOBS ?= $(shell nproc 2>/dev/null || echo 2)
BUILD ?= build
ASAN_BUILD ?= build-asan
FUZZ_BUILD ?= build-fuzz
FUZZ_SECONDS ?= 60
FUZZ_SMOKE_SECONDS ?= 10
CRASH_ITERATIONS ?= 1000

.PHONY: all deps build run test unit-test asan-test http-test fuzz-build fuzz-smoke fuzz bench crash-long clean

all: build

deps:
	@scripts/deps.sh

$(BUILD)/CMakeCache.txt:
	cmake -S . -B $(BUILD) -DCMAKE_BUILD_TYPE=RelWithDebInfo

build: deps $(BUILD)/CMakeCache.txt
	cmake --build $(BUILD) -j $(JOBS)

# The first run creates the server admin "admin" and prints its password once.
run: build
	./$(BUILD)/divan --data ./data --first-admin admin

$(ASAN_BUILD)/CMakeCache.txt:
	cmake -S . -B $(ASAN_BUILD) -DCMAKE_BUILD_TYPE=Debug -DDIVAN_SANITIZE=ON

asan-test: deps $(ASAN_BUILD)/CMakeCache.txt
	cmake --build $(ASAN_BUILD) -j $(JOBS)
	cd $(ASAN_BUILD) && ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1 \
		ctest --output-on-failure -j $(JOBS)

unit-test: build
	cd $(BUILD) && ctest --output-on-failure -j $(JOBS)

# npm ci when node_modules is missing or older than the manifest or lock.
node_modules/.divan-npm-stamp: package.json package-lock.json
	npm ci --no-audit --no-fund
	mkdir -p node_modules && touch $@

http-test: build node_modules/.divan-npm-stamp
	DIVAN_BIN=$(BUILD)/divan node --test tests/http/
	@if [ -x $(ASAN_BUILD)/divan ]; then \
		echo "http-test: again against $(ASAN_BUILD)/divan"; \
		ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1 \
			DIVAN_BIN=$(ASAN_BUILD)/divan node --test tests/http/; \
	fi

$(FUZZ_BUILD)/CMakeCache.txt:
	CC=clang cmake -S . -B $(FUZZ_BUILD) -DCMAKE_BUILD_TYPE=Debug -DDIVAN_FUZZ=ON

fuzz-build: deps $(FUZZ_BUILD)/CMakeCache.txt
	cmake --build $(FUZZ_BUILD) -j $(JOBS)

# Each fuzz target runs briefly from its seed corpus: it must build, and a
# short run must find nothing.  `make fuzz` runs longer.
fuzz-smoke: fuzz-build
	@scripts/fuzz.sh $(FUZZ_BUILD) $(FUZZ_SMOKE_SECONDS)

fuzz: fuzz-build
	@scripts/fuzz.sh $(FUZZ_BUILD) $(FUZZ_SECONDS)

test: unit-test asan-test http-test fuzz-smoke

bench: build node_modules/.divan-npm-stamp
	@scripts/bench.sh $(BUILD)

crash-long: build
	DIVAN_ITERATIONS=$(CRASH_ITERATIONS) $(BUILD)/tool_crash_kill
	DIVAN_ITERATIONS=$(CRASH_ITERATIONS) $(BUILD)/tool_power_loss

clean:
	rm -rf $(BUILD) $(ASAN_BUILD) $(FUZZ_BUILD)
