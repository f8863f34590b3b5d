// libFuzzer target: the keep-alive decision with arbitrary limits, settings
// and facts.
//
// Properties: no crash or undefined behaviour; HTTP/2 and HTTP/0.9 get no
// decision; a close never carries a Keep-Alive value; a keep advertises no
// more than the server enforces (nor than a drain leaves), in whole seconds
// rounded down, with a request budget that is positive; a drain's moment
// closes; a close token from the client always
// closes; the Keep-Alive value, the two header fields and the log note say
// what the decision holds, whatever values it holds.
#include <fuzzer/FuzzedDataProvider.h>

#include <cstdint>
#include <cstdlib>
#include <string>

#include "core/policy.h"
#include "core/wire_format.h"
#include "core/connection_tokens.h"

namespace {

void check(bool condition) {
    if (!condition) std::abort();
}

void check_formatters(const keepalive::Decision& d) {
    char fields[keepalive::kKeepAliveFieldsSize];
    const std::string written(fields, keepalive::format_keep_alive_fields(d, fields));
    char note[keepalive::kOutcomeNoteSize];
    const std::string noted(note, keepalive::format_outcome_note(d, d.keep(), note));
    if (!d.keep()) {
        check(written.empty() && d.keep_alive_header().empty());
        check(noted == std::string("close ") + keepalive::reason_name(d.reason));
        return;
    }
    std::string value = "timeout=" + std::to_string(d.advertised_timeout_s);
    if (d.max_remaining >= 0) value += ", max=" + std::to_string(d.max_remaining);
    check(d.keep_alive_header() == value);
    check(written == "Keep-Alive: " + value + "\r\nConnection: Keep-Alive\r\n");
    std::string expected_note = "keep timeout=" + std::to_string(d.advertised_timeout_s);
    if (d.max_remaining >= 0) expected_note += " max=" + std::to_string(d.max_remaining);
    check(noted == expected_note);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    FuzzedDataProvider in(data, size);
    keepalive::ConnectionLimits limits;
    limits.keep_alive = in.ConsumeBool();
    limits.idle_timeout_us = in.ConsumeIntegralInRange<std::int64_t>(-1, std::int64_t{1} << 45);
    limits.max_requests = in.ConsumeIntegral<int>();
    limits.per_response_idle_timeout = in.ConsumeBool();

    keepalive::Settings settings;
    settings.header_mode = static_cast<keepalive::HeaderMode>(in.ConsumeIntegralInRange<int>(0, 2));
    if (in.ConsumeBool()) settings.idle_timeout_us = in.ConsumeIntegralInRange<std::int64_t>(0, std::int64_t{1} << 45);
    if (in.ConsumeBool()) {
        settings.advertised_timeout_us = in.ConsumeIntegralInRange<std::int64_t>(1, std::int64_t{1} << 45);
    }
    if (in.ConsumeBool()) settings.max_requests = in.ConsumeIntegralInRange<int>(0, 2147483647);
    if (in.ConsumeBool()) settings.max_lifetime_us = in.ConsumeIntegralInRange<std::int64_t>(0, std::int64_t{1} << 45);
    settings.max_lifetime_jitter_permille = in.ConsumeIntegralInRange<int>(0, 1000);
    settings.http10 = in.ConsumeBool();
    settings.adaptive.enabled = in.ConsumeBool();
    settings.adaptive.shrink_at_permille = in.ConsumeIntegralInRange<int>(0, 999);
    settings.adaptive.close_at_permille = in.ConsumeIntegralInRange<int>(settings.adaptive.shrink_at_permille + 1, 1000);
    settings.adaptive.floor_us = in.ConsumeIntegralInRange<std::int64_t>(0, std::int64_t{1} << 40);

    keepalive::ResponseFacts f;
    f.http_major = in.ConsumeIntegralInRange<int>(0, 3);
    f.http_minor = in.ConsumeIntegralInRange<int>(0, 9);
    f.multiplexed = in.ConsumeBool();
    f.headerless = in.ConsumeBool();
    f.status = in.ConsumeIntegralInRange<int>(100, 599);
    f.head_request = in.ConsumeBool();
    f.framing = static_cast<keepalive::BodyFraming>(in.ConsumeIntegralInRange<int>(0, 2));
    f.expecting_100 = in.ConsumeBool();
    f.nokeepalive_env = in.ConsumeBool();
    f.via_present = in.ConsumeBool();
    f.forced_http10 = in.ConsumeBool();
    f.connection_marked_close = in.ConsumeBool();
    f.responses_kept_before = in.ConsumeIntegralInRange<int>(0, 2147483647);
    f.connection_age_us = in.ConsumeIntegralInRange<std::int64_t>(0, std::int64_t{1} << 50);
    f.connection_key = in.ConsumeIntegral<std::uint64_t>();
    f.forward_proxy = in.ConsumeBool();
    f.disabled_by_condition = in.ConsumeBool();
    f.pressure_permille = in.ConsumeIntegralInRange<int>(-1, 1000);
    f.shedding_pressure_permille = in.ConsumeIntegralInRange<int>(-1, 1000);
    f.server_stopping = in.ConsumeBool();
    f.drain_closes = in.ConsumeBool();
    f.drain_cap_us = in.ConsumeIntegralInRange<std::int64_t>(-1, std::int64_t{1} << 45);
    const std::string response_connection = in.ConsumeRandomLengthString(64);
    const std::string request_connection = in.ConsumeRemainingBytesAsString();
    f.request_connection = request_connection;
    f.response_connection = response_connection;

    const keepalive::Decision d = keepalive::decide(limits, settings, f);
    check_formatters(d);
    // The formatters again with values no decision makes (negative ones too).
    keepalive::Decision any = d;
    any.verdict = keepalive::Verdict::Keep;
    any.advertised_timeout_s = limits.max_requests;
    any.max_remaining = f.responses_kept_before - f.status;
    check_formatters(any);
    if (f.multiplexed || f.headerless) {
        check(d.verdict == keepalive::Verdict::NotApplicable && d.keep_alive_header().empty());
        return 0;
    }
    if (keepalive::list_has_token(f.request_connection, "close")) check(!d.keep());
    if (f.drain_closes) check(!d.keep());
    // A jittered lifetime is never above the configured one, nor below it
    // by more than the jitter's share.
    if (settings.max_lifetime_us && *settings.max_lifetime_us > 0) {
        const std::int64_t lifetime = *settings.max_lifetime_us;
        const std::int64_t each =
            keepalive::lifetime_for(lifetime, settings.max_lifetime_jitter_permille, f.connection_key);
        check(each <= lifetime && each >= lifetime - lifetime / 1000 * settings.max_lifetime_jitter_permille -
                                              settings.max_lifetime_jitter_permille);
        if (f.connection_age_us >= lifetime) check(!d.keep());
    }
    // A drain is never promised through: nothing advertised outlasts it.
    if (d.keep() && f.drain_cap_us >= 0) check(d.advertised_timeout_us <= f.drain_cap_us);
    if (!d.keep()) {
        check(d.reason != keepalive::CloseReason::None);
        check(d.keep_alive_header().empty() && !d.send_header);
        return 0;
    }
    check(d.reason == keepalive::CloseReason::None);
    check(d.advertised_timeout_us > 0 && d.advertised_timeout_us <= d.idle_timeout_us);
    check(std::int64_t{d.advertised_timeout_s} * 1000000 <= d.advertised_timeout_us);
    check(d.max_remaining == -1 || d.max_remaining >= 1);
    std::string expected = "timeout=" + std::to_string(d.advertised_timeout_s);
    if (d.max_remaining >= 0) expected += ", max=" + std::to_string(d.max_remaining);
    check(d.keep_alive_header() == expected);
    return 0;
}
