# mod_keepalive: honest, per-vhost keep-alive for Apache httpd 2.4.
#
#   make            build build/mod_keepalive.so
#   make run        build, then serve a demo site on 127.0.0.1:$(PORT) with the module
#   make test       unit tests of the policy core, then integration tests on a real httpd
#   make install    install into the running httpd's module directory (apxs -i),
#                   under $(DESTDIR) if set; make uninstall removes that one file
#   make deb        build the Debian package build/libapache2-mod-keepalive_*.deb
#   make test-package  as root: install that package, a2enmod, run apache2, purge
#   make test-compat  the integration tests on httpd 2.4.52, 2.4.58, 2.4.62 built from source
#   make bench-robustness  memory, graceful-restart and valgrind benchmarks (bench/)
#   make bench-fleet  httpd behind HAProxy: rebalancing and the reuse race (bench/fleet.py)
#   make bench-cost  instructions per request (callgrind), wrk throughput, decide() (bench/)
#   make bench-pool-sizes  adaptive keep-alive on 8 and 32 workers, with nginx in front (bench/pool_sizes.py)
#   make test-httpd-suite  httpd's own test suite without and with the module, compared
#                   (keep-alive subset; HTTPD_SUITE=full for the whole suite)

SHELL := /bin/bash

include apxs/config.mk

# debian/changelog is the one place the version is written: the upstream part
# of its first entry ("0.1.0" of "0.1.0-1"), read without needing dpkg-dev.
VERSION    := $(shell sed -n '1{s/^[^(]*(\([0-9]*:\)\{0,1\}\([^)]*\)).*/\2/;s/-[^-]*$$//;p;q;}' debian/changelog)
ifeq ($(VERSION),)
$(error cannot read the version from the first line of debian/changelog)
endif
PORT       ?= 8080
PYTHON     ?= /usr/bin/python3
BUILD      ?= build
OBJ        := $(BUILD)/obj
MODULE_SO  := $(BUILD)/mod_keepalive.so
UNIT_TESTS := $(BUILD)/unit_tests
DECIDE_BENCHMARK := $(BUILD)/decide_benchmark

# Debian packages the build, the demo and the tests need.
DEB_PACKAGES := apache2 apache2-dev apache2-utils g++ make curl \
                libgtest-dev python3 python3-pytest nghttp2-client wrk \
                nodejs clang libclang-rt-14-dev prometheus haproxy
# ... those "make bench-robustness" and "make bench-fleet" need (ss is in
# iproute2; haproxy is bench/fleet.py's balancer) ...
BENCH_PACKAGES := valgrind wrk iproute2 haproxy
# ... and those "make bench-cost" needs.
BENCH_COST_PACKAGES := valgrind wrk libbenchmark-dev
# ... and those "make bench-pool-sizes" needs (ab is in apache2-utils; nginx
# is the reverse proxy of its nginx row, run in the foreground, never as the
# distro's service).
BENCH_POOL_PACKAGES := wrk apache2-utils nginx
# ... those "make test-compat" needs to build httpd from source (2.4.52
# takes PCRE1, later versions PCRE2; mod_http2 and mod_lua need theirs) ...
COMPAT_PACKAGES := autoconf libtool libapr1-dev libaprutil1-dev libpcre3-dev libpcre2-dev \
                   libnghttp2-dev liblua5.3-dev xz-utils
# ... and those "make deb" needs: debian/control's Build-Depends (dh-apache2
# is part of apache2-dev), dpkg-buildpackage with what it checks for, lintian.
DEB_BUILD_PACKAGES := apache2-dev build-essential debhelper dpkg-dev fakeroot \
                      libgtest-dev lintian
# ... and those "make test-httpd-suite" needs: Apache::Test (in mod_perl's
# package) and the Perl modules httpd-tests' FastCGI, WebSocket, DAV and
# include tests use, rather than skipping them.
HTTPD_SUITE_PACKAGES := libapache2-mod-perl2 libfcgi-perl libanyevent-websocket-client-perl \
                        libhttp-dav-perl libdatetime-perl openssl perl xz-utils

CXX      ?= g++
CXXFLAGS ?= -O2 -g
LDFLAGS  ?= -Wl,-z,relro -Wl,-z,now
WARNINGS := -Wall -Wextra -Wshadow -Wnon-virtual-dtor -Werror
CXXSTD   := -std=c++17 -fPIC -fvisibility=hidden -fvisibility-inlines-hidden
# The module is linked with link-time optimization, so that splitting the
# sources into a file per concern costs nothing per request: the request
# path's small helpers are inlined across files as they were within one
# (bench/cost.py: without it the policy path costs about 95 instructions more
# per request). Fat objects keep the core library usable by links without it
# (unit tests, the decision benchmark); gcc-ar indexes LTO objects.
LTO_FLAGS := -flto=auto -ffat-lto-objects
CORE_AR   := gcc-ar
DEFINES  := -DMOD_KEEPALIVE_VERSION=\"$(VERSION)\"

# mod_keepalive/core/ is the policy core: built without any httpd or APR
# include path (so it cannot use one), into one static library that the
# module, the unit tests and the decision benchmark link; the fuzzers compile
# the same sources with their own sanitizer flags. mod_keepalive/httpd/ is
# the adapter, the only code built against httpd's headers.
CORE_SOURCES    := $(sort $(wildcard mod_keepalive/core/*.cpp))
CORE_HEADERS    := $(wildcard mod_keepalive/core/*.h)
ADAPTER_SOURCES := $(sort $(wildcard mod_keepalive/httpd/*.cpp))
UNIT_SOURCES    := $(wildcard tests/unit/*.cpp)
CORE_LIB        := $(BUILD)/libkeepalive_core.a
SOURCE_INCLUDES := -Imod_keepalive

CORE_OBJECTS    := $(CORE_SOURCES:%.cpp=$(OBJ)/%.o)
ADAPTER_OBJECTS := $(ADAPTER_SOURCES:%.cpp=$(OBJ)/%.o)
UNIT_OBJECTS    := $(UNIT_SOURCES:%.cpp=$(OBJ)/%.o)

# Sanitized builds of the policy core: its unit tests under ASan and UBSan,
# and libFuzzer targets (Debian's clang) for its parsers and its decision.
SAN_FLAGS     := -fsanitize=address,undefined -fno-sanitize-recover=all -fno-omit-frame-pointer
SAN_OBJ       := $(BUILD)/san
SAN_UNIT      := $(BUILD)/unit_tests_sanitized
CLANGXX       ?= clang++
FUZZ_SECONDS  ?= 60
TEST_FUZZ_SECONDS ?= 10
FUZZ_TARGETS  := connection_tokens decide directive_args
FUZZ_BINARIES := $(FUZZ_TARGETS:%=$(BUILD)/fuzz/fuzz_%)

.PHONY: all deps unit-test-sanitized test-version-guard test-compat fuzz deps-deb run test unit-test integration-test deb test-package \
        install uninstall clean bench-robustness bench-fleet bench-cost bench-pool-sizes

all: $(MODULE_SO)

deps:
	@apxs/install-deps $(DEB_PACKAGES)

deps-deb:
	@apxs/install-deps $(DEB_BUILD_PACKAGES)

$(CORE_OBJECTS): $(OBJ)/%.o: %.cpp
	@mkdir -p $(@D)
	$(CXX) $(CXXSTD) $(CPPFLAGS) $(CXXFLAGS) $(LTO_FLAGS) $(WARNINGS) $(SOURCE_INCLUDES) -MMD -MP -c $< -o $@

$(CORE_LIB): $(CORE_OBJECTS)
	@rm -f $@
	$(CORE_AR) rcs $@ $^

$(ADAPTER_OBJECTS): $(OBJ)/%.o: %.cpp
	@test -n "$(APXS_INCLUDEDIR)" || { echo "apxs not found: run 'make deps' (Debian package apache2-dev)" >&2; exit 1; }
	@mkdir -p $(@D)
	$(CXX) $(CXXSTD) $(CPPFLAGS) $(CXXFLAGS) $(LTO_FLAGS) $(WARNINGS) $(DEFINES) $(SOURCE_INCLUDES) $(addprefix -isystem ,$(filter-out -I.,$(patsubst -I%,%,$(filter -I%,$(HTTPD_CPPFLAGS))))) \
	    $(filter-out -I%,$(HTTPD_CPPFLAGS)) -MMD -MP -c $< -o $@

# The adapter carries the version, read from debian/changelog.
$(ADAPTER_OBJECTS): debian/changelog

$(MODULE_SO): $(ADAPTER_OBJECTS) $(CORE_LIB)
	$(CXX) -shared $(CXXFLAGS) $(LTO_FLAGS) $(LDFLAGS) -Wl,--as-needed -o $@ $^

$(OBJ)/tests/unit/%.o: tests/unit/%.cpp
	@mkdir -p $(@D)
	$(CXX) -std=c++17 $(CPPFLAGS) $(CXXFLAGS) $(WARNINGS) $(SOURCE_INCLUDES) -MMD -MP -c $< -o $@

$(UNIT_TESTS): $(UNIT_OBJECTS) $(CORE_LIB)
	$(CXX) $(CXXFLAGS) $(LDFLAGS) -o $@ $^ -lgtest -lgtest_main -pthread

# clang: g++ 12 with sanitizers warns falsely inside libstdc++'s <regex>.
$(SAN_OBJ)/%.o: %.cpp
	@mkdir -p $(@D)
	$(CLANGXX) -std=c++17 -O1 -g $(SAN_FLAGS) $(WARNINGS) $(SOURCE_INCLUDES) -MMD -MP -c $< -o $@

$(SAN_UNIT): $(CORE_SOURCES:%.cpp=$(SAN_OBJ)/%.o) $(UNIT_SOURCES:%.cpp=$(SAN_OBJ)/%.o)
	$(CLANGXX) -O1 -g $(SAN_FLAGS) -o $@ $^ -lgtest -lgtest_main -pthread

# The unit tests again, built with AddressSanitizer and UndefinedBehaviorSanitizer.
unit-test-sanitized: $(SAN_UNIT)
	ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1 $(SAN_UNIT) --gtest_brief=1

$(BUILD)/fuzz/fuzz_%: tests/fuzz/fuzz_%.cpp $(CORE_SOURCES) $(CORE_HEADERS)
	@mkdir -p $(@D)
	$(CLANGXX) -std=c++17 -O1 -g -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=all \
	    $(SOURCE_INCLUDES) -o $@ $< $(CORE_SOURCES)

# Runs each libFuzzer target for FUZZ_SECONDS on a copy of its committed seed
# corpus (new inputs stay under build/); a finding stops with its reproducer.
fuzz: $(FUZZ_BINARIES)
	@for t in $(FUZZ_TARGETS); do \
	    mkdir -p $(BUILD)/fuzz/corpus-$$t $(BUILD)/fuzz/findings-$$t && \
	    cp -n tests/fuzz/corpus/$$t/* $(BUILD)/fuzz/corpus-$$t/ && \
	    echo "fuzz: $$t for $(FUZZ_SECONDS)s" && \
	    $(BUILD)/fuzz/fuzz_$$t -max_total_time=$(FUZZ_SECONDS) -print_final_stats=1 \
	        -artifact_prefix=$(BUILD)/fuzz/findings-$$t/ $(BUILD)/fuzz/corpus-$$t 2>&1 \
	        | grep -E '^(#[0-9]+.*DONE|stat::number_of_executed_units|stat::peak_rss_mb|==[0-9]+==|SUMMARY|.*runtime error)' \
	        ; test $${PIPESTATUS[0]} -eq 0 || exit 1; \
	done

# The build must refuse httpd headers older than 2.4.49 or of another branch.
test-version-guard:
	@test -n "$(APXS_INCLUDEDIR)" || { echo "apxs not found: run 'make deps' (Debian package apache2-dev)" >&2; exit 1; }
	@tests/build/version_guard_test.sh $(CXX) $(APXS_INCLUDEDIR) \
	    $(addprefix -isystem ,$(filter-out $(APXS_INCLUDEDIR),$(patsubst -I%,%,$(filter -I%,$(HTTPD_CPPFLAGS))))) \
	    $(filter-out -I%,$(HTTPD_CPPFLAGS))

unit-test: $(UNIT_TESTS)
	$(UNIT_TESTS) --gtest_brief=1

integration-test: $(MODULE_SO)
	$(PYTHON) -m pytest -p no:cacheprovider -rs tests/integration

# Everything CI checks: unit tests (also under ASan/UBSan), a short fuzzing
# pass, then the integration tests on a real httpd.
test: deps
	@$(MAKE) --no-print-directory all $(UNIT_TESTS)
	@$(MAKE) --no-print-directory unit-test
	@$(MAKE) --no-print-directory unit-test-sanitized
	@$(MAKE) --no-print-directory test-version-guard
	@$(MAKE) --no-print-directory fuzz FUZZ_SECONDS=$(TEST_FUZZ_SECONDS)
	@$(MAKE) --no-print-directory integration-test

run: deps
	@$(MAKE) --no-print-directory all
	@$(PYTHON) -m tests.demo --port $(PORT) --module $(MODULE_SO)

# Builds the package from a copy of the tree under build/deb/ and copies the
# .deb to build/; lintian must find no error in it.
deb: deps-deb
	@apxs/build-deb

# Robustness benchmarks, not part of "make test" (results in bench/RESULTS.md):
# 1,000,000 requests on one connection (memory), 10 graceful restarts under
# wrk and Node fetch POSTs (core vs module vs keepalivectl's drain, every
# MPM), a workload under valgrind memcheck.
bench-robustness: deps $(MODULE_SO)
	@apxs/install-deps $(BENCH_PACKAGES)
	$(PYTHON) -m bench.memory --module $(MODULE_SO)
	$(PYTHON) -m bench.graceful --module $(MODULE_SO)
	$(PYTHON) -m bench.valgrind --module $(MODULE_SO)

# Three httpd behind Debian's haproxy (bench/fleet.py, about 9 minutes):
# KeepAliveMaxLifetime rebalancing a fleet, and the balancer's reuse race.
bench-fleet: deps $(MODULE_SO)
	@apxs/install-deps $(BENCH_PACKAGES)
	$(PYTHON) -m bench.fleet --module $(MODULE_SO)

# What the module costs (bench/cost.py, bench/decide_benchmark.cpp): callgrind
# instructions per request with and without it, wrk throughput side by side,
# and a Google Benchmark of the policy decision. Not part of "make test".
$(DECIDE_BENCHMARK): bench/decide_benchmark.cpp $(CORE_LIB)
	$(CXX) -std=c++17 $(CPPFLAGS) $(CXXFLAGS) $(WARNINGS) $(SOURCE_INCLUDES) -o $@ $< $(CORE_LIB) -lbenchmark -pthread

bench-cost: deps $(MODULE_SO)
	@apxs/install-deps $(BENCH_COST_PACKAGES)
	@$(MAKE) --no-print-directory $(DECIDE_BENCHMARK)
	$(DECIDE_BENCHMARK) --benchmark_repetitions=5 --benchmark_report_aggregates_only=true
	$(PYTHON) -m bench.cost --module $(MODULE_SO)

# Adaptive keep-alive across pool sizes (bench/pool_sizes.py, issue 18, about
# 24 minutes): 8 and 32 workers, prefork and worker, core On/Off, the module
# static and with the accept queue, and nginx in front of core prefork.
# POOL_ARGS passes options, e.g. POOL_ARGS=--quick.
bench-pool-sizes: deps $(MODULE_SO)
	@apxs/install-deps $(BENCH_POOL_PACKAGES)
	$(PYTHON) -m bench.pool_sizes --module $(MODULE_SO) $(POOL_ARGS)

# The module on each httpd 2.4 in ../shared/httpd-src/ (tests/compat/run.py):
# httpd built from source (cached outside the clone, by tarball checksum),
# the module built with its apxs and installed by "make install", the
# integration suite under prefork, worker and event. COMPAT_ARGS passes
# options, e.g. COMPAT_ARGS="--versions 2.4.52 --mpms event".
test-compat: deps
	@apxs/install-deps $(COMPAT_PACKAGES)
	$(PYTHON) -m tests.compat.run $(COMPAT_ARGS)

# httpd's own test suite (httpd-tests, Apache::Test) run twice on Debian's
# apache2, without and with the module, compared per file and per subtest
# (tests/httpd-suite/run.py, docs/testing.md). HTTPD_SUITE=full runs all of
# it, the default its keep-alive subset; KEEPALIVE_MODULE=path tests another
# build of the module. Not part of "make test".
.PHONY: test-httpd-suite
test-httpd-suite: deps $(MODULE_SO)
	@apxs/install-deps $(HTTPD_SUITE_PACKAGES)
	$(PYTHON) tests/httpd-suite/run.py --mode $(or $(HTTPD_SUITE),subset) \
	    --module $(or $(KEEPALIVE_MODULE),$(MODULE_SO))

# Needs root: installs the package into this machine's apache2 and removes it.
test-package:
	@tests/package/test-package.sh

# Source installs: apxs -i copies the module into httpd's module directory,
# $(DESTDIR) in front of it when set (for staged installs). Both refuse to
# touch a module that a package (libapache2-mod-keepalive) owns.
INSTALLED_SO := $(DESTDIR)$(APXS_LIBEXECDIR)/mod_keepalive.so
define refuse_if_packaged
@if [ -z "$(DESTDIR)" ] && command -v dpkg-query >/dev/null 2>&1 && \
	    owner=$$(dpkg-query -S $(INSTALLED_SO) 2>/dev/null); then \
	    echo "$(INSTALLED_SO) belongs to the package $${owner%%:*}: use apt to remove or upgrade it" >&2; \
	    exit 1; fi
endef

install: $(MODULE_SO)
	@test -n "$(APXS_LIBEXECDIR)" || { echo "apxs not found: run 'make deps' (Debian: apache2-dev, RHEL/Fedora: httpd-devel)" >&2; exit 1; }
	$(refuse_if_packaged)
	install -d $(DESTDIR)$(APXS_LIBEXECDIR)
	$(APXS) -i -S LIBEXECDIR=$(DESTDIR)$(APXS_LIBEXECDIR) -n keepalive $(MODULE_SO)

uninstall:
	@test -n "$(APXS_LIBEXECDIR)" || { echo "apxs not found: cannot tell the module directory" >&2; exit 1; }
	$(refuse_if_packaged)
	rm -f $(INSTALLED_SO)

clean:
	rm -rf $(BUILD)

-include $(wildcard $(SAN_OBJ)/*/*.d $(SAN_OBJ)/*/*/*.d $(SAN_OBJ)/*/*/*/*.d)
-include $(CORE_OBJECTS:.o=.d) $(ADAPTER_OBJECTS:.o=.d) $(UNIT_OBJECTS:.o=.d)
