#include "core/counters.h"

#include <cstdio>

namespace keepalive {
namespace {

constexpr auto kRelaxed = std::memory_order_relaxed;

CloseReason reason_at(std::size_t index) { return static_cast<CloseReason>(index); }

// Every reason a connection can close with (None is not one).
constexpr std::size_t kFirstReason = static_cast<std::size_t>(CloseReason::None) + 1;

}  // namespace

std::string escape_label(std::string_view value) {
    std::string out;
    out.reserve(value.size());
    for (char c : value) {
        if (c == '\\') {
            out += "\\\\";
        } else if (c == '"') {
            out += "\\\"";
        } else if (c == '\n') {
            out += "\\n";
        } else {
            out += c;
        }
    }
    return out;
}

std::string escape_json(std::string_view value) {
    std::string out;
    out.reserve(value.size());
    for (unsigned char c : value) {
        if (c == '\\' || c == '"') {
            out += '\\';
            out += static_cast<char>(c);
        } else if (c < 0x20) {
            char buf[8];
            std::snprintf(buf, sizeof buf, "\\u%04x", c);
            out += buf;
        } else {
            out += static_cast<char>(c);
        }
    }
    return out;
}

namespace {

// One Prometheus sample line: name{labels} value.
void sample_text(std::string& out, std::string_view name, const std::string& labels, const std::string& value) {
    out.append(name);
    if (!labels.empty()) {
        out += '{';
        out += labels;
        out += '}';
    }
    out += ' ';
    out += value;
    out += '\n';
}

void sample(std::string& out, std::string_view name, const std::string& labels, std::uint64_t value) {
    sample_text(out, name, labels, std::to_string(value));
}

void family(std::string& out, std::string_view name, std::string_view type, std::string_view help) {
    out += "# HELP ";
    out.append(name);
    out += ' ';
    out.append(help);
    out += "\n# TYPE ";
    out.append(name);
    out += ' ';
    out.append(type);
    out += '\n';
}

std::string with_label(const std::string& scope, std::string_view name, std::string_view value) {
    std::string labels = scope;
    if (!labels.empty()) labels += ',';
    labels.append(name);
    labels += "=\"";
    labels += escape_label(value);
    labels += '"';
    return labels;
}

std::string bound_text(std::size_t slot) {
    return slot < kRequestsPerConnectionBounds.size() ? std::to_string(kRequestsPerConnectionBounds[slot]) : "+Inf";
}

// Milliseconds as seconds, as short as exact: 100 -> "0.1", 5000 -> "5".
std::string milliseconds_as_seconds(std::uint64_t ms) {
    std::string text = std::to_string(ms / 1000);
    if (const std::uint64_t rest = ms % 1000) {
        char fraction[8];
        std::snprintf(fraction, sizeof fraction, ".%03u", static_cast<unsigned>(rest));
        text += fraction;
        while (text.back() == '0') text.pop_back();
    }
    return text;
}

std::string lifetime_bound_text(std::size_t slot) {
    return slot < kLifetimeBoundsMs.size() ? milliseconds_as_seconds(kLifetimeBoundsMs[slot]) : "+Inf";
}

struct Scope {
    std::string labels;  // "" for the total, vhost="..." for a virtual host
    const CounterValues* values;
};

std::vector<Scope> scopes(const CounterValues& total, const std::vector<NamedValues>& vhosts) {
    std::vector<Scope> all{{"", &total}};
    for (const NamedValues& v : vhosts) {
        if (v.values.counted_anything()) all.push_back({with_label("", "vhost", v.name), &v.values});
    }
    return all;
}

void json_values(std::string& out, const CounterValues& v) {
    out += "\"requests\":" + std::to_string(v.requests);
    out += ",\"responses\":{\"keep\":" + std::to_string(v.responses_keep) +
           ",\"close\":" + std::to_string(v.responses_close) + "}";
    out += ",\"connections_closed\":{";
    for (std::size_t i = kFirstReason; i < kCloseReasonCount; ++i) {
        if (i != kFirstReason) out += ',';
        out += "\"" + std::string(reason_name(reason_at(i))) + "\":" + std::to_string(v.connections_closed[i]);
    }
    out += "},\"requests_per_connection\":{\"buckets\":{";
    std::uint64_t cumulative = 0;
    for (std::size_t slot = 0; slot < kHistogramSlots; ++slot) {
        cumulative += v.requests_per_connection[slot];
        if (slot) out += ',';
        out += "\"" + bound_text(slot) + "\":" + std::to_string(cumulative);
    }
    out += "},\"sum\":" + std::to_string(v.requests_per_connection_sum) +
           ",\"count\":" + std::to_string(v.requests_per_connection_count) + "}";
    out += ",\"connection_lifetime_seconds\":{\"buckets\":{";
    cumulative = 0;
    for (std::size_t slot = 0; slot < kLifetimeSlots; ++slot) {
        cumulative += v.connection_lifetime[slot];
        if (slot) out += ',';
        out += "\"" + lifetime_bound_text(slot) + "\":" + std::to_string(cumulative);
    }
    out += "},\"sum\":" + seconds_text(v.connection_lifetime_sum_us) +
           ",\"count\":" + std::to_string(v.requests_per_connection_count) + "}";
}

}  // namespace

std::string seconds_text(std::uint64_t us, bool milliseconds_only) {
    char text[32];
    if (milliseconds_only) {
        std::snprintf(text, sizeof text, "%llu.%03llu", static_cast<unsigned long long>(us / 1000000),
                      static_cast<unsigned long long>(us % 1000000 / 1000));
    } else {
        std::snprintf(text, sizeof text, "%llu.%06llu", static_cast<unsigned long long>(us / 1000000),
                      static_cast<unsigned long long>(us % 1000000));
    }
    return text;
}

std::size_t histogram_slot(std::uint64_t requests) {
    std::size_t slot = 0;
    while (slot < kRequestsPerConnectionBounds.size() && requests > kRequestsPerConnectionBounds[slot]) ++slot;
    return slot;
}

void SharedCounters::count_response(bool kept) {
    (kept ? responses_keep : responses_close).fetch_add(1, kRelaxed);
}

std::size_t lifetime_slot(std::uint64_t lifetime_us) {
    std::size_t slot = 0;
    while (slot < kLifetimeBoundsMs.size() && lifetime_us > kLifetimeBoundsMs[slot] * 1000) ++slot;
    return slot;
}

void SharedCounters::count_connection_end(CloseReason reason, std::uint64_t requests_served,
                                          std::uint64_t lifetime_us) {
    connections_closed[static_cast<std::size_t>(reason)].fetch_add(1, kRelaxed);
    requests_per_connection[histogram_slot(requests_served)].fetch_add(1, kRelaxed);
    requests_per_connection_sum.fetch_add(requests_served, kRelaxed);
    requests_per_connection_count.fetch_add(1, kRelaxed);
    connection_lifetime[lifetime_slot(lifetime_us)].fetch_add(1, kRelaxed);
    connection_lifetime_sum_us.fetch_add(lifetime_us, kRelaxed);
}

// Every field, not just requests and the histograms' count that every
// response and connection end move: a series left out must be all zeros.
bool CounterValues::counted_anything() const {
    const auto any = [](const auto& slots) {
        for (std::uint64_t n : slots) {
            if (n) return true;
        }
        return false;
    };
    return requests || responses_keep || responses_close || any(connections_closed) ||
           any(requests_per_connection) || requests_per_connection_sum || requests_per_connection_count ||
           any(connection_lifetime) || connection_lifetime_sum_us;
}

CounterValues SharedCounters::load() const {
    CounterValues v;
    v.responses_keep = responses_keep.load(kRelaxed);
    v.responses_close = responses_close.load(kRelaxed);
    v.requests = v.responses_keep + v.responses_close;
    for (std::size_t i = 0; i < kCloseReasonCount; ++i) v.connections_closed[i] = connections_closed[i].load(kRelaxed);
    for (std::size_t i = 0; i < kHistogramSlots; ++i) {
        v.requests_per_connection[i] = requests_per_connection[i].load(kRelaxed);
    }
    v.requests_per_connection_sum = requests_per_connection_sum.load(kRelaxed);
    v.requests_per_connection_count = requests_per_connection_count.load(kRelaxed);
    for (std::size_t i = 0; i < kLifetimeSlots; ++i) v.connection_lifetime[i] = connection_lifetime[i].load(kRelaxed);
    v.connection_lifetime_sum_us = connection_lifetime_sum_us.load(kRelaxed);
    return v;
}

std::string render_prometheus(const CounterValues& total, const std::vector<NamedValues>& vhosts) {
    const std::vector<Scope> all = scopes(total, vhosts);
    std::string out;

    family(out, "keepalive_requests_total", "counter", "HTTP/1.x requests mod_keepalive decided on.");
    for (const Scope& s : all) sample(out, "keepalive_requests_total", s.labels, s.values->requests);

    family(out, "keepalive_responses_total", "counter",
           "Responses by decision: keep the connection open or close it.");
    for (const Scope& s : all) {
        sample(out, "keepalive_responses_total", with_label(s.labels, "decision", "keep"), s.values->responses_keep);
        sample(out, "keepalive_responses_total", with_label(s.labels, "decision", "close"), s.values->responses_close);
    }

    family(out, "keepalive_connections_closed_total", "counter", "Connections closed, by the reason they closed.");
    for (const Scope& s : all) {
        for (std::size_t i = kFirstReason; i < kCloseReasonCount; ++i) {
            sample(out, "keepalive_connections_closed_total", with_label(s.labels, "reason", reason_name(reason_at(i))),
                   s.values->connections_closed[i]);
        }
    }

    family(out, "keepalive_requests_per_connection", "histogram", "Requests served per closed connection.");
    for (const Scope& s : all) {
        std::uint64_t cumulative = 0;
        for (std::size_t slot = 0; slot < kHistogramSlots; ++slot) {
            cumulative += s.values->requests_per_connection[slot];
            sample(out, "keepalive_requests_per_connection_bucket", with_label(s.labels, "le", bound_text(slot)),
                   cumulative);
        }
        sample(out, "keepalive_requests_per_connection_sum", s.labels, s.values->requests_per_connection_sum);
        sample(out, "keepalive_requests_per_connection_count", s.labels, s.values->requests_per_connection_count);
    }

    family(out, "keepalive_connection_lifetime_seconds", "histogram",
           "How long each closed connection lasted, from its accept to its end.");
    for (const Scope& s : all) {
        std::uint64_t cumulative = 0;
        for (std::size_t slot = 0; slot < kLifetimeSlots; ++slot) {
            cumulative += s.values->connection_lifetime[slot];
            sample(out, "keepalive_connection_lifetime_seconds_bucket",
                   with_label(s.labels, "le", lifetime_bound_text(slot)), cumulative);
        }
        sample_text(out, "keepalive_connection_lifetime_seconds_sum", s.labels,
                    seconds_text(s.values->connection_lifetime_sum_us));
        sample(out, "keepalive_connection_lifetime_seconds_count", s.labels, s.values->requests_per_connection_count);
    }
    return out;
}

std::string render_json(const CounterValues& total, const std::vector<NamedValues>& vhosts,
                        const std::string& extra_members) {
    std::string out = "{\"total\":{";
    json_values(out, total);
    out += "},\"vhosts\":[";
    bool first = true;
    for (const NamedValues& v : vhosts) {
        if (!v.values.counted_anything()) continue;
        if (!first) out += ',';
        first = false;
        out += "{\"vhost\":\"" + escape_json(v.name) + "\",";
        json_values(out, v.values);
        out += '}';
    }
    out += ']';
    if (!extra_members.empty()) out += ',' + extra_members;
    out += "}\n";
    return out;
}

std::string render_status_auto(const CounterValues& total) {
    std::string out = "KeepAliveModRequests: " + std::to_string(total.requests) + "\n";
    out += "KeepAliveModResponsesKeep: " + std::to_string(total.responses_keep) + "\n";
    out += "KeepAliveModResponsesClose: " + std::to_string(total.responses_close) + "\n";
    out += "KeepAliveModConnectionsClosed: " + std::to_string(total.requests_per_connection_count) + "\n";
    for (std::size_t i = kFirstReason; i < kCloseReasonCount; ++i) {
        out += "KeepAliveModClosed-" + std::string(reason_name(reason_at(i))) + ": " +
               std::to_string(total.connections_closed[i]) + "\n";
    }
    const std::uint64_t count = total.requests_per_connection_count;
    char mean[32];
    std::snprintf(mean, sizeof mean, "%.2f",
                  count ? static_cast<double>(total.requests_per_connection_sum) / static_cast<double>(count) : 0.0);
    out += "KeepAliveModRequestsPerConnection: " + std::string(mean) + "\n";
    return out;
}

}  // namespace keepalive
