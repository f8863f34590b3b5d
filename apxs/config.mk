# Build settings taken from the installed httpd through apxs, so the module is
# compiled exactly as httpd's own modules are (same defines, same includes).
APXS ?= $(shell command -v apxs 2>/dev/null || command -v apxs2 2>/dev/null || echo apxs)

ifneq ($(wildcard $(APXS)),)
APXS_INCLUDEDIR     := $(shell $(APXS) -q INCLUDEDIR)
APXS_APR_INCLUDEDIR := $(shell $(APXS) -q APR_INCLUDEDIR)
APXS_APU_INCLUDEDIR := $(shell $(APXS) -q APU_INCLUDEDIR 2>/dev/null)
APXS_EXTRA_CPPFLAGS := $(shell $(APXS) -q EXTRA_CPPFLAGS)
APXS_LIBEXECDIR     := $(shell $(APXS) -q LIBEXECDIR)
APXS_SBINDIR        := $(shell $(APXS) -q SBINDIR)
APXS_TARGET         := $(shell $(APXS) -q TARGET)
endif

HTTPD_CPPFLAGS := $(APXS_EXTRA_CPPFLAGS) -I$(APXS_INCLUDEDIR) -I$(APXS_APR_INCLUDEDIR) \
                  $(if $(APXS_APU_INCLUDEDIR),-I$(APXS_APU_INCLUDEDIR))
