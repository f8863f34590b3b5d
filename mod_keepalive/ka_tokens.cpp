#include "ka_tokens.h"

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

// `line` (one field, with its line ending) starts with `name` and a colon.
bool is_field(std::string_view line, std::string_view name) {
    return line.size() > name.size() && line[name.size()] == ':' && ascii_iequals(line.substr(0, name.size()), name);
}

bool is_blank_line(std::string_view line) { return line == "\n" || line == "\r\n"; }

}  // namespace

bool ascii_iequals(std::string_view a, std::string_view b) {
    if (a.size() != b.size()) return false;
    for (std::size_t i = 0; i < a.size(); ++i) {
        if (ascii_lower(a[i]) != ascii_lower(b[i])) return false;
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

bool httpd_find_token(std::string_view line, std::string_view token) {
    // RFC 9110 tchar: the characters that do not stop a token in httpd.
    auto is_tchar = [](char c) {
        if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9')) return true;
        return c != '\0' && std::string_view("!#$%&'*+-.^_`|~").find(c) != std::string_view::npos;
    };
    std::size_t i = 0;
    while (i < line.size()) {
        while (i < line.size() && !is_tchar(line[i])) ++i;
        const std::size_t start = i;
        while (i < line.size() && is_tchar(line[i])) ++i;
        const std::string_view element = line.substr(start, i - start);
        if (!element.empty() && element.size() <= token.size() &&
            ascii_iequals(element, token.substr(0, element.size()))) {
            return true;
        }
    }
    return false;
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
    return out;
}

}  // namespace keepalive
