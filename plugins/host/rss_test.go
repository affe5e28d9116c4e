package host

import (
	"context"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/booture/booture/catalog"
	"github.com/booture/booture/internal/waitfor"
)

// BenchmarkPluginIdleRSS reports the resident memory of an idle
// first-party plugin process (booture-plugin-nextcloud, configured and
// health-polled), as the kernel counts it (VmRSS). Run with
//
//	go test -run='^$' -bench=PluginIdleRSS -benchtime=1x ./plugins/host
func BenchmarkPluginIdleRSS(b *testing.B) {
	dir := b.TempDir()
	bin := filepath.Join(dir, BinaryPrefix+"nextcloud")
	if out, err := exec.Command("go", "build", "-o", bin, "../../cmd/booture-plugin-nextcloud").CombinedOutput(); err != nil {
		b.Fatalf("building: %v\n%s", err, out)
	}
	var probes atomic.Int32 // the plugin's health probes of its upstream
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		probes.Add(1)
		w.Header().Set("Content-Type", "application/json")
		w.Write([]byte(`{"installed":true,"maintenance":false,"needsDbUpgrade":false}`))
	}))
	defer up.Close()
	sockets, err := os.MkdirTemp("", "bp")
	if err != nil {
		b.Fatal(err)
	}
	defer os.RemoveAll(sockets)
	timing := fastTiming()
	timing.HealthInterval = time.Second
	m, err := New(Options{
		StateDir: b.TempDir(), PluginDirs: []string{dir}, Mesh: Mesh{Booture: "bench"}, SocketDir: sockets,
		Specs:  []catalog.Spec{{Plugin: "nextcloud", Upstream: up.URL}},
		Timing: timing, Logger: slog.New(slog.DiscardHandler),
	})
	if err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { m.Run(ctx); close(done) }()
	defer func() { cancel(); <-done }()
	var pid int
	waitfor.Cond(b, 10*time.Second, "the plugin running", func() bool {
		if p := m.List()[0]; p.State == StateRunning {
			pid = p.PID
		}
		return pid != 0
	})
	// A few health polls (each probes the upstream), then idle.
	polled := probes.Load()
	waitfor.Cond(b, 20*time.Second, "three health polls", func() bool { return probes.Load() >= polled+3 })
	b.ResetTimer()
	var kib int
	for i := 0; i < b.N; i++ {
		kib = vmRSS(b, pid)
	}
	b.ReportMetric(float64(kib), "RSS-KiB")
}

func vmRSS(b *testing.B, pid int) int {
	data, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		b.Fatal(err)
	}
	for _, line := range strings.Split(string(data), "\n") {
		if f := strings.Fields(line); len(f) >= 2 && f[0] == "VmRSS:" {
			n, _ := strconv.Atoi(f[1])
			return n
		}
	}
	b.Fatal("no VmRSS")
	return 0
}
