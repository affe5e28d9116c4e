package mesh

import (
	"context"
	"errors"
	"log/slog"
	"math"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sync/semaphore"
)

// Anyone on the LAN can open TCP streams to the gossip port, and nothing
// on a stream is authenticated before its first frame (a handshake) or
// its whole first message (gossip, which memberlist reads entirely before
// decrypting it) has arrived. What a stranger can make a booture hold is
// therefore bounded here, before any of it is read:
//
//   - concurrent streams and handshakes, in total and per source address
//     (an IPv6 /64 counts as one address: a host picks any address in
//     its /64); over the limit a stream is closed at once;
//   - the first frame of a handshake (crypto.go: maxFirstFrame); later
//     frames, up to maxFrame, only from a peer that proved a key of the
//     mesh or held the token, and within a shared byte budget;
//   - what a gossip stream may declare (maxGossipStream), and the bytes
//     declared by all gossip streams being read at once (a budget a stream
//     waits for, or is closed).
//
// Sources on loopback are not counted against the per-address and total
// limits (a process on the box itself is not a stranger on the LAN, and
// in-process tests run every booture on 127.0.0.1); the byte budgets apply
// to every source.

// inboundLimits are the bounds above.
type inboundLimits struct {
	streams, streamsPerSource       int
	handshakes, handshakesPerSource int
	// gossipBytes bounds the bytes declared by gossip streams being read
	// at once; frameBytes, the handshake frames beyond the first. A
	// source may hold a quarter of either.
	gossipBytes, frameBytes int64
	// limitLoopback counts loopback sources too (tests).
	limitLoopback bool
}

// defaultInboundLimits fit a booture of a full mesh: memberlist itself
// serves up to 128 push/pulls at once, a push/pull of a full mesh is a few
// hundred KB, and a handshake frame after the first (a roster) about as
// much. With these, a flood of streams holds at most about 24 MB.
func defaultInboundLimits() inboundLimits {
	return inboundLimits{
		streams: 256, streamsPerSource: 16,
		handshakes: 32, handshakesPerSource: 4,
		gossipBytes: 16 << 20, frameBytes: 4 << 20,
	}
}

// maxGossipStream bounds the encrypted first message of a gossip stream:
// about four times the push/pull of a mesh at its limits (1024 records
// and 500 bootures' node states); memberlist's own limit is 20 MB.
const maxGossipStream = 4 << 20

// inboundGuard applies inboundLimits. It belongs to the node and outlives
// gossip restarts (streams of a stopped transport may still be open).
type inboundGuard struct {
	limits      inboundLimits
	streams     sourceLimiter
	handshakes  sourceLimiter
	gossipBytes byteBudget
	frameBytes  byteBudget
	log         *slog.Logger

	refused    atomic.Uint64 // streams closed over a limit
	lastLogged atomic.Int64  // Unix ns of the last refusal logged
}

func newInboundGuard(l inboundLimits, log *slog.Logger) *inboundGuard {
	return &inboundGuard{
		limits:      l,
		streams:     sourceLimiter{total: int64(l.streams), perSource: int64(l.streamsPerSource)},
		handshakes:  sourceLimiter{total: int64(l.handshakes), perSource: int64(l.handshakesPerSource)},
		gossipBytes: newByteBudget(l.gossipBytes),
		frameBytes:  newByteBudget(l.frameBytes),
		log:         log,
	}
}

// source is the key a remote address is counted under, and whether it is
// counted at all.
func (g *inboundGuard) source(a net.Addr) (netip.Prefix, bool) {
	ap, err := netip.ParseAddrPort(a.String())
	if err != nil {
		return netip.Prefix{}, false
	}
	ip := ap.Addr().Unmap()
	if ip.IsLoopback() && !g.limits.limitLoopback {
		return netip.Prefix{}, false
	}
	bits := 32
	if ip.Is6() {
		bits = 64
	}
	p, _ := ip.Prefix(bits)
	return p, true
}

// admitStream counts a new stream from a; it returns a release function,
// or false over a limit.
func (g *inboundGuard) admitStream(a net.Addr) (func(), bool) {
	return g.admit(&g.streams, a, "streams")
}

// admitHandshake counts a new handshake from a likewise.
func (g *inboundGuard) admitHandshake(a net.Addr) (func(), bool) {
	return g.admit(&g.handshakes, a, "handshakes")
}

func (g *inboundGuard) admit(l *sourceLimiter, a net.Addr, what string) (func(), bool) {
	src, counted := g.source(a)
	if !counted {
		return func() {}, true
	}
	if !l.acquire(src, 1) {
		g.noteRefused(src.String(), what)
		return nil, false
	}
	return onceFunc(func() { l.release(src, 1) }), true
}

// errOverShare refuses a reservation over its source's share.
var errOverShare = errors.New("the source holds its share of the budget")

// reserve reserves n bytes of budget b for a stream from a: at once from
// its source's share, or the stream is refused; then from the total,
// waiting until ctx ends. It returns the release function.
func (g *inboundGuard) reserve(ctx context.Context, b *byteBudget, a net.Addr, n int64, what string) (func(), error) {
	src, counted := g.source(a)
	if counted && !b.share.acquire(src, n) {
		g.noteRefused(src.String(), what)
		return nil, errOverShare
	}
	if err := b.total.Acquire(ctx, n); err != nil {
		if counted {
			b.share.release(src, n)
		}
		g.noteRefused(a.String(), what)
		return nil, err
	}
	return onceFunc(func() {
		b.total.Release(n)
		if counted {
			b.share.release(src, n)
		}
	}), nil
}

// noteRefused counts a refusal and logs one a minute at most: a flood
// must not flood the log too.
func (g *inboundGuard) noteRefused(src, what string) {
	n := g.refused.Add(1)
	now := time.Now().UnixNano()
	last := g.lastLogged.Load()
	if now-last < int64(time.Minute) || !g.lastLogged.CompareAndSwap(last, now) {
		return
	}
	g.log.Warn("too many connections to the gossip port: closing some", "source", src, "limit", what, "refused_total", n)
}

// byteBudget bounds the bytes held at once: in total (a stream waits for
// its turn) and per source (over its share, a quarter, a stream is refused
// at once: one host cannot hold the whole budget).
type byteBudget struct {
	total *semaphore.Weighted
	share sourceLimiter
}

func newByteBudget(n int64) byteBudget {
	return byteBudget{total: semaphore.NewWeighted(n), share: sourceLimiter{total: math.MaxInt64, perSource: n / 4}}
}

// sourceLimiter counts what concurrent holders hold, in total and per
// source.
type sourceLimiter struct {
	total, perSource int64

	mu sync.Mutex
	n  int64
	by map[netip.Prefix]int64
}

func (l *sourceLimiter) acquire(src netip.Prefix, w int64) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	if w > l.total-l.n || w > l.perSource-l.by[src] {
		return false
	}
	if l.by == nil {
		l.by = make(map[netip.Prefix]int64)
	}
	l.n += w
	l.by[src] += w
	return true
}

func (l *sourceLimiter) release(src netip.Prefix, w int64) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.n -= w
	if l.by[src] -= w; l.by[src] <= 0 {
		delete(l.by, src)
	}
}

func onceFunc(f func()) func() {
	var once sync.Once
	return func() { once.Do(f) }
}

// guardedConn runs its release functions once, when closed.
type guardedConn struct {
	net.Conn
	mu      sync.Mutex
	release []func()
}

func (c *guardedConn) onClose(f func()) {
	c.mu.Lock()
	c.release = append(c.release, f)
	c.mu.Unlock()
}

func (c *guardedConn) Close() error {
	err := c.Conn.Close()
	c.mu.Lock()
	rel := c.release
	c.release = nil
	c.mu.Unlock()
	for _, f := range rel {
		f()
	}
	return err
}
