package lab_test

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/booture/booture/internal/lab"
	"github.com/booture/booture/internal/waitfor"
)

// Members are durable: after kill -9 of the daemon in the middle of many
// concurrent `member add`, every add the CLI reported as done is there after
// restart, with the address it was given, and the state file is whole.
func TestMembersSurviveKillDuringAdds(t *testing.T) {
	t.Parallel()
	l := start(t, lab.Options{Hosts: 1})
	h := l.H(1)
	const adds = 60
	var mu sync.Mutex
	done := map[string]string{} // name -> IPv4 the printed config gave
	var finished atomic.Int32
	var wg sync.WaitGroup
	sem := make(chan struct{}, 12)
	for i := 0; i < adds; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			sem <- struct{}{}
			defer func() { <-sem }()
			name := fmt.Sprintf("m%02d", i)
			r := h.CLI("member", "add", name)
			if r.Code != 0 {
				return // cut by the kill: not reported done
			}
			addr := configLine(r.Stdout, "Address")
			mu.Lock()
			done[name] = strings.TrimSuffix(strings.Split(addr, ",")[0], "/32")
			mu.Unlock()
			finished.Add(1)
		}()
	}
	// Kill the daemon once some adds are done, while others are in flight.
	must(t, lab.Eventually(context.Background(), 60*time.Second, 5*time.Millisecond, func() error {
		if finished.Load() < 15 {
			return fmt.Errorf("%d adds done", finished.Load())
		}
		return nil
	}))
	must(t, h.Kill())
	wg.Wait()
	mu.Lock()
	reported := len(done)
	mu.Unlock()
	if reported == adds {
		t.Fatalf("all %d adds finished before the kill: the test did not cut any", adds)
	}
	must(t, h.Start())
	ms, err := h.MemberList()
	must(t, err)
	got := map[string]string{}
	for _, m := range ms {
		got[m.Name] = m.IPv4
	}
	for name, ip := range done {
		if got[name] != ip {
			t.Errorf("member %s was reported added with %s; after the crash: %q", name, ip, got[name])
		}
	}
	seen := map[string]string{}
	for name, ip := range got {
		if other, ok := seen[ip]; ok {
			t.Errorf("%s and %s share %s", name, other, ip)
		}
		seen[ip] = name
	}
	t.Logf("%d adds reported done before kill -9, all %d found after restart (%d in the file)", reported, reported, len(got))
}

// `booture plugin reload` swaps a plugin under a request loop
// through the daemon's own gateway without one failed request.
func TestPluginReloadDropsNoRequest(t *testing.T) {
	t.Parallel()
	bin, err := lab.Build(context.Background(), "./examples/staticsite")
	must(t, err)
	l := lab.New(t, lab.Options{Hosts: 2, Binaries: bin})
	h1, h2 := l.H(1), l.H(2)
	dir := t.TempDir()
	pluginReadable(t, dir)
	site := filepath.Join(dir, "www")
	must(t, os.MkdirAll(site, 0o755))
	must(t, os.WriteFile(filepath.Join(site, "index.html"), []byte("hello\n"), 0o644))
	conf := filepath.Join(dir, "booture.toml")
	must(t, os.WriteFile(conf, []byte(fmt.Sprintf("[[service]]\nplugin = \"staticsite\"\nname = \"site\"\naccess = \"mesh\"\n[service.settings]\nroot = %q\n", site)), 0o644))
	plugin := filepath.Join(dir, "booture-plugin-staticsite")
	raw, err := os.ReadFile(bin.Path("staticsite"))
	must(t, err)
	must(t, os.WriteFile(plugin, raw, 0o755))
	h2.Args = []string{"--config", conf}
	must(t, l.StartAll())
	// Installed like a third-party plugin, then declared.
	must(t, h2.CLI("plugin", "install", plugin).Error())
	must(t, h2.Restart())
	must(t, lab.JoinAll(h1, h2))
	must(t, lab.WaitMesh(30*time.Second, h1, h2))
	st2, err := h2.Status()
	must(t, err)
	host := "site." + h2.Name + ".booture.internal"

	// get fetches the site from h1 (a booture: mesh access) through h2's
	// gateway. It dials from inside h1's namespace on this goroutine's
	// thread, so it writes HTTP by hand.
	get := func() error {
		return h1.NS.Do(func() error {
			c, err := net.DialTimeout("tcp", st2.MeshIPv4+":80", 3*time.Second)
			if err != nil {
				return err
			}
			defer c.Close()
			c.SetDeadline(time.Now().Add(5 * time.Second))
			fmt.Fprintf(c, "GET / HTTP/1.1\r\nHost: %s\r\nConnection: close\r\n\r\n", host)
			resp, err := http.ReadResponse(bufio.NewReader(c), nil)
			if err != nil {
				return err
			}
			resp.Body.Close()
			if resp.StatusCode != 200 {
				return fmt.Errorf("status %s", resp.Status)
			}
			return nil
		})
	}
	if err := lab.Eventually(context.Background(), pingWait, 200*time.Millisecond, get); err != nil {
		p, perr := h1.NS.Ping(st2.MeshIPv4, 2, 200*time.Millisecond)
		t.Fatalf("fetching %s from %s: %v (ping: %+v %v)", host, h1.Name, err, p, perr)
	}

	var ok, failed atomic.Int32
	var firstErr atomic.Value
	ctx, stop := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	for w := 0; w < 4; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for ctx.Err() == nil {
				if err := get(); err != nil {
					failed.Add(1)
					firstErr.CompareAndSwap(nil, err.Error())
				} else {
					ok.Add(1)
				}
			}
		}()
	}
	waitfor.Cond(t, 10*time.Second, "requests flowing before the reload", func() bool { return ok.Load() >= 10 })
	before := pluginPID(t, h2)
	checkNotRoot(t, before)
	// A new binary (here the same program, reinstalled) and a reload.
	must(t, h2.CLI("plugin", "install", plugin).Error())
	r := h2.CLI("plugin", "reload", "staticsite")
	must(t, r.Error())
	// Requests continue after the old process stopped.
	waitfor.Cond(t, 20*time.Second, "the old plugin process to stop", func() bool { return !processAlive(before) })
	after := pluginPID(t, h2)
	if before == after {
		t.Fatalf("the plugin process did not change (pid %d)", before)
	}
	served := ok.Load()
	waitfor.Cond(t, 10*time.Second, "requests after the old process stopped", func() bool { return ok.Load() >= served+10 })
	stop()
	wg.Wait()
	if failed.Load() > 0 || ok.Load() < 20 {
		t.Fatalf("during the reload: %d requests succeeded, %d failed (first error: %v)", ok.Load(), failed.Load(), firstErr.Load())
	}
	t.Logf("%d requests through the gateway during the reload, none failed; plugin pid %d -> %d", ok.Load(), before, after)
}

// pluginPID returns the pid of h's staticsite plugin process.
func pluginPID(t *testing.T, h *lab.Host) int {
	t.Helper()
	// Installed plugins run from the booture's state directory: unique to
	// this lab (pgrep sees every process of the machine).
	r := h.NS.Run("pgrep", "-f", filepath.Join(h.StateDir, "plugins", "bin", "booture-plugin-staticsite"))
	must(t, r.Error())
	var pids []int
	for _, f := range strings.Fields(r.Stdout) {
		var p int
		fmt.Sscan(f, &p)
		pids = append(pids, p)
	}
	if len(pids) != 1 {
		t.Fatalf("%d staticsite plugin processes: %v", len(pids), pids)
	}
	return pids[0]
}

// processAlive reports whether pid is a live process (not gone, not a
// zombie).
func processAlive(pid int) bool {
	stat, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return false
	}
	// The state follows the command name in parentheses: "pid (comm) S ...".
	i := bytes.LastIndexByte(stat, ')')
	return i >= 0 && i+2 < len(stat) && stat[i+2] != 'Z'
}
