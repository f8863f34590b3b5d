#!/usr/bin/env bash
# make test-package: the Debian package, end to end, on this machine's apache2.
#
# Builds build/libapache2-mod-keepalive_*.deb ("make deb"), installs it with
# apt-get, enables it with a2enmod, checks the configuration with
# "apache2ctl configtest", starts apache2 with the distro's own /etc/apache2
# configuration and checks with curl that responses carry the module's
# Keep-Alive header (and do not without the module), stops apache2, purges the
# package and checks that nothing of it is left, enabled or not.
#
# apache2 listens only on 127.0.0.1, on a free port: /etc/apache2/ports.conf
# is replaced for the duration of the test and put back whatever happens.
# Needs root. Refuses to run while the distro's apache2 is already running.
set -uo pipefail
cd "$(dirname "$0")/../.."

PACKAGE=libapache2-mod-keepalive
CONFDIR=/etc/apache2
PORTS_CONF=$CONFDIR/ports.conf
PIDFILE=/var/run/apache2/apache2.pid
MODULE=/usr/lib/apache2/modules/mod_keepalive.so
EXPECTED_HEADER="Keep-Alive: timeout=5, max=100"   # Debian's apache2.conf values

if [ "$(id -u)" != 0 ]; then
    echo "test-package: needs root: it installs $PACKAGE into this machine's apache2" >&2
    echo "test-package: with apt-get, starts apache2 and purges the package again." >&2
    echo "test-package: run it as root, e.g. 'sudo make test-package'." >&2
    exit 1
fi

passed=0
failed=0
pass() { passed=$((passed + 1)); echo "test-package: ok - $1"; }
fail() { failed=$((failed + 1)); echo "test-package: FAIL - $1" >&2; }
summary() { echo "test-package: $passed passed, $failed failed"; }
# A step the rest depends on failed: count it, clean up, stop here.
abort() { fail "$1"; summary; exit 1; }

apache_pid() {
    local pid
    pid=$(cat "$PIDFILE" 2>/dev/null) || return 1
    [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null && echo "$pid"
}

ports_backup=""
started=0
installed=0

stop_apache() {
    local pid i
    pid=$(apache_pid) || return 0
    apache2ctl stop >/dev/null 2>&1
    for i in $(seq 1 100); do              # at most 10 s
        kill -0 "$pid" 2>/dev/null || return 0
        sleep 0.1
    done
    echo "test-package: apache2 ($pid) did not stop in 10 s: killing it" >&2
    kill -KILL "$pid" 2>/dev/null
    return 1
}

cleanup() {
    local rc=$?
    if [ "$started" = 1 ]; then stop_apache; fi
    if [ -n "$ports_backup" ]; then
        cp -p "$ports_backup" "$PORTS_CONF" && rm -f "$ports_backup"
    fi
    if [ "$installed" = 1 ] && dpkg-query -W -f='${Status}' "$PACKAGE" 2>/dev/null | grep -q 'ok installed'; then
        echo "test-package: cleaning up: purging $PACKAGE"
        DEBIAN_FRONTEND=noninteractive apt-get purge -y -q -o Dpkg::Use-Pty=0 "$PACKAGE" >/dev/null 2>&1
    fi
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# Starts apache2 with the distro's configuration; waits (at most 10 s) until
# it answers.
start_apache() {
    local i
    apache2ctl start || return 1
    started=1
    for i in $(seq 1 100); do
        curl -s -o /dev/null --max-time 1 "http://127.0.0.1:$port/" && return 0
        sleep 0.1
    done
    return 1
}

# Response headers of GET / over HTTP/1.1, with no Connection header sent.
get_headers() {
    curl -sS --http1.1 --max-time 5 -o /dev/null -D - "http://127.0.0.1:$port/" | tr -d '\r'
}

# --- before: what is on the machine ------------------------------------------
apxs/install-deps apache2 apache2-utils curl python3 || abort "installing apache2, curl, python3"
if pid=$(apache_pid); then
    echo "test-package: apache2 is already running (pid $pid): this test starts and stops" >&2
    echo "test-package: the distro's apache2 itself, so it leaves a running one alone. Stop it first." >&2
    abort "apache2 not running before the test"
fi
if dpkg-query -W -f='${Status}' "$PACKAGE" 2>/dev/null | grep -q 'ok installed'; then
    echo "test-package: $PACKAGE is installed already (an earlier run?): purging it first"
    DEBIAN_FRONTEND=noninteractive apt-get purge -y -q -o Dpkg::Use-Pty=0 "$PACKAGE" >/dev/null || abort "purging an earlier $PACKAGE"
fi

# --- build -------------------------------------------------------------------
make --no-print-directory deb || abort "make deb"
version=$(dpkg-parsechangelog -S Version)
upstream=${version#*:}
upstream=${upstream%-*}
deb="build/${PACKAGE}_${version#*:}_$(dpkg --print-architecture).deb"
[ -f "$deb" ] || abort "make deb left $deb"
pass "make deb built $deb"

api=$(dpkg-query -W -f='${Provides}' apache2-bin | tr ',' '\n' | sed 's/ //g' | grep -m1 -E '^apache2-api-[0-9]+$')
depends=$(dpkg-deb -f "$deb" Depends)
if [ -n "$api" ] && tr ',' '\n' <<<"$depends" | sed 's/ //g' | grep -qx "$api"; then
    pass "the package depends on $api, the module ABI of this apache2"
else
    fail "the package depends on the module ABI '$api' (Depends: $depends)"
fi

# --- install, enable, configtest ---------------------------------------------
installed=1
DEBIAN_FRONTEND=noninteractive apt-get install -y -q -o Dpkg::Use-Pty=0 "./$deb" </dev/null || abort "apt-get install ./$deb"
if [ -f "$MODULE" ] && cmp -s conf.d/keepalive.load "$CONFDIR/mods-available/keepalive.load" &&
   cmp -s conf.d/keepalive.conf "$CONFDIR/mods-available/keepalive.conf"; then
    pass "installed $MODULE and mods-available/keepalive.{load,conf} as in conf.d/"
else
    fail "installed $MODULE and mods-available/keepalive.{load,conf} as in conf.d/"
fi
if [ -x /usr/sbin/keepalivectl ] && /usr/sbin/keepalivectl --help | grep -q 'graceful-stop'; then
    pass "installed /usr/sbin/keepalivectl, which runs"
else
    fail "installed /usr/sbin/keepalivectl, which runs"
fi
if grep -a -q "mod_keepalive/$upstream" "$MODULE"; then
    pass "the installed module reports version $upstream, as debian/changelog says"
else
    fail "the installed module reports version $upstream"
fi

a2enmod keepalive || abort "a2enmod keepalive"
[ -L "$CONFDIR/mods-enabled/keepalive.load" ] && [ -L "$CONFDIR/mods-enabled/keepalive.conf" ] ||
    abort "a2enmod keepalive: mods-enabled/keepalive.{load,conf} link to mods-available"
pass "a2enmod keepalive"

apache2ctl configtest || abort "apache2ctl configtest"
pass "apache2ctl configtest"

# --- run it on loopback --------------------------------------------------------
port=$(free_port) || abort "finding a free port"
ports_backup=$(mktemp) || abort "mktemp"
cp -p "$PORTS_CONF" "$ports_backup" || abort "saving $PORTS_CONF"
printf '# Written by mod_keepalive tests/package/test-package.sh for the test; restored after it.\nListen 127.0.0.1:%s\n' \
    "$port" > "$PORTS_CONF"
echo "test-package: apache2 on 127.0.0.1:$port"

start_apache || abort "apache2 starts with the distro configuration and answers on 127.0.0.1:$port"
headers=$(get_headers)
echo "$headers" | sed 's/^/    /'
if grep -qix "$EXPECTED_HEADER" <<<"$headers"; then
    pass "with the module, an HTTP/1.1 response carries '$EXPECTED_HEADER'"
else
    fail "with the module, an HTTP/1.1 response carries '$EXPECTED_HEADER'"
fi
if grep -i '^Server:' <<<"$headers" | grep -q mod_keepalive; then
    fail "the Server banner names mod_keepalive under Debian's 'ServerTokens OS'"
else
    pass "the Server banner leaves mod_keepalive out under Debian's 'ServerTokens OS'"
fi
stop_apache || fail "apache2 stops within 10 s"
started=0

a2dismod -q keepalive || abort "a2dismod keepalive"
start_apache || abort "apache2 starts without the module"
headers=$(get_headers)
if grep -qi '^Keep-Alive:' <<<"$headers"; then
    fail "without the module, an HTTP/1.1 response carries no Keep-Alive header"
else
    pass "without the module, an HTTP/1.1 response carries no Keep-Alive header"
fi
stop_apache || fail "apache2 stops within 10 s"
started=0
a2enmod -q keepalive || abort "a2enmod keepalive again, for the purge"

# --- purge ----------------------------------------------------------------------
cp -p "$ports_backup" "$PORTS_CONF" && rm -f "$ports_backup" && ports_backup=""
DEBIAN_FRONTEND=noninteractive apt-get purge -y -q -o Dpkg::Use-Pty=0 "$PACKAGE" </dev/null || abort "apt-get purge $PACKAGE"
installed=0
left=$(ls -d "$CONFDIR"/mods-enabled/keepalive.* "$CONFDIR"/mods-available/keepalive.* "$MODULE" /usr/sbin/keepalivectl \
          /var/lib/apache2/module/*/keepalive 2>/dev/null)
if [ -z "$left" ] && ! a2query -q -m keepalive; then
    pass "after the purge nothing of the module is left, enabled or not"
else
    fail "after the purge nothing of the module is left; found: $(echo $left)"
fi

summary
[ "$failed" = 0 ]
