// The request note "keepalive" (%{keepalive}n): what was decided and why,
// for the access log. Formatting and adding it costs about 80 instructions
// a request, so it is made only where something reads it.
#ifndef MOD_KEEPALIVE_HTTPD_LOG_NOTE_H
#define MOD_KEEPALIVE_HTTPD_LOG_NOTE_H

#include "httpd.h"

#include "httpd/version_guard.h"

namespace keepalive::httpd {

// post_config: whether the configuration reads the note.
void register_log_note_hooks();

// Whether any directive of the configuration names the note: a log format
// with %{keepalive}n (or %<, %>), an ErrorLogFormat, or note('keepalive') in
// an expression. Set in the parent; children inherit it.
bool note_is_read();

}  // namespace keepalive::httpd

#endif  // MOD_KEEPALIVE_HTTPD_LOG_NOTE_H
