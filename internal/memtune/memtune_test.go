package memtune

import (
	"runtime"
	"sync"
	"testing"
	"time"
)

func TestMemoryLimit(t *testing.T) {
	const mib = 1 << 20
	for _, tc := range []struct {
		live, nonHeap, rate uint64
		want                int64
	}{
		{live: 2 * mib, rate: 0, want: minMemoryLimit},                                      // tiny heap: the floor
		{live: 16 * mib, rate: 100 << 10, want: 20*mib + memoryHeadroom},                    // at rest: just above live
		{live: 16 * mib, nonHeap: 12 * mib, rate: 100 << 10, want: 32*mib + memoryHeadroom}, // stacks count too
		{live: 16 * mib, rate: 50 * mib, want: busyMemoryLimit},                             // traffic: room for the pools
		{live: 80 * mib, nonHeap: 10 * mib, rate: 50 * mib, want: 170 * mib},                // a big mesh under traffic
	} {
		if got := memoryLimit(tc.live, tc.nonHeap, tc.rate); got != tc.want {
			t.Errorf("memoryLimit(%d MiB, %d MiB outside the heap, %d B/s) = %d MiB, want %d MiB", tc.live/mib, tc.nonHeap/mib, tc.rate, got/mib, tc.want/mib)
		}
	}
}

// TestReadMemory: the runtime's memory outside the heap is there (stacks
// at least) and is counted in the limit the runtime enforces, so the rest
// limit leaves the heap its room.
func TestReadMemory(t *testing.T) {
	samples := newMemorySamples()
	runtime.GC() // the live heap is known after a collection
	live, allocs, nonHeap, ok := readMemory(samples)
	if !ok {
		t.Fatal("runtime metrics missing")
	}
	if live == 0 || allocs == 0 || nonHeap == 0 {
		t.Fatalf("live %d, allocs %d, outside the heap %d: want all above 0", live, allocs, nonHeap)
	}
	// Many goroutines: their stacks grow the memory outside the heap.
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for range 1000 {
		wg.Add(1)
		go func() { defer wg.Done(); deepStack(16, stop) }()
	}
	time.Sleep(100 * time.Millisecond)
	_, _, more, _ := readMemory(samples)
	close(stop)
	wg.Wait()
	if more < nonHeap+1000*4096 {
		t.Errorf("outside the heap: %d bytes with 1000 more goroutines, %d before", more, nonHeap)
	}
}

func deepStack(n int, stop chan struct{}) byte {
	var pad [256]byte
	if n > 0 {
		pad[0] = deepStack(n-1, stop)
		return pad[0]
	}
	<-stop
	return pad[1]
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
