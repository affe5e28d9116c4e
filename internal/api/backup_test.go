package api

import (
	"context"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"testing"
)

// The admin socket knows who connects: backups go to the daemon's user only.
func TestPeerUIDOnTheSocket(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "s")
	l, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	got := make(chan context.Context, 1)
	go func() {
		c, err := l.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		got <- ConnContext(context.Background(), c)
	}()
	c, err := net.Dial("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ctx := <-got
	if uid, ok := PeerUID(ctx); !ok || uid != os.Getuid() {
		t.Fatalf("peer uid %d %v, want %d", uid, ok, os.Getuid())
	}
	r, _ := http.NewRequestWithContext(ctx, "GET", "/v1/backup", nil)
	if err := backupAllowed(r); err != nil {
		t.Fatal(err)
	}
	r, _ = http.NewRequestWithContext(context.WithValue(context.Background(), peerUIDKey{}, os.Geteuid()+1), "GET", "/v1/backup", nil)
	if err := backupAllowed(r); statusOf(err) != http.StatusForbidden {
		t.Fatalf("another user: %v", err)
	}
	r, _ = http.NewRequest("GET", "/v1/backup", nil)
	if err := backupAllowed(r); statusOf(err) != http.StatusForbidden {
		t.Fatalf("unknown user: %v", err)
	}
}
