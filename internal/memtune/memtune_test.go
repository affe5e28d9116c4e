package memtune

import (
	"context"
	"math"
	"runtime"
	"slices"
	"sync"
	"testing"
	"testing/synctest"
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
	var deep, wg sync.WaitGroup
	for range 1000 {
		deep.Add(1)
		wg.Go(func() { deepStack(16, &deep, stop) })
	}
	deep.Wait() // every stack is at its deepest
	_, _, more, _ := readMemory(samples)
	close(stop)
	wg.Wait()
	if more < nonHeap+1000*4096 {
		t.Errorf("outside the heap: %d bytes with 1000 more goroutines, %d before", more, nonHeap)
	}
}

// deepStack calls itself n deep, then says so and waits for stop.
func deepStack(n int, deep *sync.WaitGroup, stop chan struct{}) byte {
	var pad [256]byte
	if n > 0 {
		pad[0] = deepStack(n-1, deep, stop)
		return pad[0]
	}
	deep.Done()
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

// sink keeps an allocation alive (and counted) while a test makes traffic.
var sink []byte

// TestRunTiming runs the tuning loop on synctest's clock, with the
// process's real allocation rate: it collects every restCollectPeriod at
// rest, not under traffic, and releases the start-up code once, at the first
// rest ReleaseDelay or more after start.
func TestRunTiming(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var mu sync.Mutex
		var collects, releases []time.Duration
		var limits int
		start := time.Now()
		at := func(list *[]time.Duration) func() {
			return func() {
				mu.Lock()
				defer mu.Unlock()
				*list = append(*list, time.Since(start))
			}
		}
		var lifted bool
		act := actions{
			setLimit: func(l int64) {
				mu.Lock()
				defer mu.Unlock()
				limits++
				lifted = l == math.MaxInt64
			},
			collect: at(&collects),
			release: at(&releases),
		}
		ctx, cancel := context.WithCancel(t.Context())
		done := make(chan struct{})
		go func() { run(ctx, act); close(done) }()

		// Traffic between the looks at 28 s and 30 s: the one at 30 s
		// neither collects nor releases; the next, at rest, does both.
		time.Sleep(29 * time.Second)
		synctest.Wait()
		sink = make([]byte, 4*busyAllocRate)
		time.Sleep(2 * time.Second)
		synctest.Wait()
		sink = nil
		time.Sleep(55*time.Second - 31*time.Second)
		synctest.Wait()
		cancel()
		<-done

		sec := func(ss ...int) []time.Duration {
			var out []time.Duration
			for _, s := range ss {
				out = append(out, time.Duration(s)*time.Second)
			}
			return out
		}
		mu.Lock()
		defer mu.Unlock()
		if want := sec(10, 20, 32, 42, 52); !slices.Equal(collects, want) {
			t.Errorf("collected at %v, want %v", collects, want)
		}
		if want := sec(32); !slices.Equal(releases, want) {
			t.Errorf("released the start-up code at %v, want %v", releases, want)
		}
		// A limit at each look (every memoryPeriod from 0 to 54 s), then
		// lifted when the loop ends.
		if want := 55/int(memoryPeriod/time.Second) + 1 + 1; limits != want || !lifted {
			t.Errorf("%d limits set (last lifted: %v), want %d and lifted", limits, lifted, want)
		}
	})
}
