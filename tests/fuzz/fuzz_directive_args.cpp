// libFuzzer target: the directive-argument parsers of the policy core.
//
// Properties: no crash; an accepted count prints back to the same digits
// (leading zeros aside) and is in range; a percentage is 0..100 %; header
// modes are exactly the three names; every timeout check terminates with a
// verdict consistent with its bounds.
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <string>
#include <string_view>

#include "core/directive_args.h"
#include "core/connection_tokens.h"

namespace {

void check(bool condition) {
    if (!condition) std::abort();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    const std::string_view text(reinterpret_cast<const char*>(data), size);

    if (const auto count = keepalive::parse_request_count(text)) {
        check(*count >= 0);
        std::string_view digits = text;
        while (digits.size() > 1 && digits.front() == '0') digits.remove_prefix(1);
        check(std::to_string(*count) == digits);
    }
    if (const auto permille = keepalive::parse_percentage(text)) check(*permille >= 0 && *permille <= 1000);
    if (const auto mode = keepalive::parse_header_mode(text)) {
        check(keepalive::ascii_iequals(text, "Always") || keepalive::ascii_iequals(text, "OnRequest") ||
              keepalive::ascii_iequals(text, "Never"));
        (void)mode;
    }
    if (size >= 16) {
        std::int64_t a = 0;
        std::int64_t b = 0;
        std::memcpy(&a, data, 8);
        std::memcpy(&b, data + 8, 8);
        check(keepalive::check_timeout(a).has_value() == (a < 0 || a / 1000000 > 2147483647));
        check(keepalive::check_advertised_timeout(a, b).has_value() == (a > b));
        const int shrink = static_cast<int>(a % 1001);
        const int close = static_cast<int>(b % 1001);
        check(keepalive::check_adaptive_thresholds(shrink, close).has_value() == (shrink >= close));
    }
    return 0;
}
