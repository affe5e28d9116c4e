package daemon

import (
	"testing"
	"time"
)

func TestMemoryLimit(t *testing.T) {
	const mib = 1 << 20
	for _, tc := range []struct {
		live, rate uint64
		want       int64
	}{
		{live: 2 * mib, rate: 0, want: minMemoryLimit},                   // tiny heap: the floor
		{live: 16 * mib, rate: 100 << 10, want: 20*mib + memoryHeadroom}, // at rest: just above live
		{live: 16 * mib, rate: 50 * mib, want: busyMemoryLimit},          // traffic: room for the pools
		{live: 80 * mib, rate: 50 * mib, want: 160 * mib},                // a big mesh under traffic
	} {
		if got := memoryLimit(tc.live, tc.rate); got != tc.want {
			t.Errorf("memoryLimit(%d MiB, %d B/s) = %d MiB, want %d MiB", tc.live/mib, tc.rate, got/mib, tc.want/mib)
		}
	}
}

func TestRestPlan(t *testing.T) {
	t0 := time.Unix(1000, 0)
	p := newRestPlan(t0)
	const idle, busy = 100 << 10, busyAllocRate
	for _, st := range []struct {
		after            time.Duration
		rate             uint64
		collect, release bool
	}{
		{2 * time.Second, idle, false, false},  // too soon for both
		{10 * time.Second, idle, true, false},  // first collection at rest
		{12 * time.Second, idle, false, false}, // not again before 10 s
		{30 * time.Second, busy, false, false}, // under traffic: neither
		{32 * time.Second, idle, true, true},   // first rest after 30 s: both
		{34 * time.Second, idle, false, false}, // released once only
		{60 * time.Second, idle, true, false},
	} {
		c, r := p.step(t0.Add(st.after), st.rate)
		if c != st.collect || r != st.release {
			t.Errorf("after %v at %d B/s: collect %v release %v, want %v %v", st.after, st.rate, c, r, st.collect, st.release)
		}
	}
}
