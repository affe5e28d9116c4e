package lab_test

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// pluginReadable makes dir, a t.TempDir, readable by the plugin user
// (bootured runs plugins as nobody by default): a plugin reads only what
// its user may.
func pluginReadable(t *testing.T, dir string) {
	t.Helper()
	must(t, os.Chmod(filepath.Dir(dir), 0o711))
	must(t, os.Chmod(dir, 0o755))
}

// checkNotRoot fails t if process pid runs as root.
func checkNotRoot(t *testing.T, pid int) {
	t.Helper()
	status, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/status")
	must(t, err)
	for _, line := range strings.Split(string(status), "\n") {
		if k, v, _ := strings.Cut(line, ":"); k == "Uid" {
			if f := strings.Fields(v); len(f) == 0 || f[0] == "0" || f[1] == "0" {
				t.Errorf("plugin %d runs as root: %s", pid, line)
			}
			return
		}
	}
	t.Errorf("no Uid line for process %d", pid)
}
