// The bytes the module puts on the wire and in the logs: the Keep-Alive
// field value, the two fields core writes for clients that sent the token,
// the note for the access log (%{keepalive}n), and the rewriting of a
// serialized header block.
//
// Part of the policy core: no httpd or APR headers here. The writers format
// into caller-provided buffers sized for the longest output, without printf
// or allocation: they run on every response.
#ifndef MOD_KEEPALIVE_CORE_WIRE_FORMAT_H
#define MOD_KEEPALIVE_CORE_WIRE_FORMAT_H

#include <cstddef>
#include <string>
#include <string_view>

#include "core/policy.h"

namespace keepalive {

// The Keep-Alive field value, "timeout=5, max=99" (or "timeout=5" when
// unlimited), written into `out` without allocating; NUL-terminated; returns
// the length (0 unless the decision keeps the connection).
constexpr std::size_t kKeepAliveValueSize = 48;
std::size_t format_keep_alive_value(const Decision& d, char (&out)[kKeepAliveValueSize]);

// The two header fields core writes on a kept response to a client that sent
// the token, serialized for a header block:
// "Keep-Alive: timeout=5, max=99\r\nConnection: Keep-Alive\r\n". Written into
// `out` without allocating; returns the length (0 unless the decision keeps
// the connection), which leaves room for 2 more bytes. Not NUL-terminated.
constexpr std::size_t kKeepAliveFieldsSize = 96;
std::size_t format_keep_alive_fields(const Decision& d, char (&out)[kKeepAliveFieldsSize]);

// What the module notes for the access log and the trace log about one
// response, given whether the connection was kept: "keep timeout=5 max=99",
// "keep timeout=5" (unlimited), or "close budget-reached". Writes into `out`
// without allocating; always NUL-terminated; returns the length.
constexpr std::size_t kOutcomeNoteSize = 64;
std::size_t format_outcome_note(const Decision& d, bool kept, char (&out)[kOutcomeNoteSize]);

// A serialized HTTP/1.x response header block (status line, CRLF- or
// LF-terminated fields, an empty line, and possibly body bytes after it)
// without its Keep-Alive fields and, when `connection_too`, without the
// keep-alive element of its Connection fields (a field left empty goes too).
// Nothing after the empty line changes; a block without its empty line (a
// part of one) comes back unchanged.
std::string strip_keep_alive_fields(std::string_view block, bool connection_too);

}  // namespace keepalive

#endif  // MOD_KEEPALIVE_CORE_WIRE_FORMAT_H
