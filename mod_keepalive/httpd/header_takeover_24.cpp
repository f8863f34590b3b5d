// httpd 2.4 only: taking core's HTTP_HEADER filter over, and editing the
// header block it serializes.
//
// Why this exists. In httpd 2.4 core decides persistence in
// ap_set_keepalive(), called from the HTTP_HEADER filter right before the
// header block is serialized; nothing runs in between, and no hook is
// offered. So the module registers its own function under the name
// HTTP_HEADER: httpd's filter registry (register_filter() in
// server/util_filter.c) reuses an existing name's record and replaces its
// function, and http_core registers first, so the handle http_core adds to
// every request (ap_http_header_filter_handle) now reaches header_filter().
// That does the module's part (policy_path.cpp) and hands the brigade to
// core's public ap_http_header_filter(). No filter is added to any request.
// A module that does the same would silently undo this:
// check_header_takeover() refuses to start then, and "apache2 -t" says why.
//
// After core has written the block, OBSERVE (observe.cpp) may write the two
// Keep-Alive fields into it, or take them back out, with the functions
// below. Growing core's heap bucket in place relies on how 2.4's
// HTTP_HEADER builds the block (one heap bucket with room to spare).
//
// httpd trunk moves the decision into the HTTP1_RESPONSE_OUT filter
// (ap_h1_set_keepalive()), after a response's headers are final but before
// they are serialized; a module for it would act there instead, and this
// file would not be built (version_guard.h refuses other branches).

#include "httpd/header_takeover_24.h"

#include <cstring>
#include <string>

#include "http_config.h"
#include "http_log.h"
#include "http_protocol.h"
#include "http_request.h"
#include "apr_strings.h"

#include "core/wire_format.h"
#include "httpd/policy_path.h"

APLOG_USE_MODULE(keepalive);

namespace keepalive::httpd {
namespace {

constexpr const char kHeaderFilter[] = "HTTP_HEADER";
constexpr const char kStripFilter[] = "KEEPALIVE_STRIP";

ap_filter_rec_t* header_filter_handle;
ap_filter_rec_t* strip_filter_handle;

// What held the name HTTP_HEADER when the module registered it: core's
// ap_http_header_filter, unless a module loaded earlier had taken it over.
ap_out_filter_func displaced_header_filter = nullptr;

// Registered as HTTP_HEADER: runs in core's filter's place, before it, on
// every brigade that reaches it.
apr_status_t header_filter(ap_filter_t* f, apr_bucket_brigade* bb) {
    if (ConnectionState* cs = connection_state(f->r->connection)) {
        // Core writes the header block on an empty brigade too (mod_ext_filter
        // passes one when its command has no output yet).
        if (cs->response.phase != Phase::Recorded) before_core(cs, f, bb);
    }
    return ap_http_header_filter(f, bb);
}

// KEEPALIVE_STRIP: a protocol filter right after HTTP_HEADER, which passes
// it the whole header block in one brigade.
apr_status_t strip_filter(ap_filter_t* f, apr_bucket_brigade* bb) {
    if (APR_BRIGADE_EMPTY(bb)) return ap_pass_brigade(f->next, bb);
    if (f->r->connection->keepalive == AP_CONN_KEEPALIVE) strip_keep_alive_from_block(f->r, bb, false);
    ap_remove_output_filter(f);
    return ap_pass_brigade(f->next, bb);
}

// At start-up and for "apache2 -t": the module acts through HTTP_HEADER, so
// it must be the one holding that name, in place of core's.
int check_header_takeover(apr_pool_t*, apr_pool_t*, apr_pool_t*, server_rec*) {
    const char* problem = nullptr;
    if (displaced_header_filter && displaced_header_filter != ap_http_header_filter &&
        displaced_header_filter != header_filter) {
        problem = "a module loaded before mod_keepalive had already taken over the HTTP_HEADER filter";
    } else if (ap_http_header_filter_handle != header_filter_handle ||
               header_filter_handle->filter_func.out_func != header_filter) {
        problem = "a module loaded after mod_keepalive has taken over the HTTP_HEADER filter";
    }
    if (!problem) return OK;
    ap_log_error(APLOG_MARK, APLOG_STARTUP | APLOG_EMERG, 0, nullptr,
                 "mod_keepalive: %s; mod_keepalive cannot act on responses alongside it", problem);
    return HTTP_INTERNAL_SERVER_ERROR;
}

// "Keep-Alive" in any case. Letters compare by their lower-case bit; the
// first byte that differs, a NUL included, ends the comparison.
bool is_keep_alive_name(const char* n) {
    return (n[0] | 0x20) == 'k' && (n[1] | 0x20) == 'e' && (n[2] | 0x20) == 'e' && (n[3] | 0x20) == 'p' &&
           n[4] == '-' && (n[5] | 0x20) == 'a' && (n[6] | 0x20) == 'l' && (n[7] | 0x20) == 'i' &&
           (n[8] | 0x20) == 'v' && (n[9] | 0x20) == 'e' && n[10] == '\0';
}

}  // namespace

void register_header_takeover_hooks() {
    ap_hook_check_config(check_header_takeover, nullptr, nullptr, APR_HOOK_MIDDLE);
    // Modules register in load order, http_core (built in) first; a module
    // loaded before this one may already have replaced core's function.
    if (const ap_filter_rec_t* existing = ap_get_output_filter_handle(kHeaderFilter)) {
        displaced_header_filter = existing->filter_func.out_func;
    }
    header_filter_handle = ap_register_output_filter(kHeaderFilter, header_filter, nullptr, AP_FTYPE_PROTOCOL);
    strip_filter_handle = ap_register_output_filter(kStripFilter, strip_filter, nullptr, AP_FTYPE_PROTOCOL);
}

void add_strip_filter(ResponseState* st, request_rec* r) {
    ap_add_output_filter_handle(strip_filter_handle, st, r, r->connection);
}

// apr_table_get() would say the same at several times the cost (its
// strcasecmp()); the field is one of the last core added.
bool has_keep_alive_field(const apr_table_t* headers) {
    const apr_array_header_t* fields = apr_table_elts(headers);
    const auto* entries = reinterpret_cast<const apr_table_entry_t*>(fields->elts);
    for (int i = fields->nelts - 1; i >= 0; --i) {
        const char* key = entries[i].key;
        if (key && is_keep_alive_name(key)) return true;
    }
    return false;
}

// The block is HTTP_HEADER's own brigade: its data, then at most an EOS.
bool insert_keep_alive_fields(conn_rec* c, apr_bucket_brigade* block, const keepalive::Decision& d) {
    apr_bucket* last = nullptr;
    for (apr_bucket* b = APR_BRIGADE_FIRST(block); b != APR_BRIGADE_SENTINEL(block) && !APR_BUCKET_IS_METADATA(b);
         b = APR_BUCKET_NEXT(b)) {
        last = b;
    }
    const char* data = nullptr;
    apr_size_t length = 0;
    if (!last || apr_bucket_read(last, &data, &length, APR_BLOCK_READ) != APR_SUCCESS || length < 2 ||
        std::memcmp(data + length - 2, "\r\n", 2) != 0) {
        return false;
    }
    using Fields = char[keepalive::kKeepAliveFieldsSize];
    if (APR_BUCKET_IS_HEAP(last)) {
        // Core wrote the block into one heap bucket with room to spare: grow
        // it in place, as apr_brigade_write() itself grows a brigade's last
        // heap bucket, rather than split it around a new one. The fields go
        // over the final CRLF, which follows them again (the buffer's size
        // leaves room for both).
        auto* heap = static_cast<apr_bucket_heap*>(last->data);
        char* end = heap->base + last->start + length;
        if (heap->refcount.refcount == 1 &&
            static_cast<apr_size_t>(heap->base + heap->alloc_len - end) >= sizeof(Fields)) {
            const std::size_t size = keepalive::format_keep_alive_fields(d, *reinterpret_cast<Fields*>(end - 2));
            std::memcpy(end - 2 + size, "\r\n", 2);
            last->length += size;
            return true;
        }
    }
    Fields fields;
    const std::size_t size = keepalive::format_keep_alive_fields(d, fields);
    apr_bucket* inserted = apr_bucket_heap_create(fields, size, nullptr, c->bucket_alloc);
    if (length > 2) {
        apr_bucket_split(last, length - 2);
        APR_BUCKET_INSERT_AFTER(last, inserted);
    } else {
        APR_BUCKET_INSERT_BEFORE(last, inserted);
    }
    return true;
}

void strip_keep_alive_from_block(request_rec* r, apr_bucket_brigade* bb, bool connection_too) {
    apr_bucket* b = APR_BRIGADE_FIRST(bb);
    while (b != APR_BRIGADE_SENTINEL(bb) && !APR_BUCKET_IS_METADATA(b)) b = APR_BUCKET_NEXT(b);
    apr_bucket_brigade* rest = apr_brigade_split_ex(bb, b, nullptr);
    char* block = nullptr;
    apr_size_t length = 0;
    if (apr_brigade_pflatten(bb, &block, &length, r->pool) == APR_SUCCESS) {
        const std::string stripped = keepalive::strip_keep_alive_fields({block, length}, connection_too);
        if (stripped.size() != length) {
            apr_brigade_cleanup(bb);
            APR_BRIGADE_INSERT_TAIL(bb, apr_bucket_pool_create(apr_pstrmemdup(r->pool, stripped.data(), stripped.size()),
                                                               stripped.size(), r->pool, r->connection->bucket_alloc));
        }
    }
    APR_BRIGADE_CONCAT(bb, rest);
}

}  // namespace keepalive::httpd
