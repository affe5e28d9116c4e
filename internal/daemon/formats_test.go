package daemon

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// The endpoints file of the first release (a bare map, kept in testdata)
// is read, written back in the versioned format, and a newer format is
// refused (the daemon then starts without it: it is a cache).
func TestEndpointsFileFormats(t *testing.T) {
	dir := t.TempDir()
	v0, err := os.ReadFile("testdata/v0/member-endpoints.json")
	if err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(dir, EndpointsFile)
	os.WriteFile(p, v0, 0o600)
	r := newReacher(dir)
	if len(r.endpoints) != 1 {
		t.Fatalf("first-release file not read: %v", r.endpoints)
	}
	r.reachAll(time.Now())
	r.dirty = true
	if err := r.save(); err != nil {
		t.Fatal(err)
	}
	data, _ := os.ReadFile(p)
	if !strings.Contains(string(data), `"version": 1`) || !strings.Contains(string(data), "198.51.100.7:40000") {
		t.Fatalf("written:\n%s", data)
	}
	if got := newReacher(dir); len(got.endpoints) != 1 {
		t.Fatal("versioned file not read back")
	}
	os.WriteFile(p, []byte(`{"version": 9, "endpoints": {}}`), 0o600)
	if _, err := readEndpoints(p); err == nil || !strings.Contains(err.Error(), "newer booture") {
		t.Fatalf("newer format: %v", err)
	}
}
