# nodedns - node-local caching DNS resolver for Kubernetes.
#
#   make          build build/nodedns
#   make run      install what is missing, build, serve the demo cluster on 127.0.0.1:5353
#   make test     everything CI runs: unit, integration, sanitizers, valgrind
#   make bench    the performance table against the peers (bench/)

CC      ?= cc
PKGS    := ldns libuv libcurl jansson yaml-0.1 libcap libmnl
CFLAGS  ?= -O2 -g
# The project's own flags stay even when CFLAGS is given on the command line.
NDNS_CFLAGS := -std=c11 -Wall -Wextra -Werror -D_GNU_SOURCE -Iinclude $(shell pkg-config --cflags $(PKGS) 2>/dev/null)
NDNS_LIBS   := $(shell pkg-config --libs $(PKGS) 2>/dev/null) -lpthread -lm
BUILD   ?= build

SRCS    := $(wildcard src/*.c)
OBJS    := $(SRCS:src/%.c=$(BUILD)/obj/%.o)
LIBOBJS := $(filter-out $(BUILD)/obj/main.o,$(OBJS))

# Unit tests: tests/unit/test_<name>.c, each linked with exactly the modules
# it needs (TEST_MODS_<name>), which keeps the pure modules free of I/O.
UNIT_TESTS := $(patsubst tests/unit/test_%.c,%,$(wildcard tests/unit/test_*.c))
TEST_MODS_cache   := cache
TEST_MODS_config  := config log
TEST_MODS_dnsmsg  := dnsmsg log
TEST_MODS_cluster := k8s_store cluster_snapshot cluster_zone log
TEST_MODS_metrics := metrics
TEST_MODS_upstream := upstream dnsmsg metrics log
TEST_MODS_k8s_stream := k8s_stream
TEST_MODS_k8s_kubeconfig := k8s_kubeconfig
TEST_MODS_admin := admin metrics log
TEST_MODS_netsetup := netsetup metrics log
TEST_MODS_query := query dnsmsg cache k8s_store cluster_snapshot cluster_zone log
TEST_BINS := $(UNIT_TESTS:%=$(BUILD)/tests/test_%)

.PHONY: all run test unit integration soak-ci node watch watch-asan asan valgrind deps deps-test bench fuzz fuzz-short clean

all: $(BUILD)/nodedns

$(BUILD)/obj/%.o: src/%.c $(wildcard include/nodedns/*.h) $(wildcard src/*.h)
	@mkdir -p $(dir $@)
	$(CC) $(NDNS_CFLAGS) $(CFLAGS) -c -o $@ $<

$(BUILD)/nodedns: $(OBJS)
	$(CC) $(NDNS_CFLAGS) $(CFLAGS) $(LDFLAGS) -o $@ $^ $(NDNS_LIBS) $(LDLIBS)

.SECONDEXPANSION:
$(BUILD)/tests/test_%: tests/unit/test_%.c $$(addprefix $(BUILD)/obj/,$$(addsuffix .o,$$(TEST_MODS_$$*)))
	@mkdir -p $(dir $@)
	$(CC) $(NDNS_CFLAGS) $(CFLAGS) $(LDFLAGS) -Isrc -o $@ $^ $(NDNS_LIBS) $(LDLIBS) -lcmocka

deps:
	@scripts/deps.sh build

deps-test:
	@scripts/deps.sh test

unit: $(TEST_BINS)
	@scripts/run-unit.sh $(TEST_BINS)

integration: $(BUILD)/nodedns
	@NODEDNS_BIN=$(BUILD)/nodedns python3 tests/integration/run.py
	@NODEDNS_BIN=$(BUILD)/nodedns python3 tests/integration/cluster_e2e.py
	@NODEDNS_BIN=$(BUILD)/nodedns python3 tests/integration/faults.py

# 30 s of mixed load with API churn and upstream restarts (bench/soak.sh runs 10 min).
soak-ci: $(BUILD)/nodedns
	@NODEDNS_BIN=$(BUILD)/nodedns bench/soak.sh --ci

# Node setup and safe restarts end to end, as root, in network namespaces
# (tests/node/): interface, iptables, kill -9, rolling-update handover.
node: $(BUILD)/nodedns
	@NODEDNS_BIN=$(BUILD)/nodedns python3 tests/node/run.py
	@NODEDNS_BIN=$(BUILD)/nodedns python3 tests/node/pods_e2e.py

# The list+watch client against the API server stand-in (tests/apiserver/).
watch:
	@tests/apiserver/build_driver.sh plain $(BUILD)/apiserver
	@tests/apiserver/build_driver.sh real $(BUILD)/apiserver
	@python3 tests/apiserver/test_watch.py --driver $(BUILD)/apiserver/watch_driver \
		--real-driver $(BUILD)/apiserver/watch_driver_real

watch-asan:
	@tests/apiserver/build_driver.sh asan $(BUILD)/apiserver
	@tests/apiserver/build_driver.sh real $(BUILD)/apiserver
	@python3 tests/apiserver/test_watch.py --driver $(BUILD)/apiserver/watch_driver_asan \
		--real-driver $(BUILD)/apiserver/watch_driver_real

# The same suites, built with AddressSanitizer + UndefinedBehaviorSanitizer.
asan:
	@$(MAKE) --no-print-directory BUILD=build-asan \
		CFLAGS="-O1 -g -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=all" \
		LDFLAGS="-fsanitize=address,undefined" build-asan/nodedns unit integration watch-asan

valgrind: $(TEST_BINS)
	@VALGRIND=1 scripts/run-unit.sh $(TEST_BINS)

test: deps-test
	@$(MAKE) --no-print-directory all
	@/usr/bin/python3 tests/deploy/check_manifests.py  # Debian's python3 has python3-yaml
	@$(MAKE) --no-print-directory unit
	@$(MAKE) --no-print-directory integration
	@$(MAKE) --no-print-directory watch
	@$(MAKE) --no-print-directory node
	@$(MAKE) --no-print-directory soak-ci
	@FUZZ_JOBS=2 $(MAKE) --no-print-directory fuzz-short
	@$(MAKE) --no-print-directory asan
	@$(MAKE) --no-print-directory valgrind

run: deps
	@$(MAKE) --no-print-directory all
	$(BUILD)/nodedns --listen 127.0.0.1:5353 --kube-snapshot deploy/examples/demo-cluster.json \
		--metrics 127.0.0.1:9253 --health 127.0.0.1:8080 --threads 2

bench: all
	@scripts/deps.sh bench
	@bench/run.sh

clean:
	rm -rf build build-asan

# Every fuzz target for 20 s (in make test), or 10 min each (make fuzz).
fuzz-short:
	@FUZZ_SECONDS=$${FUZZ_SECONDS:-20} tests/fuzz/run.sh

fuzz:
	@FUZZ_SECONDS=$${FUZZ_SECONDS:-600} tests/fuzz/run.sh
