package daemon

import "testing"

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
