# mod_keepalive: honest, per-vhost keep-alive for Apache httpd 2.4.
#
#   make            build build/mod_keepalive.so
#   make run        build, then serve a demo site on 127.0.0.1:$(PORT) with the module
#   make test       unit tests of the policy core, then integration tests on a real httpd
#   make install    install into the running httpd's module directory (apxs -i),
#                   under $(DESTDIR) if set; make uninstall removes that one file
#   make deb        build the Debian package build/libapache2-mod-keepalive_*.deb
#   make test-package  as root: install that package, a2enmod, run apache2, purge

include apxs/config.mk

# debian/changelog is the one place the version is written: the upstream part
# of its first entry ("0.1.0" of "0.1.0-1"), read without needing dpkg-dev.
VERSION    := $(shell sed -n '1{s/^[^(]*(\([0-9]*:\)\{0,1\}\([^)]*\)).*/\2/;s/-[^-]*$$//;p;q;}' debian/changelog)
ifeq ($(VERSION),)
$(error cannot read the version from the first line of debian/changelog)
endif
PORT       ?= 8080
PYTHON     ?= /usr/bin/python3
BUILD      := build
OBJ        := $(BUILD)/obj
MODULE_SO  := $(BUILD)/mod_keepalive.so
UNIT_TESTS := $(BUILD)/unit_tests

# Debian packages the build, the demo and the tests need.
DEB_PACKAGES := apache2 apache2-dev apache2-utils g++ make curl \
                libgtest-dev python3 python3-pytest nghttp2-client wrk
# ... and those "make deb" needs: debian/control's Build-Depends (dh-apache2
# is part of apache2-dev), dpkg-buildpackage with what it checks for, lintian.
DEB_BUILD_PACKAGES := apache2-dev build-essential debhelper dpkg-dev fakeroot \
                      libgtest-dev lintian

CXX      ?= g++
CXXFLAGS ?= -O2 -g
LDFLAGS  ?= -Wl,-z,relro -Wl,-z,now
WARNINGS := -Wall -Wextra -Wshadow -Wnon-virtual-dtor -Werror
CXXSTD   := -std=c++17 -fPIC -fvisibility=hidden -fvisibility-inlines-hidden
DEFINES  := -DMOD_KEEPALIVE_VERSION=\"$(VERSION)\"

# The policy core is built without any httpd include path: it must not need one.
CORE_SOURCES    := mod_keepalive/ka_policy.cpp mod_keepalive/ka_tokens.cpp mod_keepalive/ka_metrics.cpp
ADAPTER_SOURCES := mod_keepalive/mod_keepalive.cpp mod_keepalive/apache_config.cpp mod_keepalive/apache_metrics.cpp mod_keepalive/apache_load.cpp
UNIT_SOURCES    := $(wildcard tests/unit/*.cpp)

CORE_OBJECTS    := $(CORE_SOURCES:%.cpp=$(OBJ)/%.o)
ADAPTER_OBJECTS := $(ADAPTER_SOURCES:%.cpp=$(OBJ)/%.o)
UNIT_OBJECTS    := $(UNIT_SOURCES:%.cpp=$(OBJ)/%.o)

.PHONY: all deps deps-deb run test unit-test integration-test deb test-package \
        install uninstall clean

all: $(MODULE_SO)

deps:
	@apxs/install-deps $(DEB_PACKAGES)

deps-deb:
	@apxs/install-deps $(DEB_BUILD_PACKAGES)

$(OBJ)/mod_keepalive/ka_%.o: mod_keepalive/ka_%.cpp
	@mkdir -p $(@D)
	$(CXX) $(CXXSTD) $(CPPFLAGS) $(CXXFLAGS) $(WARNINGS) $(DEFINES) -MMD -MP -c $< -o $@

$(ADAPTER_OBJECTS): $(OBJ)/%.o: %.cpp
	@test -n "$(APXS_INCLUDEDIR)" || { echo "apxs not found: run 'make deps' (Debian package apache2-dev)" >&2; exit 1; }
	@mkdir -p $(@D)
	$(CXX) $(CXXSTD) $(CPPFLAGS) $(CXXFLAGS) $(WARNINGS) $(DEFINES) $(addprefix -isystem ,$(filter-out -I.,$(patsubst -I%,%,$(filter -I%,$(HTTPD_CPPFLAGS))))) \
	    $(filter-out -I%,$(HTTPD_CPPFLAGS)) -MMD -MP -c $< -o $@

# The adapter carries the version, read from debian/changelog.
$(ADAPTER_OBJECTS): debian/changelog

$(MODULE_SO): $(CORE_OBJECTS) $(ADAPTER_OBJECTS)
	$(CXX) -shared $(CXXFLAGS) $(LDFLAGS) -Wl,--as-needed -o $@ $^

$(OBJ)/tests/unit/%.o: tests/unit/%.cpp
	@mkdir -p $(@D)
	$(CXX) -std=c++17 $(CPPFLAGS) $(CXXFLAGS) $(WARNINGS) -Imod_keepalive -MMD -MP -c $< -o $@

$(UNIT_TESTS): $(CORE_OBJECTS) $(UNIT_OBJECTS)
	$(CXX) $(CXXFLAGS) $(LDFLAGS) -o $@ $^ -lgtest -lgtest_main -pthread

unit-test: $(UNIT_TESTS)
	$(UNIT_TESTS) --gtest_brief=1

integration-test: $(MODULE_SO)
	$(PYTHON) -m pytest -p no:cacheprovider -rs tests/integration

test: deps
	@$(MAKE) --no-print-directory all $(UNIT_TESTS)
	@$(MAKE) --no-print-directory unit-test
	@$(MAKE) --no-print-directory integration-test

run: deps
	@$(MAKE) --no-print-directory all
	@$(PYTHON) tests/demo.py --port $(PORT) --module $(MODULE_SO)

# Builds the package from a copy of the tree under build/deb/ and copies the
# .deb to build/; lintian must find no error in it.
deb: deps-deb
	@apxs/build-deb

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

-include $(CORE_OBJECTS:.o=.d) $(ADAPTER_OBJECTS:.o=.d) $(UNIT_OBJECTS:.o=.d)
