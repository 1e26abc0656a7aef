# nodedns - node-local caching DNS resolver for Kubernetes.
#
#   make          build build/nodedns
#   make run      install what is missing, build, serve the demo cluster on 127.0.0.1:5353
#   make test     everything CI runs: unit, integration, sanitizers, valgrind, fuzz, the image
#   make bench    the performance table against the peers (bench/)
#   make image    the container image (podman or docker; IMAGE=REGISTRY/nodedns:TAG)
#   make image-test  run that image as the DaemonSet does (as root)

CC      ?= cc
PKGS    := ldns libuv libcurl jansson yajl yaml-0.1 libcap libmnl zlib
CFLAGS  ?= -O2 -g
# The project's own flags stay even when CFLAGS is given on the command line.
NDNS_CFLAGS := -std=c11 -Wall -Wextra -Wpedantic -Werror -D_GNU_SOURCE -Iinclude $(shell pkg-config --cflags $(PKGS) 2>/dev/null)
NDNS_LIBS   := $(shell pkg-config --libs $(PKGS) 2>/dev/null) -lpthread -lm
BUILD   ?= build
# Compilers (and unit test binaries) run at once by `make test`.
JOBS    ?= $(shell getconf _NPROCESSORS_ONLN 2>/dev/null || echo 1)
# `make` alone builds the binary (the layer rules below come first in the file).
.DEFAULT_GOAL := all

# The source tree is layered; each folder of src/ is one layer and builds one
# static library. A layer may use the layers before it in this list, never
# one after it (scripts/check-layers.sh checks the includes):
#   util     logs, metrics registry, hash map, wire and address helpers (pure)
#   cluster  Kubernetes objects, the store, snapshots, zone answers (pure)
#   dns      wire messages, the answer cache, the query path (pure)
#   io       libuv/curl shells: server, upstream, worker, admin, API watch
#   node     node setup, the supervisor, privileges
#   app      src/*.c but main.c: the configuration
# Everything links against all of them, in the reverse order; the linker takes
# from a static library only the objects a program needs.
LAYERS  := util cluster dns io node
LINK_ORDER := app node io dns cluster util
LIB     = $(BUILD)/lib/libnodedns_$(1).a
LAYER_LIBS := $(foreach l,$(LINK_ORDER),$(call LIB,$(l)))
HEADERS := $(wildcard include/nodedns/*.h include/nodedns/*/*.h src/*.h src/*/*.h)

define layer_rules
$(1)_OBJS := $$(patsubst src/%.c,$$(BUILD)/obj/%.o,$$(wildcard src/$(1)/*.c))
$$(call LIB,$(1)): $$($(1)_OBJS)
	@mkdir -p $$(dir $$@)
	rm -f $$@ && $$(AR) rcs $$@ $$^
endef
$(foreach l,$(LAYERS),$(eval $(call layer_rules,$(l))))
app_OBJS := $(patsubst src/%.c,$(BUILD)/obj/%.o,$(filter-out src/main.c,$(wildcard src/*.c)))
$(call LIB,app): $(app_OBJS)
	@mkdir -p $(dir $@)
	rm -f $@ && $(AR) rcs $@ $^

# Unit tests: tests/unit/test_<name>.c, each linked with the layer libraries.
UNIT_TESTS := $(patsubst tests/unit/test_%.c,%,$(wildcard tests/unit/test_*.c))
TEST_BINS := $(UNIT_TESTS:%=$(BUILD)/tests/test_%)
TEST_SUPPORT := $(wildcard tests/support/*.c)

.PHONY: all libs layers run test test-bins unit integration integration-bounds watch-bounds soak-ci node watch watch-asan asan valgrind deps deps-test bench fuzz fuzz-short clean manifests image image-test

all: $(BUILD)/nodedns

$(BUILD)/obj/%.o: src/%.c $(HEADERS)
	@mkdir -p $(dir $@)
	$(CC) $(NDNS_CFLAGS) $(CFLAGS) -c -o $@ $<

libs: $(LAYER_LIBS)

$(BUILD)/nodedns: $(BUILD)/obj/main.o $(LAYER_LIBS)
	$(CC) $(NDNS_CFLAGS) $(CFLAGS) $(LDFLAGS) -o $@ $^ $(NDNS_LIBS) $(LDLIBS)

$(BUILD)/tests/test_%: tests/unit/test_%.c $(TEST_SUPPORT) $(LAYER_LIBS) $(wildcard tests/support/*.h)
	@mkdir -p $(dir $@)
	$(CC) $(NDNS_CFLAGS) $(CFLAGS) $(LDFLAGS) -Isrc -Itests -o $@ $< $(TEST_SUPPORT) $(LAYER_LIBS) $(NDNS_LIBS) $(LDLIBS) -lcmocka

deps:
	@scripts/deps.sh build

deps-test:
	@scripts/deps.sh test

# The unit test binaries without running them (make -j builds them side by side).
test-bins: $(TEST_BINS)

unit: $(TEST_BINS)
	@scripts/run-unit.sh $(TEST_BINS)

integration: $(BUILD)/nodedns
	@NODEDNS_BIN=$(BUILD)/nodedns python3 tests/integration/run.py
	@NODEDNS_BIN=$(BUILD)/nodedns python3 tests/integration/cluster_e2e.py
	@NODEDNS_BIN=$(BUILD)/nodedns python3 tests/integration/warm_e2e.py
	@NODEDNS_BIN=$(BUILD)/nodedns python3 tests/integration/faults.py
	@NODEDNS_BIN=$(BUILD)/nodedns python3 tests/integration/differential.py
	@NODEDNS_BIN=$(BUILD)/nodedns python3 tests/integration/hostile.py

# `make test` runs the integration and watch suites whole under ASan (make
# asan) and, against the plain build, only the tests whose RSS, throughput or
# loop-latency bounds are looser or skipped under ASan (.ci/plain_bounds.py
# finds them in the source): every other check is the same in both runs.
integration-bounds: $(BUILD)/nodedns
	@list=$$(python3 .ci/plain_bounds.py --integration) || exit 1; \
	echo "$$list" | while read -r suite names; do \
		[ -z "$$suite" ] || NODEDNS_BIN=$(BUILD)/nodedns python3 $$suite $$names || exit 1; \
	done

watch-bounds: libs
	@BUILD=$(BUILD) CC="$(CC)" CFLAGS="$(CFLAGS)" LDFLAGS="$(LDFLAGS)" tests/apiserver/build_driver.sh plain $(BUILD)/apiserver
	@BUILD=$(BUILD) CC="$(CC)" CFLAGS="$(CFLAGS)" LDFLAGS="$(LDFLAGS)" tests/apiserver/build_driver.sh real $(BUILD)/apiserver
	@k=$$(python3 .ci/plain_bounds.py --watch) && python3 tests/apiserver/test_watch.py \
		--driver $(BUILD)/apiserver/watch_driver --real-driver $(BUILD)/apiserver/watch_driver_real \
		--proto $(WATCH_PROTO) -k "$$k"

# 30 s of mixed load with API churn and upstream restarts (bench/soak.sh runs 10 min).
soak-ci: $(BUILD)/nodedns
	@NODEDNS_BIN=$(BUILD)/nodedns bench/soak.sh --ci

# Node setup and safe restarts end to end, as root, in network namespaces
# (tests/node/): interface, iptables, kill -9, rolling-update handover.
node: $(BUILD)/nodedns
	@NODEDNS_BIN=$(BUILD)/nodedns python3 tests/node/run.py
	@NODEDNS_BIN=$(BUILD)/nodedns python3 tests/node/pods_e2e.py
	@NODEDNS_BIN=$(BUILD)/nodedns python3 tests/node/autopath_e2e.py

# The list+watch client against the API server stand-in (tests/apiserver/),
# over HTTP/1.1 and then over HTTP/2 through nghttpx (WATCH_PROTO=h1|h2|both).
WATCH_PROTO ?= both
watch: libs
	@BUILD=$(BUILD) CC="$(CC)" CFLAGS="$(CFLAGS)" LDFLAGS="$(LDFLAGS)" tests/apiserver/build_driver.sh plain $(BUILD)/apiserver
	@BUILD=$(BUILD) CC="$(CC)" CFLAGS="$(CFLAGS)" LDFLAGS="$(LDFLAGS)" tests/apiserver/build_driver.sh real $(BUILD)/apiserver
	@python3 tests/apiserver/test_watch.py --driver $(BUILD)/apiserver/watch_driver \
		--real-driver $(BUILD)/apiserver/watch_driver_real --proto $(WATCH_PROTO)

watch-asan: libs
	@BUILD=$(BUILD) CC="$(CC)" CFLAGS="$(CFLAGS)" LDFLAGS="$(LDFLAGS)" tests/apiserver/build_driver.sh asan $(BUILD)/apiserver
	@BUILD=$(BUILD) CC="$(CC)" CFLAGS="$(CFLAGS)" LDFLAGS="$(LDFLAGS)" tests/apiserver/build_driver.sh real $(BUILD)/apiserver
	@python3 tests/apiserver/test_watch.py --driver $(BUILD)/apiserver/watch_driver_asan \
		--real-driver $(BUILD)/apiserver/watch_driver_real --proto $(WATCH_PROTO)

# The same suites, built with AddressSanitizer + UndefinedBehaviorSanitizer:
# everything built first ($(JOBS) compilers at once), then the suites one by one.
ASAN_VARS := BUILD=build-asan \
	CFLAGS="-O1 -g -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=all" \
	LDFLAGS="-fsanitize=address,undefined"
asan:
	@$(MAKE) --no-print-directory -j$(JOBS) $(ASAN_VARS) build-asan/nodedns test-bins
	@$(MAKE) --no-print-directory $(ASAN_VARS) unit
	@$(MAKE) --no-print-directory $(ASAN_VARS) integration
	@$(MAKE) --no-print-directory $(ASAN_VARS) watch-asan

valgrind: $(TEST_BINS)
	@VALGRIND=1 scripts/run-unit.sh $(TEST_BINS)

# The manifests: the checks of tests/deploy/check_manifests.py, both modes
# (deploy/overlays) and deploy/monitoring rendered and every object validated
# against the Kubernetes schemas (npm kubernetes-models, pinned in
# tests/deploy/package-lock.json); then deploy/monitoring against a running
# nodedns (tests/deploy/check_monitoring.py: promtool, metric names).
MANIFEST_NPM := tests/deploy/node_modules/.package-lock.json
$(MANIFEST_NPM): tests/deploy/package.json tests/deploy/package-lock.json
	cd tests/deploy && npm ci --no-audit --no-fund --loglevel=error
	@touch $@

manifests: $(BUILD)/nodedns $(MANIFEST_NPM)
	@NODEDNS_BIN=$(BUILD)/nodedns /usr/bin/python3 tests/deploy/check_manifests.py  # Debian's python3 has python3-yaml
	@NODEDNS_BIN=$(BUILD)/nodedns /usr/bin/python3 tests/deploy/check_monitoring.py

# The container image from deploy/Dockerfile, with podman or docker; where no
# registry is reachable the Debian base is made with debootstrap from this
# machine's apt sources (deploy/build-image.sh).
image:
	@command -v docker >/dev/null 2>&1 || scripts/deps.sh image
	@deploy/build-image.sh $(IMAGE)

# The image run as the DaemonSet runs it (tests/image/run.py): both overlays
# rendered, the manifest's capabilities only, read-only root, host network in
# a node network namespace with the API stand-in and NSD; glibc lookups from
# a pod namespace, NOTRACK rules, a clean node after SIGTERM. Builds the image
# first and fails (never skips) when it cannot.
image-test: image
	@scripts/deps.sh image
	@NODEDNS_IMAGE=$(IMAGE) python3 tests/image/run.py

# No layer includes a layer above it; the pure layers no libuv, curl or pthread.
layers:
	@scripts/check-layers.sh

# Every suite, in an order that keeps CI short on a 2-CPU machine:
#   1. the binary and every unit test binary, $(JOBS) compilers at once;
#   2. `make image` in the background (on a fresh machine mostly downloads:
#      debootstrap and apt) while the suites without timing bounds run:
#      manifests, unit, fuzz-short, valgrind; its log is $(IMAGE_LOG);
#   3. once the image is built, the suites with timing bounds (latency, RSS,
#      throughput), with nothing else of ours running: the plain build's
#      bounds (integration-bounds, watch-bounds; see above), node, soak-ci,
#      and asan (integration and watch whole);
#   4. image-test (the image's layers are cached by then).
# Any failure stops it, as before; a failed image build prints its log.
IMAGE_LOG = $(BUILD)/image-build.log
test: deps-test
	@$(MAKE) --no-print-directory -j$(JOBS) all test-bins
	@$(MAKE) --no-print-directory layers
	@rm -f $(IMAGE_LOG).rc; \
	( $(MAKE) --no-print-directory image >$(IMAGE_LOG) 2>&1; echo $$? >$(IMAGE_LOG).rc ) & \
	$(MAKE) --no-print-directory manifests && \
	$(MAKE) --no-print-directory unit && \
	FUZZ_JOBS=$(JOBS) $(MAKE) --no-print-directory -j$(JOBS) fuzz-short && \
	$(MAKE) --no-print-directory valgrind; rc=$$?; \
	echo "waiting for the image build (log: $(IMAGE_LOG))"; wait; \
	if [ "$$(cat $(IMAGE_LOG).rc 2>/dev/null)" != 0 ]; then \
		tail -n 40 $(IMAGE_LOG); echo "make image failed"; exit 1; \
	fi; tail -n 1 $(IMAGE_LOG); exit $$rc
	@$(MAKE) --no-print-directory integration-bounds
	@$(MAKE) --no-print-directory watch-bounds
	@$(MAKE) --no-print-directory node
	@$(MAKE) --no-print-directory soak-ci
	@$(MAKE) --no-print-directory asan
	@$(MAKE) --no-print-directory image-test

run: deps
	@$(MAKE) --no-print-directory all
	$(BUILD)/nodedns --listen 127.0.0.1:5353 --kube-snapshot deploy/examples/demo-cluster.json \
		--metrics 127.0.0.1:9253 --health 127.0.0.1:8080 --threads 2

bench: all
	@scripts/deps.sh bench
	@bench/run.sh

clean:
	rm -rf build build-asan build-fuzz

# Every fuzz target for 20 s (in make test), or 10 min each (make fuzz).
# make test's run has a fixed seed (FUZZ_SEED, see tests/fuzz/run.sh): it
# replays the committed corpus and then the same mutations on every machine,
# so it fails on a change's bug and reproduces; make fuzz explores (a new
# seed each run) and what it finds goes into the corpus with its fix.
# (`+`: the make that tests/fuzz/run.sh runs shares this make's -j slots.)
fuzz-short:
	+@FUZZ_SECONDS=$${FUZZ_SECONDS:-20} FUZZ_SEED=$${FUZZ_SEED:-20261205} tests/fuzz/run.sh

fuzz:
	@FUZZ_SECONDS=$${FUZZ_SECONDS:-600} tests/fuzz/run.sh
