#include "core/wire_format.h"

#include <algorithm>
#include <charconv>
#include <cstring>

#include "core/connection_tokens.h"

namespace keepalive {
namespace {

// `line` (one field, with its line ending) starts with `name` and a colon.
bool is_field(std::string_view line, std::string_view name) {
    return line.size() > name.size() && line[name.size()] == ':' && ascii_iequals(line.substr(0, name.size()), name);
}

bool is_blank_line(std::string_view line) { return line == "\n" || line == "\r\n"; }

}  // namespace

std::string_view Decision::connection_header() const {
    switch (verdict) {
        case Verdict::Keep: return "Keep-Alive";
        case Verdict::Close: return "close";
        case Verdict::NotApplicable: break;
    }
    return {};
}

namespace {

// Writers for the two formatters below, whose buffers are sized for the
// longest output (static_asserts there), so they need no bounds checks; a
// copy of known length compiles to a few moves.
template <std::size_t N>
char* put(char* out, const char (&text)[N]) {
    std::memcpy(out, text, N - 1);
    return out + N - 1;
}

constexpr std::size_t kMaxIntDigits = 11;  // "-2147483648"

constexpr char kDigitPairs[] =
    "00010203040506070809101112131415161718192021222324252627282930313233343536373839"
    "40414243444546474849505152535455565758596061626364656667686970717273747576777879"
    "8081828384858687888990919293949596979899";

// Most timeouts and request budgets have one or two digits.
inline char* put(char* out, int value) {
    if (value >= 0 && value < 10) {
        *out = static_cast<char>('0' + value);
        return out + 1;
    }
    if (value >= 10 && value < 100) {
        std::memcpy(out, &kDigitPairs[2 * value], 2);
        return out + 2;
    }
    return std::to_chars(out, out + kMaxIntDigits, value).ptr;
}

}  // namespace

std::size_t format_keep_alive_value(const Decision& d, char (&value)[kKeepAliveValueSize]) {
    static_assert(kKeepAliveValueSize > sizeof("timeout=, max=") + 2 * kMaxIntDigits);
    char* out = value;
    if (d.keep()) {
        out = put(put(out, "timeout="), d.advertised_timeout_s);
        if (d.max_remaining >= 0) out = put(put(out, ", max="), d.max_remaining);
    }
    *out = '\0';
    return static_cast<std::size_t>(out - value);
}

std::size_t format_keep_alive_fields(const Decision& d, char (&fields)[kKeepAliveFieldsSize]) {
    // The longest fields, and the CRLF that ends a header block after them
    // (the adapter writes both into a buffer of this size).
    static_assert(kKeepAliveFieldsSize >= sizeof("Keep-Alive: timeout=, max=") - 1 + 2 * kMaxIntDigits +
                                              sizeof("\r\nConnection: Keep-Alive\r\n") - 1 + 2);
    if (!d.keep()) return 0;
    char* out = put(put(fields, "Keep-Alive: timeout="), d.advertised_timeout_s);
    if (d.max_remaining >= 0) out = put(put(out, ", max="), d.max_remaining);
    out = put(out, "\r\nConnection: Keep-Alive\r\n");
    return static_cast<std::size_t>(out - fields);
}

std::string Decision::keep_alive_header() const {
    char value[kKeepAliveValueSize];
    const std::size_t length = format_keep_alive_value(*this, value);
    return std::string(value, length);
}

std::size_t format_outcome_note(const Decision& d, bool kept, char (&note)[kOutcomeNoteSize]) {
    static_assert(kOutcomeNoteSize > sizeof("keep timeout= max=") + 2 * kMaxIntDigits);
    char* out = note;
    if (kept) {
        out = put(put(out, "keep timeout="), d.advertised_timeout_s);
        if (d.max_remaining >= 0) out = put(put(out, " max="), d.max_remaining);
    } else {
        const char* reason = reason_name(d.reason);
        const std::size_t length = std::min(std::strlen(reason), kOutcomeNoteSize - sizeof("close "));
        out = put(out, "close ");
        std::memcpy(out, reason, length);
        out += length;
    }
    *out = '\0';
    return static_cast<std::size_t>(out - note);
}

std::string strip_keep_alive_fields(std::string_view block, bool connection_too) {
    std::string out;
    out.reserve(block.size());
    bool in_fields = true;
    for (std::size_t start = 0; start < block.size();) {
        const std::size_t newline = block.find('\n', start);
        const std::size_t next = newline == std::string_view::npos ? block.size() : newline + 1;
        const std::string_view line = block.substr(start, next - start);
        const bool is_status_line = start == 0;
        start = next;
        if (!in_fields || is_status_line) {
            out += line;
            continue;
        }
        if (is_blank_line(line)) {
            in_fields = false;
        } else if (is_field(line, "Keep-Alive")) {
            continue;
        } else if (connection_too && is_field(line, "Connection")) {
            std::string_view value = line.substr(sizeof("Connection:") - 1);
            std::size_t ending = 0;
            if (!value.empty() && value.back() == '\n') ending = value.size() >= 2 && value[value.size() - 2] == '\r' ? 2 : 1;
            const std::string_view line_end = value.substr(value.size() - ending);
            value.remove_suffix(ending);
            if (list_has_token(value, "keep-alive")) {
                const std::string rest = list_without_token(value, "keep-alive");
                if (!rest.empty()) {
                    out += "Connection: ";
                    out += rest;
                    out += line_end;
                }
                continue;
            }
        }
        out += line;
    }
    // No empty line: only part of a block (a filter upstream split it).
    // Rewriting it could cut a field in two; leave it as it came.
    if (in_fields) return std::string(block);
    return out;
}

}  // namespace keepalive
