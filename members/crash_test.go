package members

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// crashChildEnv switches the test binary into the child of TestCrashSafety.
const crashChildEnv = "BOOTURE_MEMBERS_CRASH_CHILD_DIR"

// TestCrashChild is not a test on its own: TestCrashSafety runs the test
// binary again with crashChildEnv set, and this function then adds members
// from many goroutines, printing each one only after its Add returned, until
// it is killed (or the site is full).
func TestCrashChild(t *testing.T) {
	dir := os.Getenv(crashChildEnv)
	if dir == "" {
		t.Skip("helper process of TestCrashSafety")
	}
	r, err := Open(filepath.Join(dir, "members.json"), site3(t))
	if err != nil {
		fmt.Printf("open-error %v\n", err)
		os.Exit(2)
	}
	var out sync.Mutex
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Go(func() {
			for i := 0; ; i++ {
				req := AddRequest{Name: fmt.Sprintf("g%d-m%d", g, i)}
				if i%3 == 1 {
					req.PublicKey = pubOf(req.Name)
				}
				m, _, err := r.Add(req)
				if errors.Is(err, ErrSiteFull) {
					return
				}
				if err != nil {
					fmt.Printf("add-error %v\n", err)
					os.Exit(2)
				}
				out.Lock()
				// One write(2) per line, unbuffered: a line the parent
				// reads was printed after Add returned.
				fmt.Fprintf(os.Stdout, "added %s %s %s %s\n", m.Name, m.IPv4, m.IPv6, m.PublicKey)
				out.Unlock()
			}
		})
	}
	wg.Wait()
	fmt.Println("full")
	time.Sleep(time.Minute) // wait to be killed
}

// TestCrashSafety kills a process with SIGKILL in the middle of concurrent
// Adds and checks that every member it reported as added survived, with its
// addresses and key, and that the file is intact.
func TestCrashSafety(t *testing.T) {
	if os.Getenv(crashChildEnv) != "" {
		t.Skip("in the child")
	}
	if testing.Short() {
		t.Skip("starts child processes")
	}
	for round, killAfter := range []int{1, 17, 60, 140} {
		t.Run(fmt.Sprintf("kill-after-%d", killAfter), func(t *testing.T) {
			dir := t.TempDir()
			cmd := exec.Command(os.Args[0], "-test.run=^TestCrashChild$", "-test.count=1")
			cmd.Env = append(os.Environ(), crashChildEnv+"="+dir)
			cmd.Stderr = os.Stderr
			stdout, err := cmd.StdoutPipe()
			if err != nil {
				t.Fatal(err)
			}
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			killed := false
			timer := time.AfterFunc(2*time.Minute, func() { cmd.Process.Kill() })
			defer timer.Stop()

			var added [][]string
			sc := bufio.NewScanner(stdout)
			for sc.Scan() {
				f := strings.Fields(sc.Text())
				switch {
				case len(f) == 5 && f[0] == "added":
					added = append(added, f[1:])
				case len(f) > 0 && (f[0] == "add-error" || f[0] == "open-error"):
					t.Errorf("child: %s", sc.Text())
				}
				if !killed && (len(added) >= killAfter || sc.Text() == "full") {
					if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
						t.Fatal(err)
					}
					killed = true
				}
			}
			cmd.Wait()
			if !killed {
				t.Fatalf("child ended on its own after %d adds", len(added))
			}
			t.Logf("round %d: child killed after %d confirmed adds", round, len(added))

			r := openAt(t, dir, site3(t))
			t.Logf("%d members on disk after the crash", r.Len())
			if left, _ := filepath.Glob(filepath.Join(dir, ".members.json.tmp-*")); len(left) > 0 {
				t.Errorf("Open left temporary files: %v", left)
			}
			if r.Len() < len(added) {
				t.Errorf("%d members on disk, %d confirmed", r.Len(), len(added))
			}
			for _, a := range added {
				m, err := r.Get(a[0])
				if err != nil {
					t.Errorf("confirmed member lost: %v", err)
					continue
				}
				if got := []string{m.Name, m.IPv4.String(), m.IPv6.String(), m.PublicKey.String()}; strings.Join(got, " ") != strings.Join(a, " ") {
					t.Errorf("member changed across the crash: %v, confirmed %v", got, a)
				}
			}
			// The registry is usable after the crash.
			mustAdd(t, r, "after-crash", "")
		})
	}
}
