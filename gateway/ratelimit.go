package gateway

import (
	"net/netip"
	"sync"
	"time"

	"golang.org/x/time/rate"
)

// clientLimits is a token bucket per DNS client, so that one member (or one
// booture) cannot take all the forwarding capacity (MaxForwards) or flood
// upstreams. The map is bounded: a bucket that is full again is the same as
// a new one, so such buckets are dropped when the map is full; if most
// clients are busy, all buckets start afresh rather than the map growing.
type clientLimits struct {
	every rate.Limit
	burst int
	max   int

	mu sync.Mutex
	m  map[netip.Prefix]*rate.Limiter
}

func newClientLimits(perSecond float64, burst, maxClients int) *clientLimits {
	return &clientLimits{every: rate.Limit(perSecond), burst: burst, max: maxClients, m: make(map[netip.Prefix]*rate.Limiter)}
}

// allow takes a token from key's bucket.
func (c *clientLimits) allow(key netip.Prefix) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	l := c.m[key]
	if l == nil {
		if len(c.m) >= c.max {
			c.sweepLocked()
		}
		l = rate.NewLimiter(c.every, c.burst)
		c.m[key] = l
	}
	return l.Allow()
}

func (c *clientLimits) sweepLocked() {
	now := time.Now()
	for k, l := range c.m {
		if l.TokensAt(now) >= float64(c.burst) {
			delete(c.m, k)
		}
	}
	if len(c.m) > c.max*3/4 {
		clear(c.m)
	}
}

func (c *clientLimits) size() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.m)
}

// clientKey is the bucket of a source address: the address itself, except
// an IPv6 address outside this booture's site, which counts as its /64.
// WireGuard lets a member use only its own address, but a booture all the
// addresses of its site: per /128, it could make itself 2^64 buckets.
func clientKey(n Network, a netip.Addr) netip.Prefix {
	a = a.Unmap().WithZone("")
	if a.Is6() && !(n.Site6.IsValid() && n.Site6.Contains(a)) {
		p, _ := a.Prefix(64)
		return p
	}
	return netip.PrefixFrom(a, a.BitLen())
}
