#include "core/directive_args.h"

#include "core/connection_tokens.h"

namespace keepalive {
namespace {

constexpr std::int64_t kMicrosPerSecond = 1000000;
constexpr std::int64_t kMaxSeconds = 2147483647;  // timeout= must fit an int
constexpr std::int64_t kMaxRequestCount = 2147483647;

std::string format_ms(std::int64_t microseconds) { return std::to_string(microseconds / 1000) + "ms"; }

}  // namespace

std::optional<std::string> check_timeout(std::int64_t microseconds) {
    if (microseconds < 0) return std::string("must not be negative");
    if (microseconds / kMicrosPerSecond > kMaxSeconds) return "must be at most " + std::to_string(kMaxSeconds) + "s";
    return std::nullopt;
}

std::optional<std::string> check_lifetime(std::int64_t microseconds) { return check_timeout(microseconds); }

std::optional<std::string> check_advertised_timeout(std::int64_t advertised_us, std::int64_t idle_us) {
    if (advertised_us <= idle_us) return std::nullopt;
    return "advertised " + format_ms(advertised_us) + " is above the idle timeout the server enforces (" +
           format_ms(idle_us) + "): clients would be told to wait longer than the server does";
}

std::optional<int> parse_request_count(std::string_view text) {
    if (text.empty() || text.size() > 10) return std::nullopt;
    std::int64_t value = 0;
    for (char c : text) {
        if (c < '0' || c > '9') return std::nullopt;
        value = value * 10 + (c - '0');
    }
    if (value > kMaxRequestCount) return std::nullopt;
    return static_cast<int>(value);
}

std::optional<int> parse_percentage(std::string_view text) {
    if (!text.empty() && text.back() == '%') text.remove_suffix(1);
    const auto value = parse_request_count(text);
    if (!value || *value > 100) return std::nullopt;
    return *value * 10;
}

std::optional<std::string> check_adaptive_thresholds(int shrink_at_permille, int close_at_permille) {
    if (shrink_at_permille < close_at_permille) return std::nullopt;
    return "the occupancy where idle timeouts start to shrink (" + std::to_string(shrink_at_permille / 10) +
           "%) must be below the one where connections are closed (" + std::to_string(close_at_permille / 10) + "%)";
}

std::optional<HeaderMode> parse_header_mode(std::string_view text) {
    if (ascii_iequals(text, "Always")) return HeaderMode::Always;
    if (ascii_iequals(text, "OnRequest")) return HeaderMode::OnRequest;
    if (ascii_iequals(text, "Never")) return HeaderMode::Never;
    return std::nullopt;
}

}  // namespace keepalive
