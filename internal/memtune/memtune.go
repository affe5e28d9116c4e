// Package memtune keeps the daemon's memory small at rest without slowing
// it under traffic: it sets the runtime's soft memory limit from the
// allocation rate, collects at rest, and hands the binary's start-up code
// back to the kernel once the daemon has settled. The daemon runs it in one
// goroutine (Run).
//
// A booture runs on a Raspberry Pi next to the association's services: at
// rest the daemon should take little memory, and under traffic it should not
// be slower than WireGuard alone. Most of the daemon's heap is the embedded
// WireGuard's packet buffers, which it pools: collected too often, the pools
// empty and every packet allocates again (throughput drops threefold);
// collected too rarely, memory a burst of traffic used stays with the
// process. So the daemon watches its allocation rate and sets a soft memory
// limit to match:
//   - at rest, a little above the live heap (plus what the runtime holds
//     outside the heap, stacks mostly): the runtime hands freed memory back
//     to the system;
//   - under traffic, busyMemoryLimit (or twice the live heap if more): the
//     pools stay full, and memory stays bounded.
//
// At rest that is not enough on its own: the live heap counts WireGuard's
// receive buffers (hundreds of 64 KiB buffers of which only the first bytes
// are ever written at rest), so the runtime lets garbage pile up to tens of
// megabytes, all of it touched memory, before it collects. Gossip makes a
// few hundred KB of garbage a second. So at rest the daemon also collects
// every restCollectPeriod: the same few megabytes are then used again and
// again. (Returning them to the system each time as well, FreeOSMemory,
// costs a page fault per page reused: a lab of 101 bootures forming a
// mesh could not keep up.)
//
// GOGC or GOMEMLIMIT in the environment turn both off. (The daemon also
// releases its start-up code once at rest: see release_linux.go.)
package memtune

import (
	"context"
	"log/slog"
	"math"
	"os"
	"runtime"
	"runtime/debug"
	"runtime/metrics"
	"time"
)

// memoryPeriod is how often the limit is reconsidered.
const memoryPeriod = 2 * time.Second

// ReleaseDelay is how long after start the daemon may release its
// start-up code (at its first rest after it): the mesh is joined and the
// plugins started by then. Footprint measurements wait for it.
const ReleaseDelay = 30 * time.Second

// restCollectPeriod is how often the daemon collects at rest.
const restCollectPeriod = 10 * time.Second

const (
	// At rest: live heap × 5/4 + headroom, at least minMemoryLimit.
	memoryHeadroom = 4 << 20
	minMemoryLimit = 16 << 20
	// busyAllocRate (bytes/s) marks traffic.
	busyAllocRate = 4 << 20
	// busyMemoryLimit is the limit under traffic.
	busyMemoryLimit = 96 << 20
)

// memoryLimit returns the soft limit for a live heap, the runtime's memory
// outside the heap, and an allocation rate. The limit bounds all of the
// runtime's memory, goroutine stacks included: with 200 peers, WireGuard's
// goroutines' stacks alone are megabytes, and a limit from the heap alone
// kept the collector running without end (74 % of the daemon's CPU).
func memoryLimit(live, nonHeap, allocRate uint64) int64 {
	if allocRate >= busyAllocRate {
		return max(busyMemoryLimit, int64(nonHeap+live*2))
	}
	return max(minMemoryLimit, int64(nonHeap)+int64(live)*5/4+memoryHeadroom)
}

// The runtime metrics Run reads, by their index in its samples.
const (
	metricLive = iota
	metricAllocs
	metricTotal
	metricReleased
	metricFree
	metricObjects
	metricUnused
	metricCount
)

var memoryMetrics = [metricCount]string{
	metricLive:     "/gc/heap/live:bytes",
	metricAllocs:   "/gc/heap/allocs:bytes",
	metricTotal:    "/memory/classes/total:bytes",
	metricReleased: "/memory/classes/heap/released:bytes",
	metricFree:     "/memory/classes/heap/free:bytes",
	metricObjects:  "/memory/classes/heap/objects:bytes",
	metricUnused:   "/memory/classes/heap/unused:bytes",
}

func newMemorySamples() []metrics.Sample {
	samples := make([]metrics.Sample, metricCount)
	for i, name := range memoryMetrics {
		samples[i].Name = name
	}
	return samples
}

// readMemory returns the live heap, the bytes allocated so far, and the
// memory the runtime holds outside the heap (stacks, metadata: what the
// soft limit counts besides the heap).
func readMemory(samples []metrics.Sample) (live, allocs, nonHeap uint64, ok bool) {
	metrics.Read(samples)
	var v [metricCount]uint64
	for i := range v {
		if samples[i].Value.Kind() != metrics.KindUint64 {
			return 0, 0, 0, false
		}
		v[i] = samples[i].Value.Uint64()
	}
	heap := v[metricReleased] + v[metricFree] + v[metricObjects] + v[metricUnused]
	if v[metricTotal] > heap {
		nonHeap = v[metricTotal] - heap
	}
	return v[metricLive], v[metricAllocs], nonHeap, true
}

// Run runs until ctx ends, adjusting the soft memory limit, collecting at
// rest, and releasing the start-up code at the first rest after
// ReleaseDelay. The limit is lifted when it returns.
func Run(ctx context.Context, log *slog.Logger) {
	act := actions{release: func() { releaseStartupCode(log) }}
	if os.Getenv("GOGC") == "" && os.Getenv("GOMEMLIMIT") == "" {
		act.setLimit = func(limit int64) { debug.SetMemoryLimit(limit) }
		act.collect = runtime.GC
	}
	run(ctx, act)
}

// actions are what Run does to the process; setLimit and collect are nil
// when the environment tunes the collector itself (GOGC, GOMEMLIMIT). Tests
// record them instead.
type actions struct {
	setLimit func(int64)
	collect  func()
	release  func()
}

func run(ctx context.Context, act actions) {
	if act.setLimit != nil {
		defer act.setLimit(math.MaxInt64)
	}
	samples := newMemorySamples()
	t := time.NewTicker(memoryPeriod)
	defer t.Stop()
	var lastAllocs uint64
	last := time.Now()
	rest := newRestPlan(last)
	for {
		if live, allocs, nonHeap, ok := readMemory(samples); ok {
			rate := uint64(float64(allocs-lastAllocs) / max(time.Since(last).Seconds(), 0.001))
			if lastAllocs == 0 {
				rate = 0
			}
			lastAllocs, last = allocs, time.Now()
			collect, release := rest.step(last, rate)
			if act.setLimit != nil {
				act.setLimit(memoryLimit(live, nonHeap, rate))
			}
			if collect && act.collect != nil {
				act.collect()
			}
			if release {
				act.release()
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// restPlan decides, at each look, what the daemon does at rest: collect
// (every restCollectPeriod) and release the start-up code (once, at the
// first rest ReleaseDelay or more after start).
type restPlan struct {
	started, lastCollect time.Time
	released             bool
}

func newRestPlan(now time.Time) *restPlan {
	return &restPlan{started: now, lastCollect: now}
}

func (p *restPlan) step(now time.Time, allocRate uint64) (collect, release bool) {
	if allocRate >= busyAllocRate {
		return false, false
	}
	if now.Sub(p.lastCollect) >= restCollectPeriod {
		collect, p.lastCollect = true, now
	}
	if !p.released && now.Sub(p.started) >= ReleaseDelay {
		release, p.released = true, true
	}
	return collect, release
}
