package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/booture/booture/internal/api"
)

// fakeInvites is the daemon as the invitation commands see it.
type fakeInvites struct {
	api.Backend // other methods are not called
	joined      []string
	pending     []api.PendingInvitation
	revoked     []string
}

func (f *fakeInvites) Join(ctx context.Context, token string) (api.JoinResult, error) {
	f.joined = append(f.joined, token)
	if token == "revoked-token" {
		// What the daemon answers when the inviter refused a revoked
		// token (mesh.ErrTokenRevoked).
		return api.JoinResult{}, api.BadRequest(errors.New("invitation token was revoked by the inviter (at 2026-01-02T03:04:05Z)"))
	}
	return api.JoinResult{Site: 2, Inviter: "h1"}, nil
}

func (f *fakeInvites) Invitations(ctx context.Context) ([]api.PendingInvitation, error) {
	return f.pending, nil
}

func (f *fakeInvites) RevokeInvitation(ctx context.Context, tokenOrID string) (api.PendingInvitation, error) {
	f.revoked = append(f.revoked, tokenOrID)
	for _, p := range f.pending {
		if strings.HasPrefix(p.ID, tokenOrID) {
			return p, nil
		}
	}
	return api.PendingInvitation{}, api.NotFound(fmt.Errorf("no such invitation on this booture: %q", tokenOrID))
}

// serveFake serves b's admin API on a socket and returns its path.
func serveFake(t *testing.T, b api.Backend) string {
	t.Helper()
	sock := filepath.Join(t.TempDir(), "api.sock")
	ln, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: api.Handler(b, slog.New(slog.DiscardHandler))}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return sock
}

// runCLI runs booture with args and stdin; it returns what it printed and
// the error main would print.
func runCLI(t *testing.T, sock, stdin string, args ...string) (string, error) {
	t.Helper()
	var out strings.Builder
	root := newRoot(&out)
	root.SetIn(strings.NewReader(stdin))
	root.SetArgs(append([]string{"--socket", sock}, args...))
	err := root.Execute()
	return out.String(), err
}

func TestJoinReadsTokenFromStdin(t *testing.T) {
	f := &fakeInvites{}
	sock := serveFake(t, f)
	if _, err := runCLI(t, sock, "  booture-invite-abc  \n", "join", "-"); err != nil {
		t.Fatal(err)
	}
	if _, err := runCLI(t, sock, "", "join", "booture-invite-def"); err != nil {
		t.Fatal(err)
	}
	if len(f.joined) != 2 || f.joined[0] != "booture-invite-abc" || f.joined[1] != "booture-invite-def" {
		t.Fatalf("the daemon was asked to join with %q", f.joined)
	}
	_, err := runCLI(t, sock, "\n", "join", "-")
	var ue usageError
	if !errors.As(err, &ue) || !strings.Contains(err.Error(), "no token on standard input") {
		t.Fatalf("join - with nothing on stdin: %v", err)
	}
}

func TestJoinRevokedTokenOneLine(t *testing.T) {
	sock := serveFake(t, &fakeInvites{})
	out, err := runCLI(t, sock, "revoked-token\n", "join", "-")
	if err == nil || out != "" {
		t.Fatalf("join with a revoked token: output %q, err %v", out, err)
	}
	if msg := err.Error(); strings.Contains(msg, "\n") || !strings.Contains(msg, "revoked") {
		t.Fatalf("want a one-line error saying the token was revoked: %q", msg)
	}
}

func TestInviteList(t *testing.T) {
	created := time.Date(2026, 1, 2, 3, 4, 0, 0, time.UTC)
	f := &fakeInvites{pending: []api.PendingInvitation{
		{ID: "0123456789abcdef0123456789abcdef", Created: created, Expires: created.Add(24 * time.Hour)},
		{ID: "fedcba9876543210fedcba9876543210", Created: created, Expires: created.Add(time.Hour)},
	}}
	sock := serveFake(t, f)
	out, err := runCLI(t, sock, "", "invite", "list")
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != 3 || !strings.HasPrefix(lines[0], "ID") || !strings.HasPrefix(lines[1], f.pending[0].ID) ||
		!strings.Contains(lines[1], created.Add(24*time.Hour).Local().Format(timeLayout)) {
		t.Fatalf("invite list printed:\n%s", out)
	}
	out, err = runCLI(t, sock, "", "invite", "list", "--json")
	var got []api.PendingInvitation
	if err != nil || json.Unmarshal([]byte(out), &got) != nil || len(got) != 2 || got[1].ID != f.pending[1].ID {
		t.Fatalf("invite list --json: %q, %v", out, err)
	}
	f.pending = nil
	if out, _ := runCLI(t, sock, "", "invite", "list"); out != "No pending invitation.\n" {
		t.Fatalf("invite list with none: %q", out)
	}
}

func TestInviteRevoke(t *testing.T) {
	f := &fakeInvites{pending: []api.PendingInvitation{{ID: "0123456789abcdef0123456789abcdef"}}}
	sock := serveFake(t, f)
	out, err := runCLI(t, sock, "", "invite", "--revoke", "01234567")
	if err != nil || !strings.Contains(out, "Revoked invitation 0123456789abcdef0123456789abcdef") {
		t.Fatalf("invite --revoke: %q, %v", out, err)
	}
	if _, err := runCLI(t, sock, "0123456789ab\n", "invite", "--revoke", "-"); err != nil {
		t.Fatalf("invite --revoke - : %v", err)
	}
	if len(f.revoked) != 2 || f.revoked[1] != "0123456789ab" {
		t.Fatalf("revoked %q", f.revoked)
	}
	_, err = runCLI(t, sock, "", "invite", "--revoke", "99999999")
	if err == nil || !strings.Contains(err.Error(), "no such invitation") {
		t.Fatalf("revoking an unknown invitation: %v", err)
	}
	var ue usageError
	if _, err := runCLI(t, sock, "", "invite", "--revoke", "01234567", "--expires", "1h"); !errors.As(err, &ue) {
		t.Fatalf("--revoke with --expires: %v, want a usage error", err)
	}
}
