// libFuzzer target: the Connection-field parsers of the policy core.
//
// Properties, for any bytes: no crash or undefined behaviour; an exact list
// element is also found by the httpd-compatible matcher (so the module never
// keeps a connection core closes); removing a token leaves no such element,
// and removing it again changes nothing.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>

#include "ka_tokens.h"

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
    return 0;
}
