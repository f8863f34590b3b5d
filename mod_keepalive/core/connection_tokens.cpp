#include "core/connection_tokens.h"

namespace keepalive {
namespace {

bool is_ows(char c) { return c == ' ' || c == '\t'; }

char ascii_lower(char c) { return (c >= 'A' && c <= 'Z') ? static_cast<char>(c - 'A' + 'a') : c; }

std::string_view trim(std::string_view s) {
    while (!s.empty() && is_ows(s.front())) s.remove_prefix(1);
    while (!s.empty() && is_ows(s.back())) s.remove_suffix(1);
    return s;
}

// Calls visit(element) for each trimmed, non-empty list element. A comma
// inside a quoted string does not split, so `"a, close"` stays one element.
template <typename Visit>
void for_each_element(std::string_view field, Visit visit) {
    std::size_t start = 0;
    bool quoted = false;
    for (std::size_t i = 0; i <= field.size(); ++i) {
        if (i < field.size()) {
            const char c = field[i];
            if (quoted && c == '\\' && i + 1 < field.size()) {
                ++i;
                continue;
            }
            if (c == '"') quoted = !quoted;
            if (c != ',' || quoted) continue;
        }
        const std::string_view element = trim(field.substr(start, i - start));
        if (!element.empty()) visit(element);
        start = i + 1;
    }
}

}  // namespace

bool ascii_iequals(std::string_view a, std::string_view b) {
    if (a.size() != b.size()) return false;
    for (std::size_t i = 0; i < a.size(); ++i) {
        if (a[i] != b[i] && ascii_lower(a[i]) != ascii_lower(b[i])) return false;
    }
    return true;
}

bool list_has_token(std::string_view field, std::string_view token) {
    bool found = false;
    for_each_element(field, [&](std::string_view element) {
        if (ascii_iequals(element, token)) found = true;
    });
    return found;
}

namespace {

struct TcharTable {
    bool is[256] = {};
    constexpr TcharTable() {
        for (int c = 0; c < 256; ++c) {
            is[c] = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9');
        }
        for (const char* p = "!#$%&'*+-.^_`|~"; *p; ++p) is[static_cast<unsigned char>(*p)] = true;
    }
};

// RFC 9110 tchar: the characters that do not stop a token in httpd.
constexpr TcharTable kTchar;

bool is_tchar(char c) { return kTchar.is[static_cast<unsigned char>(c)]; }

// Calls visit(element) for each run of tchars, as ap_find_token() splits.
template <typename Visit>
void for_each_httpd_token(std::string_view line, Visit visit) {
    std::size_t i = 0;
    while (i < line.size()) {
        while (i < line.size() && !is_tchar(line[i])) ++i;
        const std::size_t start = i;
        while (i < line.size() && is_tchar(line[i])) ++i;
        if (i > start) visit(line.substr(start, i - start));
    }
}

// ap_find_token()'s match: the element is a case-insensitive prefix of token.
bool httpd_matches(std::string_view element, std::string_view token) {
    return element.size() <= token.size() && ascii_iequals(element, token.substr(0, element.size()));
}

}  // namespace

bool httpd_find_token(std::string_view line, std::string_view token) {
    bool found = false;
    for_each_httpd_token(line, [&](std::string_view element) { found = found || httpd_matches(element, token); });
    return found;
}

ConnectionTokens scan_connection_tokens(std::string_view field) {
    ConnectionTokens t;
    if (field.empty()) return t;
    // What nearly every client sends: one compare instead of two passes.
    if (ascii_iequals(field, "keep-alive")) {
        t.keep_alive = t.httpd_keep_alive = true;
        return t;
    }
    if (ascii_iequals(field, "close")) {
        t.close = t.httpd_close = true;
        return t;
    }
    for_each_element(field, [&](std::string_view element) {
        t.close = t.close || ascii_iequals(element, "close");
        t.keep_alive = t.keep_alive || ascii_iequals(element, "keep-alive");
    });
    for_each_httpd_token(field, [&](std::string_view element) {
        t.httpd_close = t.httpd_close || httpd_matches(element, "close");
        t.httpd_keep_alive = t.httpd_keep_alive || httpd_matches(element, "keep-alive");
    });
    return t;
}

std::string list_without_token(std::string_view field, std::string_view token) {
    std::string kept;
    for_each_element(field, [&](std::string_view element) {
        if (ascii_iequals(element, token)) return;
        if (!kept.empty()) kept += ", ";
        kept.append(element.data(), element.size());
    });
    return kept;
}

}  // namespace keepalive
