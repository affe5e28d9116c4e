package lab_test

import (
	"strings"
	"testing"
	"time"

	"github.com/booture/booture/internal/api"
	"github.com/booture/booture/internal/lab"
)

// `booture invite list` shows the pending invitations without their
// tokens; `booture invite --revoke ID` cancels one: a booture that joins
// with it (`booture join -`, the token on standard input) gets a one-line
// error saying it was revoked, and the other invitation still works.
func TestInvitationRevoke(t *testing.T) {
	t.Parallel()
	l := startFounderFirst(t, lab.Options{Hosts: 2})
	h1, h2 := l.H(1), l.H(2)
	revoked, err := h1.Invite("")
	must(t, err)
	kept, err := h1.Invite("2h")
	must(t, err)

	var list []api.PendingInvitation
	must(t, h1.CLIJSON(&list, "invite", "list"))
	if len(list) != 2 || !list[1].Expires.Before(list[0].Expires) {
		t.Fatalf("invite list: %+v; want two, the second (2h) expiring first", list)
	}
	text := h1.CLI("invite", "list")
	must(t, text.Error())
	if !strings.Contains(text.Stdout, list[0].ID) || strings.Contains(text.Stdout, revoked) || strings.Contains(text.Stdout, kept) {
		t.Fatalf("invite list printed (it must show ids, never tokens):\n%s", text.Stdout)
	}
	must(t, h1.CLI("invite", "--revoke", list[0].ID).Error())
	if must(t, h1.CLIJSON(&list, "invite", "list")); len(list) != 1 {
		t.Fatalf("invite list after a revocation: %+v", list)
	}

	r := h2.CLIInput(revoked+"\n", "join", "-")
	lines := strings.Split(strings.TrimRight(r.Stderr, "\n"), "\n")
	if r.Err != nil || r.Code != 1 || len(lines) != 1 || !strings.HasPrefix(lines[0], "booture: ") || !strings.Contains(lines[0], "revoked") {
		t.Fatalf("join with a revoked token: exit %d (%v), stderr %q; want one line saying it was revoked", r.Code, r.Err, r.Stderr)
	}
	t.Logf("revoked token: %s", lines[0])
	must(t, h2.CLIInput(kept+"\n", "join", "-").Error())
	must(t, lab.WaitMesh(20*time.Second, h1, h2))
}
