package mesh

import (
	"errors"
	"strings"
	"testing"

	"github.com/booture/booture/key"
)

// A refusal reads back as it was sent, and the joiner matches it by its
// code's ErrToken error, or as a refusal retrying would not change.
func TestJoinRefusalWire(t *testing.T) {
	for _, tc := range []struct {
		r      JoinRefusal
		wire   string
		target error
		text   string
	}{
		{JoinRefusal{RefusedUnknown, ""}, "unknown", ErrTokenUnknown, ErrTokenUnknown.Error()},
		{JoinRefusal{RefusedExpired, "at 2026-01-02T03:04:05Z"}, "expired: at 2026-01-02T03:04:05Z", ErrTokenExpired,
			ErrTokenExpired.Error() + " (at 2026-01-02T03:04:05Z)"},
		{JoinRefusal{RefusedUsed, "by b at x"}, "used: by b at x", ErrTokenUsed, ErrTokenUsed.Error() + " (by b at x)"},
		{JoinRefusal{RefusedRevoked, "at y"}, "revoked: at y", ErrTokenRevoked, ErrTokenRevoked.Error() + " (at y)"},
		{JoinRefusal{RefusedGarbled, "malformed join request"}, "garbled: malformed join request", ErrTokenGarbled,
			ErrTokenGarbled.Error() + " (malformed join request)"},
		{JoinRefusal{RefusedOther, "the mesh is full: a: b"}, "refused: the mesh is full: a: b", errRefused,
			"join refused: refused: the mesh is full: a: b"},
		{JoinRefusal{RefusedUpgrade, "upgrade booture"}, "upgrade: upgrade booture", errRefused, "join refused: upgrade: upgrade booture"},
		{JoinRefusal{RefusedInvalid, ""}, "invalid", errRefused, "join refused: invalid"},
	} {
		if got := tc.r.wire(); got != tc.wire {
			t.Errorf("%+v: wire %q, want %q", tc.r, got, tc.wire)
		}
		back := parseRefusal([]byte(tc.wire))
		if *back != tc.r {
			t.Errorf("%q read back as %+v, want %+v", tc.wire, *back, tc.r)
		}
		var err error = back
		if !errors.Is(err, tc.target) {
			t.Errorf("%q: not errors.Is %v", tc.wire, tc.target)
		}
		if err.Error() != tc.text {
			t.Errorf("%q: text %q, want %q", tc.wire, err.Error(), tc.text)
		}
		var r *JoinRefusal
		if !errors.As(wrapf(err), &r) || r.Code != tc.r.Code {
			t.Errorf("%q: errors.As through a wrap gave %+v", tc.wire, r)
		}
	}
}

func wrapf(err error) error { return errors.Join(errors.New("context"), err) }

// A refusal passes through refusalOf as it is; any other error becomes a
// refusal with code "refused".
func TestRefusalOf(t *testing.T) {
	r := &JoinRefusal{Code: RefusedUsed, Reason: "by b"}
	if got := refusalOf(r); got != r {
		t.Errorf("refusalOf(refusal) = %+v", got)
	}
	got := refusalOf(errors.New("disk full"))
	if got.Code != RefusedOther || got.Reason != "disk full" {
		t.Errorf("refusalOf(other) = %+v", got)
	}
}

// An inviter refuses a joiner that would clash with a booture of its mesh,
// with a refusal the joiner reads as one retrying would not change.
func TestCheckJoinerRefusals(t *testing.T) {
	newPub := func() key.PublicKey { k, _ := key.NewPrivateKey(); return k.Public() }
	self, b, expelled := newPub(), newPub(), newPub()
	n := &Node{publicKey: self, roster: newRoster(), state: persisted{
		Self:    Record{Name: "a", PublicKey: self, Site: 2},
		Revoked: []Revocation{{Name: "x", Key: expelled}},
	}}
	n.roster.set(Record{Name: "b", PublicKey: b, Site: 3})
	for _, tc := range []struct {
		joiner Record
		reason string // part of the refusal's reason, "" for none
	}{
		{Record{Name: "c", PublicKey: newPub()}, ""},
		{Record{Name: "b", PublicKey: b}, ""}, // b itself, coming back
		{Record{Name: "a", PublicKey: newPub()}, "(by the inviter)"},
		{Record{Name: "b", PublicKey: newPub()}, "by another booture"},
		{Record{Name: "c", PublicKey: self}, "cannot join itself"},
		{Record{Name: "x", PublicKey: expelled}, "expelled from the mesh"},
	} {
		r := n.checkJoinerLocked(tc.joiner)
		if tc.reason == "" {
			if r != nil {
				t.Errorf("%s: refused (%v), want admitted", tc.joiner.Name, r)
			}
			continue
		}
		var err error
		if r != nil {
			err = r
		}
		if r == nil || r.Code != RefusedOther || !strings.Contains(r.Reason, tc.reason) || !errors.Is(err, errRefused) {
			t.Errorf("%s: got %v, want a refusal saying %q", tc.joiner.Name, err, tc.reason)
		}
	}
}
