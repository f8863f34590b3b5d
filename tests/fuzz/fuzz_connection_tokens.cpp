// libFuzzer target: the Connection-field parsers of the policy core, and the
// header-block rewriter built on them.
//
// Properties, for any bytes: no crash or undefined behaviour; an exact list
// element is also found by the httpd-compatible matcher (so the module never
// keeps a connection core closes); removing a token leaves no such element,
// and removing it again changes nothing. Stripping Keep-Alive from a header
// block leaves no Keep-Alive field and no keep-alive Connection element
// before the blank line, never touches what follows it, and is idempotent.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>

#include "core/connection_tokens.h"
#include "core/wire_format.h"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    const std::string_view field(reinterpret_cast<const char*>(data), size);
    for (std::string_view token : {std::string_view("close"), std::string_view("keep-alive")}) {
        const bool element = keepalive::list_has_token(field, token);
        if (element && field.find('\0') == std::string_view::npos && !keepalive::httpd_find_token(field, token)) {
            std::abort();
        }
        const std::string without = keepalive::list_without_token(field, token);
        if (keepalive::list_has_token(without, token)) std::abort();
        if (keepalive::list_without_token(without, token) != without) std::abort();
    }

    // The one-pass scan agrees with the single-token functions.
    const keepalive::ConnectionTokens tokens = keepalive::scan_connection_tokens(field);
    if (tokens.close != keepalive::list_has_token(field, "close") ||
        tokens.keep_alive != keepalive::list_has_token(field, "keep-alive") ||
        tokens.httpd_close != keepalive::httpd_find_token(field, "close") ||
        tokens.httpd_keep_alive != keepalive::httpd_find_token(field, "keep-alive")) {
        std::abort();
    }

    const std::string stripped = keepalive::strip_keep_alive_fields(field, true);
    if (keepalive::strip_keep_alive_fields(stripped, true) != stripped) std::abort();
    if (keepalive::strip_keep_alive_fields(stripped, false) != stripped) std::abort();
    const std::size_t blank = field.find("\r\n\r\n");
    if (blank != std::string_view::npos && field.find("\n\n") == std::string_view::npos) {
        // Everything after the header block's end comes through unchanged.
        const std::string_view body = field.substr(blank + 4);
        if (stripped.size() < body.size() || stripped.compare(stripped.size() - body.size(), body.size(), body) != 0) {
            std::abort();
        }
    }
    return 0;
}
