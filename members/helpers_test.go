package members

import (
	"crypto/sha256"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/booture/booture/key"
)

func site3(t testing.TB) Site {
	t.Helper()
	s, err := ParseSite("10.77.3.0/24", "fd12:3456:789a:3::/64")
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func site9(t testing.TB) Site {
	t.Helper()
	s, err := ParseSite("10.77.9.0/24", "fd12:3456:789a:9::/64")
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// fixedKey returns a deterministic private key derived from seed.
func fixedKey(seed string) key.PrivateKey {
	return key.PrivateKeyFromRaw32(sha256.Sum256([]byte(seed)))
}

// pubOf returns the base64 public key of fixedKey(seed).
func pubOf(seed string) string { return fixedKey(seed).Public().String() }

// fastWrite writes without fsync, for tests that add hundreds of members
// and do not test durability.
func fastWrite(path string, data []byte, perm fs.FileMode) error {
	tmp := path + ".fast"
	if err := os.WriteFile(tmp, data, perm); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}

// openAt opens a registry at dir/members.json and closes it at cleanup.
func openAt(t testing.TB, dir string, site Site, opts ...Option) *Registry {
	t.Helper()
	r, err := Open(filepath.Join(dir, "members.json"), site, opts...)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() { r.Close() })
	return r
}

// openTemp opens a registry in a new temporary directory, with a fixed
// clock.
func openTemp(t testing.TB, opts ...Option) *Registry {
	t.Helper()
	r := openAt(t, t.TempDir(), site3(t), opts...)
	r.now = func() time.Time { return time.Date(2026, 3, 4, 5, 6, 7, 8, time.UTC) }
	return r
}

func mustAdd(t testing.TB, r *Registry, name, pubSeed string) Member {
	t.Helper()
	req := AddRequest{Name: name}
	if pubSeed != "" {
		req.PublicKey = pubOf(pubSeed)
	}
	m, _, err := r.Add(req)
	if err != nil {
		t.Fatalf("Add(%q): %v", name, err)
	}
	return m
}

func nameList(ms []Member) string {
	s := make([]string, len(ms))
	for i, m := range ms {
		s[i] = m.Name
	}
	return strings.Join(s, ",")
}

func oneLine(t testing.TB, err error) {
	t.Helper()
	if err == nil {
		t.Fatal("want an error, got nil")
	}
	if strings.ContainsAny(err.Error(), "\n\r") {
		t.Errorf("error is not one line: %q", err)
	}
}
