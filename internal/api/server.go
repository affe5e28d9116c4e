package api

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/user"
	"path/filepath"
	"strconv"
	"time"
)

// Backend is what the daemon offers the admin API. Methods return errors
// made with BadRequest, NotFound, ConflictErr or Errorf to choose the HTTP
// status; any other error is a 500.
type Backend interface {
	Status(ctx context.Context) (Status, error)
	Invite(ctx context.Context, ttl time.Duration) (Invitation, error)
	Invitations(ctx context.Context) ([]PendingInvitation, error)
	RevokeInvitation(ctx context.Context, tokenOrID string) (PendingInvitation, error)
	Join(ctx context.Context, token string) (JoinResult, error)
	Expel(ctx context.Context, name string) (ExpelResult, error)
	Leave(ctx context.Context) error

	AddMember(ctx context.Context, req MemberAddRequest) (MemberAdded, error)
	Members(ctx context.Context) ([]Member, error)
	Member(ctx context.Context, name string) (Member, error)
	MemberConfig(ctx context.Context, name string, qr bool) (MemberConfig, error)
	SetMemberEnabled(ctx context.Context, name string, enabled bool) (Member, error)
	RemoveMember(ctx context.Context, name string) error

	Services(ctx context.Context) ([]Service, error)
	Plugins(ctx context.Context) ([]Plugin, error)
	InstallPlugin(ctx context.Context, path string) (Plugin, error)
	ReloadPlugin(ctx context.Context, name string) (Plugin, error)
}

// maxBody bounds request bodies.
const maxBody = 64 << 10

// Handler returns the API's HTTP handler.
func Handler(b Backend, log *slog.Logger) http.Handler {
	mux := http.NewServeMux()
	h := func(pattern string, f func(r *http.Request) (any, error)) {
		mux.HandleFunc(pattern, func(w http.ResponseWriter, r *http.Request) {
			r.Body = http.MaxBytesReader(w, r.Body, maxBody)
			v, err := f(r)
			if err != nil {
				status := statusOf(err)
				if status >= 500 {
					log.Error("admin request failed", "method", r.Method, "path", r.URL.Path, "err", err)
				}
				writeJSON(w, status, &Error{Message: err.Error()})
				return
			}
			if v == nil {
				v = struct{}{}
			}
			writeJSON(w, http.StatusOK, v)
		})
	}
	h("GET /v1/status", func(r *http.Request) (any, error) { return b.Status(r.Context()) })
	h("GET /v1/peers", func(r *http.Request) (any, error) {
		st, err := b.Status(r.Context())
		return st.Peers, err
	})
	h("POST /v1/invite", func(r *http.Request) (any, error) {
		var req InviteRequest
		if err := decode(r, &req); err != nil {
			return nil, err
		}
		var ttl time.Duration
		if req.Expires != "" {
			d, err := time.ParseDuration(req.Expires)
			if err != nil || d <= 0 {
				return nil, Errorf(http.StatusBadRequest, "--expires: %q is not a positive duration like 2h or 30m", req.Expires)
			}
			ttl = d
		}
		return b.Invite(r.Context(), ttl)
	})
	h("GET /v1/invitations", func(r *http.Request) (any, error) { return b.Invitations(r.Context()) })
	h("POST /v1/invitations/revoke", func(r *http.Request) (any, error) {
		var req RevokeRequest
		if err := decode(r, &req); err != nil {
			return nil, err
		}
		return b.RevokeInvitation(r.Context(), req.Invitation)
	})
	h("POST /v1/join", func(r *http.Request) (any, error) {
		var req JoinRequest
		if err := decode(r, &req); err != nil {
			return nil, err
		}
		return b.Join(r.Context(), req.Token)
	})
	h("POST /v1/expel", func(r *http.Request) (any, error) {
		var req NameRequest
		if err := decode(r, &req); err != nil {
			return nil, err
		}
		return b.Expel(r.Context(), req.Name)
	})
	h("POST /v1/leave", func(r *http.Request) (any, error) { return nil, b.Leave(r.Context()) })
	h("GET /v1/members", func(r *http.Request) (any, error) { return b.Members(r.Context()) })
	h("POST /v1/members", func(r *http.Request) (any, error) {
		var req MemberAddRequest
		if err := decode(r, &req); err != nil {
			return nil, err
		}
		return b.AddMember(r.Context(), req)
	})
	h("GET /v1/members/{name}", func(r *http.Request) (any, error) { return b.Member(r.Context(), r.PathValue("name")) })
	h("GET /v1/members/{name}/config", func(r *http.Request) (any, error) {
		return b.MemberConfig(r.Context(), r.PathValue("name"), r.URL.Query().Get("qr") == "1")
	})
	h("POST /v1/members/{name}/disable", func(r *http.Request) (any, error) {
		return b.SetMemberEnabled(r.Context(), r.PathValue("name"), false)
	})
	h("POST /v1/members/{name}/enable", func(r *http.Request) (any, error) {
		return b.SetMemberEnabled(r.Context(), r.PathValue("name"), true)
	})
	h("DELETE /v1/members/{name}", func(r *http.Request) (any, error) {
		return nil, b.RemoveMember(r.Context(), r.PathValue("name"))
	})
	h("GET /v1/services", func(r *http.Request) (any, error) { return b.Services(r.Context()) })
	h("GET /v1/plugins", func(r *http.Request) (any, error) { return b.Plugins(r.Context()) })
	h("POST /v1/plugins/install", func(r *http.Request) (any, error) {
		var req PluginInstallRequest
		if err := decode(r, &req); err != nil {
			return nil, err
		}
		return b.InstallPlugin(r.Context(), req.Path)
	})
	h("POST /v1/plugins/{name}/reload", func(r *http.Request) (any, error) {
		return b.ReloadPlugin(r.Context(), r.PathValue("name"))
	})
	if rb, ok := b.(ReissueBackend); ok {
		h("POST /v1/members/{name}/reissue", handleReissue(rb))
	}
	if bb, ok := b.(BackupBackend); ok {
		h("GET /v1/backup", func(r *http.Request) (any, error) {
			if err := backupAllowed(r); err != nil {
				return nil, err
			}
			return bb.Backup(r.Context())
		})
	}
	return mux
}

func decode(r *http.Request, v any) error {
	dec := json.NewDecoder(r.Body)
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil && !errors.Is(err, io.EOF) {
		return Errorf(http.StatusBadRequest, "malformed request: %v", err)
	}
	return nil
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	enc.Encode(v)
}

// Listen opens the admin socket at path: its directory is created or made
// 0750 and given to group (0700 without a group), a stale socket left by a
// crash is replaced, and the socket is made 0660 for group (0600 without
// one). It refuses to start if another daemon answers on path, or if
// another user could replace the socket (see secureSocketDir).
func Listen(path, group string) (net.Listener, error) {
	gid := -1
	if group != "" {
		g, err := user.LookupGroup(group)
		if err != nil {
			return nil, fmt.Errorf("socket group %q: %w", group, err)
		}
		gid, _ = strconv.Atoi(g.Gid)
	}
	dir := filepath.Dir(path)
	dirMode, sockMode := os.FileMode(0o700), os.FileMode(0o600)
	if gid >= 0 {
		dirMode, sockMode = 0o750, 0o660
	}
	if err := os.MkdirAll(dir, dirMode); err != nil {
		return nil, fmt.Errorf("creating socket directory: %w", err)
	}
	if err := secureSocketDir(dir, dirMode, gid); err != nil {
		return nil, err
	}
	if c, err := net.DialTimeout("unix", path, time.Second); err == nil {
		c.Close()
		return nil, fmt.Errorf("another bootured is already running on %s", path)
	}
	os.Remove(path) // a stale socket from a crash
	l, err := net.Listen("unix", path)
	if err != nil {
		return nil, fmt.Errorf("admin socket: %w", err)
	}
	if err := os.Chmod(path, sockMode); err != nil {
		l.Close()
		return nil, fmt.Errorf("admin socket: %w", err)
	}
	if gid >= 0 {
		if err := os.Chown(path, -1, gid); err != nil {
			l.Close()
			return nil, fmt.Errorf("admin socket: %w", err)
		}
	}
	return l, nil
}

// systemDirs are shared directories whose mode is never ours to change.
var systemDirs = map[string]bool{
	"/": true, "/run": true, "/var/run": true, "/var": true, "/tmp": true, "/var/tmp": true,
	"/dev/shm": true, "/etc": true, "/home": true, "/root": true, "/srv": true, "/opt": true,
}

// secureSocketDir makes sure no other user can replace the admin socket in
// dir: whoever may rename or remove it could put their own socket in its
// place and read what the CLI sends (invitations, join tokens). A directory
// of the daemon's own, even one that already existed with a looser mode, is
// set to mode and group gid (-1: none). A shared directory is left as it is
// when its sticky bit (like /tmp's) or its mode already keeps others from
// replacing the socket, and refused otherwise; so is a directory that
// belongs to another user.
func secureSocketDir(dir string, mode os.FileMode, gid int) error {
	fi, err := os.Stat(dir)
	if err != nil {
		return fmt.Errorf("socket directory: %w", err)
	}
	if !fi.IsDir() {
		return fmt.Errorf("socket directory %s: not a directory", dir)
	}
	if uid, ok := fileOwner(fi); ok && uid != os.Geteuid() {
		return fmt.Errorf("socket directory %s belongs to uid %d, who could replace the admin socket; use a directory of root's such as /run/booture", dir, uid)
	}
	real, err := filepath.EvalSymlinks(dir)
	if err != nil {
		return fmt.Errorf("socket directory: %w", err)
	}
	switch {
	case fi.Mode()&os.ModeSticky != 0:
		return nil // only the socket's owner may remove or rename it
	case systemDirs[filepath.Clean(real)]:
		if fi.Mode().Perm()&0o022 != 0 {
			return fmt.Errorf("socket directory %s is writable by others, who could replace the admin socket; use a directory of its own such as /run/booture", dir)
		}
		return nil
	}
	if err := os.Chmod(dir, mode); err != nil {
		return fmt.Errorf("socket directory: %w", err)
	}
	if gid >= 0 {
		if err := os.Chown(dir, -1, gid); err != nil {
			return fmt.Errorf("socket directory: %w", err)
		}
	}
	return nil
}
