package api

import (
	"os"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
)

func mode(t *testing.T, path string) os.FileMode {
	t.Helper()
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	return fi.Mode() & (os.ModePerm | os.ModeSticky)
}

// TestListenTightensExistingSocketDir leaves the socket directory
// world-writable before the daemon starts, as a package or an admin may
// have: anyone could then replace the socket with theirs. Listen makes it
// the daemon's again.
func TestListenTightensExistingSocketDir(t *testing.T) {
	grp, err := user.LookupGroupId(strconv.Itoa(os.Getgid()))
	if err != nil {
		t.Skipf("no name for gid %d: %v", os.Getgid(), err)
	}
	for _, tc := range []struct {
		group            string
		wantDir, wantSck os.FileMode
	}{
		{"", 0o700, 0o600},
		{grp.Name, 0o750, 0o660},
	} {
		dir := filepath.Join(t.TempDir(), "run")
		if err := os.Mkdir(dir, 0o777); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(dir, 0o777); err != nil {
			t.Fatal(err)
		}
		sock := filepath.Join(dir, "bootured.sock")
		l, err := Listen(sock, tc.group)
		if err != nil {
			t.Fatalf("group %q: %v", tc.group, err)
		}
		l.Close()
		if got := mode(t, dir); got != tc.wantDir {
			t.Errorf("group %q: directory mode %v, want %v", tc.group, got, tc.wantDir)
		}
		if fi, err := os.Stat(dir); err == nil && tc.group != "" && fi.Sys().(*syscall.Stat_t).Gid != uint32(os.Getgid()) {
			t.Errorf("group %q: directory gid %d", tc.group, fi.Sys().(*syscall.Stat_t).Gid)
		}
	}
}

// TestListenRefusesSocketDirOfAnotherUser: the owner of the directory could
// replace the socket whatever its mode.
func TestListenRefusesSocketDirOfAnotherUser(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to give a directory to another user")
	}
	dir := filepath.Join(t.TempDir(), "run")
	if err := os.Mkdir(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(dir, 65534, 65534); err != nil {
		t.Fatal(err)
	}
	l, err := Listen(filepath.Join(dir, "bootured.sock"), "")
	if err == nil {
		l.Close()
		t.Fatal("Listen accepted a directory of uid 65534")
	}
	if !strings.Contains(err.Error(), "belongs to uid 65534") {
		t.Errorf("error = %v", err)
	}
}

// TestListenKeepsSharedStickyDir: a socket in a directory like /tmp keeps
// the directory's mode (its sticky bit protects the socket), and the
// socket itself is still 0600.
func TestListenKeepsSharedStickyDir(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "tmp")
	if err := os.Mkdir(dir, 0o777); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(dir, 0o777|os.ModeSticky); err != nil {
		t.Fatal(err)
	}
	sock := filepath.Join(dir, "bootured.sock")
	l, err := Listen(sock, "")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	if got := mode(t, dir); got != 0o777|os.ModeSticky {
		t.Errorf("shared directory changed to %v", got)
	}
	if got := mode(t, sock); got != 0o600 {
		t.Errorf("socket mode %v, want 0600", got)
	}
}
