package lab_test

import (
	"net/netip"
	"testing"
	"time"

	"github.com/booture/booture/internal/api"
	"github.com/booture/booture/internal/lab"
	"github.com/booture/booture/internal/waitfor"
)

// pingWait bounds the wait for pings that should pass. It is long on
// purpose: when two bootures add each other at the same moment, their
// WireGuard handshakes can cross and the tunnel stays down for 5 to 25 s
// (see TestHandshakeRace, which is about that); other tests are not.
const pingWait = 30 * time.Second

// start makes a lab and starts its daemons, all at once.
func start(t testing.TB, opts lab.Options) *lab.Lab {
	t.Helper()
	l := lab.New(t, opts)
	if err := l.StartAll(); err != nil {
		t.Fatal(err)
	}
	return l
}

// startFounderFirst makes a lab and starts h1's daemon first, then the
// others: h1's mesh is the oldest, so joins of the others into it never
// turn into merges of h1 into theirs (see TestFoundInviteJoin).
func startFounderFirst(t testing.TB, opts lab.Options) *lab.Lab {
	t.Helper()
	l := lab.New(t, opts)
	must(t, l.H(1).Start())
	afterMillisecond(t)
	must(t, l.StartAll(l.Hosts[1:]...))
	return l
}

// afterMillisecond returns once the clock has moved to a later millisecond
// than when it was called: a mesh founded from then on is younger (mesh ages
// have a millisecond precision) than those of the daemons already started.
func afterMillisecond(t testing.TB) {
	t.Helper()
	ms := time.Now().UnixMilli()
	waitfor.Cond(t, time.Second, "the next millisecond", func() bool { return time.Now().UnixMilli() > ms })
}

// mesh makes a lab of n hosts linked into one mesh (h2..hn join through
// h1's invitations) and waits until it converged.
func mesh(t testing.TB, opts lab.Options, n int) *lab.Lab {
	t.Helper()
	l := startFounderFirst(t, opts)
	hosts := l.Hosts[:n]
	if err := lab.JoinAll(hosts[0], hosts[1:]...); err != nil {
		t.Fatal(err)
	}
	if err := lab.WaitMesh(20*time.Second, hosts...); err != nil {
		t.Fatalf("mesh of %d did not converge: %v", n, err)
	}
	return l
}

func must(t testing.TB, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func status(t testing.TB, h *lab.Host) api.Status {
	t.Helper()
	st, err := h.Status()
	if err != nil {
		t.Fatal(err)
	}
	return st
}

func prefix(t testing.TB, s string) netip.Prefix {
	t.Helper()
	p, err := netip.ParsePrefix(s)
	if err != nil {
		t.Fatal(err)
	}
	return p
}
