"""Configuration pieces several test files serve: a Lua handler whose body
has no length, one that sleeps, mod_ratelimit splitting the header block, a Keep-Alive
header forged by mod_headers, CGI, and a pool of four workers."""


# -- reusable configuration pieces -------------------------------------------
# /stream answers with a body of unknown length (the handler flushes before
# it is done): chunked for HTTP/1.1, "read to EOF" and close for HTTP/1.0.
STREAM_LUA = b"""\
function handle(r)
  r.content_type = "text/plain"
  r:puts("part one\\n")
  r:flush()
  r:puts("part two\\n")
  return apache2.OK
end
"""
STREAM_FILES = {"scripts/stream.lua": STREAM_LUA}
# mod_ratelimit passes the header block on in pieces of 204 bytes after
# HTTP_HEADER wrote it; X-Pad (the query string) moves the Keep-Alive line
# across the pieces' boundaries.
RATE_LIMITED_CONFIG = """\
<Location /rate-limited>
    SetOutputFilter RATE_LIMIT
    SetEnv rate-limit 1
    Header set X-Pad "expr=%{QUERY_STRING}"
</Location>
"""

# /slow?MS keeps its worker busy for MS milliseconds (1000 without a query):
# map it with LuaMapHandler "^/slow$" "@DIR@/scripts/slow.lua" handle.
SLOW_MS_LUA = b"""\
function handle(r)
  r.content_type = "text/plain"
  r.usleep((tonumber(r.args) or 1000) * 1000)
  r:puts("slept\\n")
  return apache2.OK
end
"""
SLOW_MS_FILES = {"scripts/slow.lua": SLOW_MS_LUA}

STREAM_CONFIG = 'LuaMapHandler "^/stream$" "@DIR@/scripts/stream.lua" handle\n'

# /hdr/ has a forged Keep-Alive header set by mod_headers on every response.
FORGED_VALUE = "timeout=999, max=999"
FORGED_CONFIG = """\
<Location /hdr>
    Header always set Keep-Alive "%s"
</Location>
""" % FORGED_VALUE


def cgi_module(mpm):
    """The CGI module Debian enables for ``mpm`` (a2enmod cgi picks cgid
    under the threaded MPMs)."""
    return "cgi" if mpm == "prefork" else "cgid"


def cgi_directory_config(directory="@DOCROOT@/cgi"):
    return """\
<Directory "%s">
    Options +ExecCGI
    SetHandler cgi-script
</Directory>
""" % directory


# A pool of four workers, per MPM: four prefork processes, or one process
# of four threads (worker, event), for tests that fill the pool.
FOUR_WORKERS = {
    "prefork": """\
        StartServers 4
        MinSpareServers 4
        MaxSpareServers 4
        ServerLimit 4
        MaxRequestWorkers 4
        """,
    "worker": """\
        StartServers 1
        ServerLimit 1
        ThreadLimit 4
        ThreadsPerChild 4
        MinSpareThreads 1
        MaxSpareThreads 5
        MaxRequestWorkers 4
        """,
}
FOUR_WORKERS["event"] = FOUR_WORKERS["worker"]
