package daemon

import (
	"context"
	"math"
	"os"
	"runtime/debug"
	"runtime/metrics"
	"time"
)

// A booture runs on a Raspberry Pi next to the association's services: the
// daemon keeps its memory small rather than quick to grow. Most of an idle
// daemon's heap is the embedded WireGuard's packet buffers; after a burst
// of traffic the freed memory stays with the process unless something asks
// the runtime to hand it back. A soft memory limit does that continuously:
// the daemon sets it a little above the live heap and moves it with the
// live heap, so it never makes the collector run non-stop (as a fixed limit
// below a big mesh's needs would) and idle memory goes back to the system.
// GOGC or GOMEMLIMIT in the environment turn this off.

// memoryPeriod is how often the limit follows the live heap.
const memoryPeriod = 30 * time.Second

// Limit = live heap × 5/4 + headroom (stacks, runtime metadata, a burst),
// at least minMemoryLimit.
const (
	memoryHeadroom = 8 << 20
	minMemoryLimit = 16 << 20
)

// tuneMemory runs until ctx ends, adjusting the soft memory limit.
func tuneMemory(ctx context.Context) {
	if os.Getenv("GOGC") != "" || os.Getenv("GOMEMLIMIT") != "" {
		return
	}
	defer debug.SetMemoryLimit(math.MaxInt64)
	sample := []metrics.Sample{{Name: "/gc/heap/live:bytes"}}
	t := time.NewTicker(memoryPeriod)
	defer t.Stop()
	for {
		metrics.Read(sample)
		if sample[0].Value.Kind() == metrics.KindUint64 {
			live := int64(sample[0].Value.Uint64())
			debug.SetMemoryLimit(max(minMemoryLimit, live*5/4+memoryHeadroom))
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}
