package gateway

import (
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// metrics are the gateway's Prometheus collectors.
type metrics struct {
	requests *prometheus.CounterVec
	duration *prometheus.HistogramVec
	dnsQuery *prometheus.CounterVec
	// dnsDropped counts UDP queries dropped unanswered: they did not come
	// by the WireGuard interface.
	dnsDropped prometheus.Counter
	upstreams  *prometheus.GaugeVec
}

// codes holds status codes as strings: strconv.Itoa allocates for numbers
// of three digits, and this runs for every request.
var codes = func() (c [600]string) {
	for i := range c {
		c[i] = strconv.Itoa(i)
	}
	return c
}()

func codeString(code int) string {
	if code >= 0 && code < len(codes) {
		return codes[code]
	}
	return "other"
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "booture", Subsystem: "gateway", Name: "http_requests_total",
			Help: "HTTP requests served by the gateway, by service and status code (_portal, _unknown and _elsewhere for requests that match no local service).",
		}, []string{"service", "code"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: "booture", Subsystem: "gateway", Name: "http_request_duration_seconds",
			Help:    "Time to serve an HTTP request through the gateway, by service (upgraded connections excluded).",
			Buckets: []float64{.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30},
		}, []string{"service"}),
		dnsQuery: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "booture", Subsystem: "gateway", Name: "dns_queries_total",
			Help: "DNS queries answered, by how (local, forwarded, offline, failed, refused, ratelimited, invalid) and response code.",
		}, []string{"how", "rcode"}),
		dnsDropped: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: "booture", Subsystem: "gateway", Name: "dns_dropped_total",
			Help: "DNS queries over UDP dropped unanswered because they did not arrive by the WireGuard interface.",
		}),
		upstreams: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Namespace: "booture", Subsystem: "gateway", Name: "dns_upstreams",
			Help: "Upstream resolvers by state (up: believed reachable, down: skipped until its backoff ends).",
		}, []string{"state"}),
	}
	if reg == nil {
		return m, nil
	}
	var err error
	m.requests, err = register(reg, m.requests)
	if err != nil {
		return nil, err
	}
	if m.duration, err = register(reg, m.duration); err != nil {
		return nil, err
	}
	if m.dnsQuery, err = register(reg, m.dnsQuery); err != nil {
		return nil, err
	}
	if m.dnsDropped, err = register(reg, m.dnsDropped); err != nil {
		return nil, err
	}
	if m.upstreams, err = register(reg, m.upstreams); err != nil {
		return nil, err
	}
	return m, nil
}

// register registers c, or returns the identical collector already
// registered (a gateway rebuilt on the same registry).
func register[C prometheus.Collector](reg prometheus.Registerer, c C) (C, error) {
	if err := reg.Register(c); err != nil {
		var are prometheus.AlreadyRegisteredError
		if errors.As(err, &are) {
			if existing, ok := are.ExistingCollector.(C); ok {
				return existing, nil
			}
		}
		return c, fmt.Errorf("registering gateway metrics: %w", err)
	}
	return c, nil
}

func (m *metrics) observeHTTP(service string, code int, d time.Duration, upgraded bool) {
	m.requests.WithLabelValues(service, codeString(code)).Inc()
	if !upgraded {
		m.duration.WithLabelValues(service).Observe(d.Seconds())
	}
}
