package lab_test

import (
	"context"
	"encoding/binary"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/booture/booture/internal/lab"
)

// gossipPort is bootured's default --gossip-port.
const gossipPort = 7946

// floodStart is what a flood stream sends first: a join or a catch-up
// handshake declaring a frame of 1 MiB (the largest), or a gossip stream
// (memberlist's encrypted message, type 10) declaring a message of 1 MiB.
// Then it sends fill bytes and waits.
func floodStart(i int) []byte {
	const mib = 1 << 20
	switch i % 3 {
	case 0:
		return append(binary.BigEndian.AppendUint32([]byte("BTJ1"), mib), 'S')
	case 1:
		return append(binary.BigEndian.AppendUint32([]byte("BTC1"), mib), 'S')
	}
	return binary.BigEndian.AppendUint32([]byte{10}, mib)
}

// floodStats counts what a flood did.
type floodStats struct {
	opened, refused atomic.Int64
}

// floodGossipPort floods dst from the LAN host ns: rounds of conns streams
// opened at once, each sending floodStart and fill bytes and kept open for
// hold, until ctx ends or rounds are done. It calls started once the
// first round's streams are open and written (or it gave up).
func floodGossipPort(ctx context.Context, ns *lab.NS, dst netip.AddrPort, rounds, conns, fill int, hold time.Duration, st *floodStats, started func()) error {
	started = sync.OnceFunc(started)
	defer started()
	filler := make([]byte, fill)
	for r := 0; r < rounds && ctx.Err() == nil; r++ {
		var open []net.Conn
		// Sockets opened on a thread in the namespace stay in it.
		err := ns.Do(func() error {
			d := net.Dialer{Timeout: time.Second}
			for range conns {
				c, err := d.DialContext(ctx, "tcp", dst.String())
				if err != nil {
					st.refused.Add(1)
					continue
				}
				open = append(open, c)
			}
			return nil
		})
		if err != nil {
			return err
		}
		st.opened.Add(int64(len(open)))
		var wg sync.WaitGroup
		for i, c := range open {
			wg.Go(func() {
				c.SetWriteDeadline(time.Now().Add(hold))
				if _, err := c.Write(floodStart(i)); err == nil {
					c.Write(filler)
				}
			})
		}
		wg.Wait()
		started()
		select {
		case <-ctx.Done():
		case <-time.After(hold):
		}
		for _, c := range open {
			c.Close()
		}
	}
	return nil
}

// floodRun floods h1 from h3 while h2 joins h1's mesh; it returns h1's peak
// resident memory (VmHWM) and the join's latency.
func floodRun(t testing.TB, l *lab.Lab) (peak int64, join time.Duration, st *floodStats) {
	t.Helper()
	h1, h2, attacker := l.H(1), l.H(2), l.H(3)
	tok, err := h1.Invite("")
	must(t, err)
	st = new(floodStats)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	flooded := make(chan error, 1)
	flooding := make(chan struct{})
	go func() {
		flooded <- floodGossipPort(ctx, &attacker.NS, netip.AddrPortFrom(h1.IP, gossipPort), 6, 400, 256<<10, time.Second, st, func() { close(flooding) })
	}()
	// The join starts once the flood is under way.
	<-flooding
	if st.opened.Load() == 0 {
		t.Fatalf("the flood opened no stream (%d refused)", st.refused.Load())
	}
	t0 := time.Now()
	joinErr := h2.Join(tok)
	join = time.Since(t0)
	must(t, <-flooded)
	must(t, joinErr)
	peak, err = h1.ProcStatus("VmHWM")
	must(t, err)
	return peak, join, st
}

// TestFloodFromLAN: a host on the LAN opens 400 streams at once to a
// booture's gossip port, six times: joins and catch-ups declaring frames of
// 1 MiB, gossip streams declaring messages of 1 MiB and sending 256 KiB.
// The booture's resident memory stays under 64 MB and a real booture joins
// meanwhile. Before, such a flood took bootured from 18 MB to over 400 MB
// in a second.
func TestFloodFromLAN(t *testing.T) {
	t.Parallel()
	l := lab.New(t, lab.Options{Hosts: 3})
	must(t, l.H(1).Start())
	must(t, l.H(2).Start())
	peak, join, st := floodRun(t, l)
	t.Logf("h1 peak RSS %.1f MB under the flood (%d streams opened, %d refused at connect); h2 joined in %v",
		float64(peak)/1e6, st.opened.Load(), st.refused.Load(), join.Round(time.Millisecond))
	if peak > 64<<20 {
		t.Errorf("h1's peak resident memory %.1f MB under a flood of unauthenticated streams, want under 64 MiB", float64(peak)/1e6)
	}
	must(t, lab.WaitMesh(30*time.Second, l.H(1), l.H(2)))
}

// BenchmarkFloodFromLAN reports a booture's peak resident memory (MB-peak)
// and the latency of a real join (s-join) while a LAN host floods its
// gossip port as in TestFloodFromLAN; and the same join without a flood
// (s-join-quiet) to compare.
//
//	go test ./test/lab/ -run '^$' -bench FloodFromLAN -benchtime 1x
func BenchmarkFloodFromLAN(b *testing.B) {
	var peak int64
	var join, quiet time.Duration
	for range b.N {
		l := lab.New(b, lab.Options{Hosts: 4})
		must(b, l.H(1).Start())
		must(b, l.H(2).Start())
		must(b, l.H(4).Start())
		t0 := time.Now()
		must(b, l.H(4).JoinVia(l.H(1)))
		quiet += time.Since(t0)
		p, j, _ := floodRun(b, l)
		peak = max(peak, p)
		join += j
		must(b, l.Close())
	}
	b.ReportMetric(0, "ns/op")
	b.ReportMetric(float64(peak)/1e6, "MB-peak")
	b.ReportMetric(join.Seconds()/float64(b.N), "s-join")
	b.ReportMetric(quiet.Seconds()/float64(b.N), "s-join-quiet")
}
