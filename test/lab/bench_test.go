package lab_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/booture/booture/internal/lab"
)

// Benchmarks of the mesh in the lab. They report numbers (b.ReportMetric),
// they do not judge them. Each round builds its own lab, so run one round:
//
//	go test ./test/lab/ -run '^$' -bench . -benchtime 1x

// BenchmarkJoinConvergence measures, for 3, 10 and 20 bootures started
// alone, the time from the joins (all at once, each with its own invitation
// from h1) until every booture lists every other alive with its WireGuard
// peer (s-peers), and until pings pass (s-converge): from h1 to every
// booture, from every booture to h1, and around the ring h1 -> h2 -> ... ->
// h1.
func BenchmarkJoinConvergence(b *testing.B) {
	for _, n := range []int{3, 10, 20} {
		b.Run(fmt.Sprintf("bootures=%d", n), func(b *testing.B) {
			var peers, all time.Duration
			for range b.N {
				b.StopTimer()
				l := startFounderFirst(b, lab.Options{Hosts: n})
				h1 := l.H(1)
				tokens := make([]string, n)
				for i := 1; i < n; i++ {
					tok, err := h1.Invite("")
					must(b, err)
					tokens[i] = tok
				}
				b.StartTimer()
				t0 := time.Now()
				errs := make([]error, n)
				var wg sync.WaitGroup
				for i := 1; i < n; i++ {
					wg.Add(1)
					go func() {
						defer wg.Done()
						errs[i] = l.Hosts[i].Join(tokens[i])
					}()
				}
				wg.Wait()
				must(b, errors.Join(errs...))
				must(b, lab.Eventually(context.Background(), 60*time.Second, 20*time.Millisecond, func() error {
					return lab.CheckPeers(l.Hosts...)
				}))
				peers += time.Since(t0)
				must(b, pingStarAndRing(l.Hosts, 30*time.Second))
				all += time.Since(t0)
				b.StopTimer()
				must(b, lab.CheckMesh(l.Hosts...))
				must(b, l.Close())
			}
			b.ReportMetric(0, "ns/op")
			b.ReportMetric(peers.Seconds()/float64(b.N), "s-peers")
			b.ReportMetric(all.Seconds()/float64(b.N), "s-converge")
		})
	}
}

// pingStarAndRing pings over IPv4 from hosts[0] to every host, from every
// host to hosts[0], and from each host to the next, in parallel, each ping
// retried until it passes or timeout.
func pingStarAndRing(hosts []*lab.Host, timeout time.Duration) error {
	sts, err := lab.Statuses(hosts...)
	if err != nil {
		return err
	}
	type pair struct{ from, to int }
	var pairs []pair
	for i := 1; i < len(hosts); i++ {
		pairs = append(pairs, pair{0, i}, pair{i, 0}, pair{i, (i + 1) % len(hosts)})
	}
	errs := make([]error, len(pairs))
	var wg sync.WaitGroup
	for k, p := range pairs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[k] = hosts[p.from].WaitPing(sts[p.to].MeshIPv4, timeout)
		}()
	}
	wg.Wait()
	return errors.Join(errs...)
}

// BenchmarkDeadDetection measures the time from kill -9 of one booture of
// five until the four others show it dead (s-first-dead: the first one,
// s-dead: the last one), with the default (lan) gossip profile.
func BenchmarkDeadDetection(b *testing.B) {
	b.StopTimer()
	l := mesh(b, lab.Options{Hosts: 5}, 5)
	victim, observers := l.H(5), l.Hosts[:4]
	var first, last time.Duration
	for range b.N {
		must(b, lab.WaitMesh(30*time.Second, l.Hosts...))
		time.Sleep(2 * time.Second) // settle: gossip probes run as usual
		b.StartTimer()
		t0 := time.Now()
		must(b, victim.Kill())
		firstDead, lastDead, err := lab.WaitDead(context.Background(), t0, 20*time.Millisecond, victim, observers)
		must(b, err)
		b.StopTimer()
		first += firstDead
		last += lastDead
		must(b, victim.Start())
	}
	b.ReportMetric(0, "ns/op")
	b.ReportMetric(first.Seconds()/float64(b.N), "s-first-dead")
	b.ReportMetric(last.Seconds()/float64(b.N), "s-dead")
}

// EnvSettle is the settle period of BenchmarkIdleRSS (default 20s).
const EnvSettle = "BOOTURE_LAB_SETTLE"

// BenchmarkIdleRSS measures the resident memory (VmRSS) of idle bootured
// daemons with 20 peers each (a mesh of 21, userspace WireGuard) after a
// settle period: the average and the largest (MB-rss-avg, MB-rss-max), the
// average of its anonymous part (MB-anon-avg: the rest is the binary's
// mapped code), and their idle gossip traffic, sent plus received, per
// booture (B/s-gossip).
func BenchmarkIdleRSS(b *testing.B) {
	settle := 20 * time.Second
	if s := os.Getenv(EnvSettle); s != "" {
		d, err := time.ParseDuration(s)
		must(b, err)
		settle = d
	}
	const n = 21
	var avgRSS, maxRSS, avgAnon, gossip float64
	for range b.N {
		b.StopTimer()
		l := mesh(b, lab.Options{Hosts: n}, n)
		must(b, pingStarAndRing(l.Hosts, 30*time.Second))
		time.Sleep(settle / 2)
		before, err := lab.Statuses(l.Hosts...)
		must(b, err)
		t0 := time.Now()
		time.Sleep(settle / 2)
		after, err := lab.Statuses(l.Hosts...)
		must(b, err)
		dt := time.Since(t0).Seconds()
		var sum, mx, anon, bytes float64
		for i, h := range l.Hosts {
			rss, err := h.RSS()
			must(b, err)
			a, err := h.ProcStatus("RssAnon")
			must(b, err)
			anon += float64(a) / (1 << 20)
			mb := float64(rss) / (1 << 20)
			sum += mb
			mx = max(mx, mb)
			bytes += float64(after[i].GossipTraffic.In+after[i].GossipTraffic.Out-before[i].GossipTraffic.In-before[i].GossipTraffic.Out) / dt
			if len(after[i].Peers) != n-1 {
				b.Fatalf("%s has %d peers, want %d", h.Name, len(after[i].Peers), n-1)
			}
		}
		avgRSS += sum / n
		maxRSS += mx
		avgAnon += anon / n
		gossip += bytes / n
		must(b, l.Close())
	}
	b.ReportMetric(0, "ns/op")
	b.ReportMetric(avgRSS/float64(b.N), "MB-rss-avg")
	b.ReportMetric(maxRSS/float64(b.N), "MB-rss-max")
	b.ReportMetric(avgAnon/float64(b.N), "MB-anon-avg")
	b.ReportMetric(gossip/float64(b.N), "B/s-gossip")
}
