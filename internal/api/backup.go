package api

import (
	"context"
	"net"
	"net/http"
	"os"
	"time"
)

// Backup is the daemon's snapshot of its state for `booture backup`: the
// CLI encrypts it with the admin's passphrase (internal/backup) so that the
// daemon never spends the key derivation's memory.
type Backup struct {
	Name      string    `json:"name"`
	PublicKey string    `json:"public_key"`
	Site      int       `json:"site"`
	Members   int       `json:"members"`
	Version   string    `json:"version"`
	Created   time.Time `json:"created"`
	// Files are the state files by slash path relative to the state
	// directory.
	Files      map[string][]byte `json:"files"`
	Config     []byte            `json:"config,omitempty"`
	ConfigPath string            `json:"config_path,omitempty"`
}

// BackupBackend is implemented by a Backend that makes backups.
type BackupBackend interface {
	Backup(ctx context.Context) (Backup, error)
}

// Backup asks the daemon for a snapshot of its state.
func (c *Client) Backup(ctx context.Context) (b Backup, err error) {
	return b, c.do(ctx, "GET", "/v1/backup", nil, &b)
}

type peerUIDKey struct{}

// ConnContext records the peer's uid of an admin connection (SO_PEERCRED)
// in its requests' contexts; set it as the http.Server's ConnContext.
func ConnContext(ctx context.Context, c net.Conn) context.Context {
	if uid, ok := peerUID(c); ok {
		return context.WithValue(ctx, peerUIDKey{}, uid)
	}
	return ctx
}

// PeerUID returns the uid of the process at the other end of the admin
// connection that made ctx's request, when known.
func PeerUID(ctx context.Context) (int, bool) {
	uid, ok := ctx.Value(peerUIDKey{}).(int)
	return uid, ok
}

// backupAllowed reports whether the request may have a backup: it holds the
// booture's private key, which the socket's group (allowed to manage
// members and invitations) must not be able to take away. Only the
// daemon's own user may.
func backupAllowed(r *http.Request) error {
	uid, ok := PeerUID(r.Context())
	if !ok || uid != os.Geteuid() {
		return Errorf(http.StatusForbidden, "a backup holds the booture's private key: only the daemon's user (root) may make one")
	}
	return nil
}
