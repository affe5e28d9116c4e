package lab

import (
	"context"
	"errors"
	"fmt"
	"net"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/booture/booture/internal/api"
)

// JoinAll makes each joiner join the mesh of inviter, one after the other
// (inviter invites, the joiner runs booture join).
func JoinAll(inviter *Host, joiners ...*Host) error {
	for _, j := range joiners {
		if err := j.JoinVia(inviter); err != nil {
			return err
		}
	}
	return nil
}

// Statuses returns `booture status --json` of each host, in order, fetched
// in parallel.
func Statuses(hosts ...*Host) ([]api.Status, error) {
	out := make([]api.Status, len(hosts))
	errs := make([]error, len(hosts))
	var wg sync.WaitGroup
	for i, h := range hosts {
		wg.Add(1)
		go func() {
			defer wg.Done()
			out[i], errs[i] = h.Status()
		}()
	}
	wg.Wait()
	return out, errors.Join(errs...)
}

// FindPeer returns the peer named name in st.
func FindPeer(st api.Status, name string) (api.Peer, bool) {
	for _, p := range st.Peers {
		if p.Name == name {
			return p, true
		}
	}
	return api.Peer{}, false
}

// CheckMesh returns nil when hosts form one mesh, as seen by each of them:
// the same mesh id; in `status`, every other host alive with its key, site
// and addresses; in `wg show`, a peer per other host with its key, its LAN
// endpoint and its site /24 and /64 as allowed IPs; in `ip route`, routes to
// those sites through the WireGuard interface. Otherwise it says what is
// missing.
func CheckMesh(hosts ...*Host) error {
	sts, err := Statuses(hosts...)
	if err != nil {
		return err
	}
	var errs []error
	var mu sync.Mutex
	var wg sync.WaitGroup
	for i, h := range hosts {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := checkHost(h, sts[i], hosts, sts); err != nil {
				mu.Lock()
				errs = append(errs, err)
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	return errors.Join(errs...)
}

func checkHost(h *Host, st api.Status, hosts []*Host, sts []api.Status) error {
	dev, err := h.WG()
	if err != nil {
		return err
	}
	routes, err := h.MeshRoutes()
	if err != nil {
		return err
	}
	if dev.PublicKey != st.PublicKey {
		return fmt.Errorf("%s: wg show has key %s, status %s", h.Name, dev.PublicKey, st.PublicKey)
	}
	var errs []error
	for j, o := range hosts {
		if o == h {
			continue
		}
		ost := sts[j]
		if st.MeshID != ost.MeshID {
			errs = append(errs, fmt.Errorf("%s: in mesh %s, %s in mesh %s", h.Name, st.MeshID, o.Name, ost.MeshID))
			continue
		}
		p, ok := FindPeer(st, o.Name)
		switch {
		case !ok:
			errs = append(errs, fmt.Errorf("%s: %s not in status peers", h.Name, o.Name))
		case p.State != "alive":
			errs = append(errs, fmt.Errorf("%s: %s is %s", h.Name, o.Name, p.State))
		case p.PublicKey != ost.PublicKey || p.MeshIPv4 != ost.MeshIPv4 || p.MeshIPv6 != ost.MeshIPv6 || p.SiteIPv4 != ost.SiteIPv4:
			errs = append(errs, fmt.Errorf("%s: status shows %s as %+v, it says it is key %s, %s, %s, site %s",
				h.Name, o.Name, p, ost.PublicKey, ost.MeshIPv4, ost.MeshIPv6, ost.SiteIPv4))
		}
		wp, ok := dev.Peer(ost.PublicKey)
		if !ok {
			errs = append(errs, fmt.Errorf("%s: no WireGuard peer for %s (%s)", h.Name, o.Name, ost.PublicKey))
			continue
		}
		want := []string{ost.SiteIPv4, ost.SiteIPv6}
		slices.Sort(want)
		if !slices.Equal(wp.AllowedIP, want) {
			errs = append(errs, fmt.Errorf("%s: WireGuard peer %s has allowed IPs %v, want %v", h.Name, o.Name, wp.AllowedIP, want))
		}
		if ep := net.JoinHostPort(o.IP.String(), strconv.Itoa(ost.WireGuard.ListenPort)); wp.Endpoint != ep {
			errs = append(errs, fmt.Errorf("%s: WireGuard peer %s has endpoint %s, want %s", h.Name, o.Name, wp.Endpoint, ep))
		}
		for _, s := range want {
			if !HasRoute(routes, mustPrefix(s)) {
				errs = append(errs, fmt.Errorf("%s: no route to %s (%s) via %s", h.Name, s, o.Name, h.Iface))
			}
		}
	}
	return errors.Join(errs...)
}

// WaitMesh waits until CheckMesh(hosts...) passes, for at most timeout.
func WaitMesh(timeout time.Duration, hosts ...*Host) error {
	return Eventually(nilContext(), timeout, 250*time.Millisecond, func() error { return CheckMesh(hosts...) })
}

// PingMesh pings, from every host, every other host's mesh IPv4 and IPv6
// address (both ways, in parallel), retrying each for at most timeout.
func PingMesh(timeout time.Duration, hosts ...*Host) error {
	sts, err := Statuses(hosts...)
	if err != nil {
		return err
	}
	var mu sync.Mutex
	var errs []error
	var wg sync.WaitGroup
	for _, h := range hosts {
		for j, o := range hosts {
			if o == h {
				continue
			}
			for _, dst := range []string{sts[j].MeshIPv4, sts[j].MeshIPv6} {
				wg.Add(1)
				go func() {
					defer wg.Done()
					if err := h.WaitPing(dst, timeout); err != nil {
						mu.Lock()
						errs = append(errs, fmt.Errorf("%s -> %s (%s): %w", h.Name, o.Name, dst, err))
						mu.Unlock()
					}
				}()
			}
		}
	}
	wg.Wait()
	return errors.Join(errs...)
}

// WaitPeerState waits until every observer's status shows the booture name
// in state (alive, suspect, dead, left; "gone" means not listed at all or
// not alive), polling every 100 ms for at most timeout. It returns how long
// it took, measured from the call.
func WaitPeerState(timeout time.Duration, name, state string, observers ...*Host) (time.Duration, error) {
	start := time.Now()
	pending := slices.Clone(observers)
	err := Eventually(nilContext(), timeout, 100*time.Millisecond, func() error {
		var still []*Host
		var errs []error
		for _, o := range pending {
			st, err := o.Status()
			if err != nil {
				still = append(still, o)
				errs = append(errs, err)
				continue
			}
			p, ok := FindPeer(st, name)
			match := ok && p.State == state
			if state == "gone" {
				match = !ok || p.State != "alive"
			}
			if !match {
				still = append(still, o)
				errs = append(errs, fmt.Errorf("%s sees %s as %q (listed: %v)", o.Name, name, p.State, ok))
			}
		}
		pending = still
		return errors.Join(errs...)
	})
	return time.Since(start), err
}

// CheckPeers is a lighter CheckMesh for benchmarks: every host's admin API
// lists every other host alive, and its WireGuard interface has a peer with
// two allowed IPs (a site /24 and /64) for each.
func CheckPeers(hosts ...*Host) error {
	errs := make([]error, len(hosts))
	var wg sync.WaitGroup
	for i, h := range hosts {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = checkPeers(h, hosts)
		}()
	}
	wg.Wait()
	return errors.Join(errs...)
}

func checkPeers(h *Host, hosts []*Host) error {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	st, err := h.Client().Status(ctx)
	if err != nil {
		return fmt.Errorf("%s: %w", h.Name, err)
	}
	keys := map[string]bool{}
	for _, o := range hosts {
		if o == h {
			continue
		}
		p, ok := FindPeer(st, o.Name)
		if !ok || p.State != "alive" {
			return fmt.Errorf("%s does not see %s alive yet", h.Name, o.Name)
		}
		keys[p.PublicKey] = true
	}
	dev, err := h.WG()
	if err != nil {
		return err
	}
	n := 0
	for _, p := range dev.Peers {
		if keys[p.PublicKey] && len(p.AllowedIP) == 2 {
			n++
		}
	}
	if n != len(keys) {
		return fmt.Errorf("%s has %d of its %d WireGuard peers", h.Name, n, len(keys))
	}
	return nil
}

// WaitDead polls observers' status every poll until each shows victim
// dead, and returns how long after since each took (first and last).
func WaitDead(ctx context.Context, since time.Time, poll time.Duration, victim *Host, observers []*Host) (first, last time.Duration, err error) {
	seen := map[string]time.Duration{}
	err = Eventually(ctx, 60*time.Second, poll, func() error {
		for _, o := range observers {
			if _, ok := seen[o.Name]; ok {
				continue
			}
			sctx, cancel := context.WithTimeout(ctx, 2*time.Second)
			st, err := o.Client().Status(sctx)
			cancel()
			if err != nil {
				return err
			}
			if p, ok := FindPeer(st, victim.Name); ok && p.State == "dead" {
				d := time.Since(since)
				if len(seen) == 0 {
					first = d
				}
				seen[o.Name], last = d, d
			}
		}
		if len(seen) < len(observers) {
			return fmt.Errorf("%d of %d see %s dead", len(seen), len(observers), victim.Name)
		}
		return nil
	})
	return first, last, err
}
