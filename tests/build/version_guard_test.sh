#!/usr/bin/env bash
# The build refuses httpd versions the module does not support, with a
# message that names the minimum (mod_keepalive/httpd/version_guard.h).
# Compiles the module record against copies of the installed httpd headers
# whose ap_mmn.h claims an older 2.4 (module magic 20120211.115, httpd
# 2.4.48) and another branch (trunk's major), and checks each stops with
# the guard's message; then against the headers as installed, which must
# compile.
#
# Usage: tests/build/version_guard_test.sh CXX INCLUDEDIR [other -I/-isystem flags...]
set -euo pipefail
cxx=$1 includedir=$2
shift 2
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
source=mod_keepalive/httpd/module.cpp
compile() {  # compile HEADERS_DIR: module.cpp against those headers
    "$cxx" -std=c++17 -fsyntax-only -DMOD_KEEPALIVE_VERSION='"test"' -Imod_keepalive \
        -isystem "$1" "$@" "$source" 2>&1
}
failures=0
expect_refusal() {  # expect_refusal NAME SED_EXPRESSION MESSAGE
    local name=$1 expression=$2 message=$3 headers="$work/$1"
    cp -r "$includedir" "$headers"
    sed -i "$expression" "$headers/ap_mmn.h"
    local output
    if output=$(compile "$headers" "${extra[@]}"); then
        echo "FAIL $name: the module compiled against these headers" >&2; failures=$((failures + 1))
    elif ! grep -qF "$message" <<<"$output"; then
        echo "FAIL $name: no '$message' in:" >&2; echo "$output" | head -5 >&2; failures=$((failures + 1))
    else
        echo "ok   $name: refused with '$message'"
    fi
}
extra=("$@")
expect_refusal httpd-2.4.48 's/^#define MODULE_MAGIC_NUMBER_MINOR [0-9]*/#define MODULE_MAGIC_NUMBER_MINOR 115/' \
    "mod_keepalive needs Apache httpd 2.4.49 or later"
expect_refusal httpd-trunk 's/^#define MODULE_MAGIC_NUMBER_MAJOR [0-9]*/#define MODULE_MAGIC_NUMBER_MAJOR 20211221/' \
    "mod_keepalive supports Apache httpd 2.4 only"
if output=$(compile "$includedir" "${extra[@]}"); then
    echo "ok   installed headers: compiled"
else
    echo "FAIL installed headers did not compile:" >&2; echo "$output" | head -5 >&2; failures=$((failures + 1))
fi
echo "version guard checks: $((3 - failures)) of 3 as expected"
test "$failures" -eq 0
