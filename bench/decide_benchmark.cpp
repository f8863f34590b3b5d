// Google Benchmark of the policy core's per-response work: decide() on the
// responses httpd serves most, and the two formatters the adapter calls on
// a kept response (`make bench-cost`, bench/RESULTS.md). Target: a decision
// under 100 ns.
#include <benchmark/benchmark.h>

#include <array>

#include "core/policy.h"
#include "core/wire_format.h"

namespace {

using keepalive::ConnectionLimits;
using keepalive::ResponseFacts;
using keepalive::Settings;

ConnectionLimits core_defaults() {
    ConnectionLimits l;
    l.keep_alive = true;
    l.idle_timeout_us = 5000000;
    l.max_requests = 100;
    l.per_response_idle_timeout = true;
    return l;
}

// A request number that changes every iteration, so that nothing is
// computed once and reused.
ResponseFacts facts_for(int request, std::string_view request_connection, int major, int minor) {
    ResponseFacts f;
    f.http_major = major;
    f.http_minor = minor;
    f.request_connection = request_connection;
    f.framing = keepalive::BodyFraming::Delimited;
    f.responses_kept_before = request % 100;
    f.connection_age_us = request * 1000;
    return f;
}

void run(benchmark::State& state, const Settings& settings, std::string_view connection, int major, int minor,
         int occupancy = -1) {
    const ConnectionLimits limits = core_defaults();
    int request = 0;
    for (auto _ : state) {
        ResponseFacts f = facts_for(request++, connection, major, minor);
        f.pressure_permille = occupancy;
        f.shedding_pressure_permille = occupancy;
        benchmark::DoNotOptimize(f);
        keepalive::Decision d = keepalive::decide(limits, settings, f);
        benchmark::DoNotOptimize(d);
    }
}

// curl, wrk, most libraries: HTTP/1.1 without a Connection header.
void BM_Decide_Http11Plain(benchmark::State& state) { run(state, Settings{}, "", 1, 1); }
// Browsers: HTTP/1.1 with "Connection: keep-alive".
void BM_Decide_Http11Token(benchmark::State& state) { run(state, Settings{}, "keep-alive", 1, 1); }
// HTTP/1.0 without the token: closed.
void BM_Decide_Http10Close(benchmark::State& state) { run(state, Settings{}, "", 1, 0); }
// Every directive set, adaptive mode shrinking the timeout.
void BM_Decide_AllDirectivesAdaptive(benchmark::State& state) {
    Settings s;
    s.idle_timeout_us = 3000000;
    s.advertised_timeout_us = 2000000;
    s.max_requests = 50;
    s.max_lifetime_us = 3600000000LL;
    s.adaptive.enabled = true;
    run(state, s, "Keep-Alive, TE", 1, 1, 600);
}

void BM_FormatKeepAliveValue(benchmark::State& state) {
    keepalive::Decision d = keepalive::decide(core_defaults(), Settings{}, facts_for(1, "", 1, 1));
    char value[keepalive::kKeepAliveValueSize];
    for (auto _ : state) {
        benchmark::DoNotOptimize(d);
        benchmark::DoNotOptimize(keepalive::format_keep_alive_value(d, value));
        benchmark::ClobberMemory();
    }
}

void BM_FormatOutcomeNote(benchmark::State& state) {
    keepalive::Decision d = keepalive::decide(core_defaults(), Settings{}, facts_for(1, "", 1, 1));
    char note[keepalive::kOutcomeNoteSize];
    for (auto _ : state) {
        benchmark::DoNotOptimize(d);
        benchmark::DoNotOptimize(keepalive::format_outcome_note(d, true, note));
        benchmark::ClobberMemory();
    }
}

}  // namespace

BENCHMARK(BM_Decide_Http11Plain);
BENCHMARK(BM_Decide_Http11Token);
BENCHMARK(BM_Decide_Http10Close);
BENCHMARK(BM_Decide_AllDirectivesAdaptive);
BENCHMARK(BM_FormatKeepAliveValue);
BENCHMARK(BM_FormatOutcomeNote);

BENCHMARK_MAIN();
