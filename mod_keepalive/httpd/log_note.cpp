// Whether the configuration reads the "keepalive" note (log_note.h).
//
// mod_log_config keeps its formats to itself, and a format may be defined
// in one place and used in another (LogFormat, CustomLog, TransferLog,
// GlobalLog, ErrorLogFormat, in any section or included file). The whole
// configuration tree, as read, is what httpd offers every module
// (ap_conftree, which mod_info shows): a directive anywhere in it whose
// arguments name the note turns it on. Naming it in a section that does not
// apply, or in a format no log uses, turns it on too: the note then costs
// what it always did, and no reader is ever without it.

#include "httpd/log_note.h"

#include <cctype>
#include <cstring>
#include <string>

#include "http_config.h"
#include "http_log.h"
#include "util_cfgtree.h"

APLOG_USE_MODULE(keepalive);

namespace keepalive::httpd {
namespace {

bool reads_note = true;  // until post_config has looked

std::string lowercase(const char* text) {
    std::string out(text);
    for (char& ch : out) ch = static_cast<char>(std::tolower(static_cast<unsigned char>(ch)));
    return out;
}

// "%{keepalive}n", "%>{KeepAlive}n" (notes are looked up without regard to
// case), or ap_expr's note('keepalive') / note("keepalive").
bool names_note(const char* args) {
    // Both forms name "keepalive": most arguments (every line of every
    // virtual host) are ruled out without a copy.
    if (!args || !std::strpbrk(args, "kK") || !ap_strcasestr(args, "keepalive")) return false;
    const std::string text = lowercase(args);
    if (text.find("{keepalive}n") != std::string::npos) return true;
    for (std::size_t at = text.find("note("); at != std::string::npos; at = text.find("note(", at + 5)) {
        std::size_t arg = at + 5;
        while (arg < text.size() && (text[arg] == ' ' || text[arg] == '\'' || text[arg] == '"')) ++arg;
        if (text.compare(arg, 9, "keepalive") == 0) return true;
    }
    return false;
}

bool tree_names_note(const ap_directive_t* node) {
    for (; node; node = node->next) {
        if (names_note(node->args) || tree_names_note(node->first_child)) return true;
    }
    return false;
}

int log_note_post_config(apr_pool_t*, apr_pool_t*, apr_pool_t*, server_rec* s) {
    reads_note = tree_names_note(ap_conftree);
    ap_log_error(APLOG_MARK, APLOG_DEBUG, 0, s,
                 "mod_keepalive: the configuration %s the keepalive note: %s", reads_note ? "reads" : "never reads",
                 reads_note ? "set on every response" : "not set");
    return OK;
}

}  // namespace

void register_log_note_hooks() { ap_hook_post_config(log_note_post_config, nullptr, nullptr, APR_HOOK_MIDDLE); }

bool note_is_read() { return reads_note; }

}  // namespace keepalive::httpd
