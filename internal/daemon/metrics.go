package daemon

import (
	"context"
	"net/http"
	"net/http/pprof"
	"os"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/booture/booture/catalog"
	"github.com/booture/booture/mesh"
	"github.com/booture/booture/plugins/host"
)

// The daemon's metrics are read from its parts at scrape time, so nothing
// runs in the background to keep them up to date.
var (
	descPeers        = prometheus.NewDesc("booture_peers", "Bootures of the mesh by state as seen from here.", []string{"state"}, nil)
	descHandshakeAge = prometheus.NewDesc("booture_peer_handshake_age_seconds",
		"Seconds since the last WireGuard handshake with a peer booture or member.", []string{"peer", "kind"}, nil)
	descRx        = prometheus.NewDesc("booture_peer_rx_bytes_total", "Bytes received from a WireGuard peer.", []string{"peer", "kind"}, nil)
	descTx        = prometheus.NewDesc("booture_peer_tx_bytes_total", "Bytes sent to a WireGuard peer.", []string{"peer", "kind"}, nil)
	descRuns      = prometheus.NewDesc("booture_reconcile_runs_total", "Network reconcile runs.", nil, nil)
	descErrs      = prometheus.NewDesc("booture_reconcile_errors_total", "Network reconcile runs that failed.", nil, nil)
	descGossip    = prometheus.NewDesc("booture_gossip_bytes_total", "Gossip traffic.", []string{"direction"}, nil)
	descEpoch     = prometheus.NewDesc("booture_gossip_key_epoch", "Number of gossip key changes (expulsions) of the mesh.", nil, nil)
	descConflicts = prometheus.NewDesc("booture_site_conflicts", "Site conflicts recorded.", nil, nil)
	descService   = prometheus.NewDesc("booture_service_health", "Health of this booture's services (1 for the current state).", []string{"service", "health"}, nil)
	descPlugin    = prometheus.NewDesc("booture_plugin_state", "State of each plugin (1 for the current state).", []string{"plugin", "state"}, nil)
	descRestarts  = prometheus.NewDesc("booture_plugin_restarts_total", "Restarts of each plugin after a crash or a hang.", []string{"plugin"}, nil)
	descMembers   = prometheus.NewDesc("booture_members", "VPN members of this booture.", nil, nil)
)

type collector struct{ d *Daemon }

func (c collector) Describe(ch chan<- *prometheus.Desc) { prometheus.DescribeByCollect(c, ch) }

func (c collector) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	st, _ := c.d.Status(ctx)
	counts := map[string]int{string(mesh.StateAlive): 0, string(mesh.StateSuspect): 0, string(mesh.StateDead): 0, string(mesh.StateLeft): 0}
	now := time.Now()
	for _, p := range st.Peers {
		counts[p.State]++
		if p.LastHandshake != nil {
			ch <- prometheus.MustNewConstMetric(descHandshakeAge, prometheus.GaugeValue, now.Sub(*p.LastHandshake).Seconds(), p.Name, "booture")
		}
		ch <- prometheus.MustNewConstMetric(descRx, prometheus.CounterValue, float64(p.RxBytes), p.Name, "booture")
		ch <- prometheus.MustNewConstMetric(descTx, prometheus.CounterValue, float64(p.TxBytes), p.Name, "booture")
	}
	for _, m := range c.d.memberStats(ctx) {
		if m.LastHandshake != nil {
			ch <- prometheus.MustNewConstMetric(descHandshakeAge, prometheus.GaugeValue, now.Sub(*m.LastHandshake).Seconds(), m.Name, "member")
		}
		ch <- prometheus.MustNewConstMetric(descRx, prometheus.CounterValue, float64(m.RxBytes), m.Name, "member")
		ch <- prometheus.MustNewConstMetric(descTx, prometheus.CounterValue, float64(m.TxBytes), m.Name, "member")
	}
	for state, n := range counts {
		ch <- prometheus.MustNewConstMetric(descPeers, prometheus.GaugeValue, float64(n), state)
	}
	ch <- prometheus.MustNewConstMetric(descRuns, prometheus.CounterValue, float64(st.Reconcile.Runs))
	ch <- prometheus.MustNewConstMetric(descErrs, prometheus.CounterValue, float64(st.Reconcile.Errors))
	ch <- prometheus.MustNewConstMetric(descGossip, prometheus.CounterValue, float64(st.GossipTraffic.In), "in")
	ch <- prometheus.MustNewConstMetric(descGossip, prometheus.CounterValue, float64(st.GossipTraffic.Out), "out")
	ch <- prometheus.MustNewConstMetric(descEpoch, prometheus.GaugeValue, float64(st.Epoch))
	ch <- prometheus.MustNewConstMetric(descConflicts, prometheus.GaugeValue, float64(len(st.Conflicts)))
	ch <- prometheus.MustNewConstMetric(descMembers, prometheus.GaugeValue, float64(st.Members))
	for _, svc := range c.d.plugins.Services() {
		for _, h := range []catalog.Health{catalog.HealthHealthy, catalog.HealthDegraded, catalog.HealthUnhealthy, catalog.HealthUnknown} {
			ch <- prometheus.MustNewConstMetric(descService, prometheus.GaugeValue, boolValue(svc.Health == h), svc.Name, string(h))
		}
	}
	for _, p := range c.d.plugins.List() {
		for _, s := range []host.State{host.StateStarting, host.StateRunning, host.StateBackoff, host.StateFailed, host.StateStopped} {
			ch <- prometheus.MustNewConstMetric(descPlugin, prometheus.GaugeValue, boolValue(p.State == s), p.Name, string(s))
		}
		ch <- prometheus.MustNewConstMetric(descRestarts, prometheus.CounterValue, float64(p.Restarts), p.Name)
	}
}

func boolValue(b bool) float64 {
	if b {
		return 1
	}
	return 0
}

func (d *Daemon) registerMetrics() {
	d.registry.MustRegister(collector{d}, collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
}

func (d *Daemon) metricsHandler() http.Handler {
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(d.registry, promhttp.HandlerOpts{}))
	// Profiles for developers, only when asked for: they show internals.
	if Profiling() {
		mux.HandleFunc("/debug/pprof/", pprof.Index)
		mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	}
	return mux
}

// Profiling tells whether developers asked for profiles (BOOTURED_PPROF=1):
// the metrics endpoint then serves /debug/pprof/.
func Profiling() bool { return os.Getenv("BOOTURED_PPROF") == "1" }
