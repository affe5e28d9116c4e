package mesh

import (
	"bytes"
	"errors"
	"net/netip"
	"strings"
	"testing"
	"time"
)

func TestTokenRoundTrip(t *testing.T) {
	tok := Token{Expires: time.Unix(1900000000, 0), Inviter: []netip.AddrPort{
		netip.MustParseAddrPort("198.51.100.1:7946"), netip.MustParseAddrPort("[2001:db8::1]:7946"),
	}}
	copy(tok.ID[:], bytes.Repeat([]byte{1}, 16))
	copy(tok.Secret[:], bytes.Repeat([]byte{2}, 32))
	text := tok.Encode()
	if !strings.HasPrefix(text, tokenPrefix) || strings.ContainsAny(text, "+/= \n") {
		t.Fatalf("token %q is not copy-paste safe", text)
	}
	got, err := ParseToken("  " + text + "\n")
	if err != nil {
		t.Fatal(err)
	}
	if got.ID != tok.ID || got.Secret != tok.Secret || !got.Expires.Equal(tok.Expires) || len(got.Inviter) != 2 || got.Inviter[1] != tok.Inviter[1] {
		t.Fatalf("round trip: got %+v", got)
	}
	// Every single-character change is caught as garbled.
	for i := len(tokenPrefix); i < len(text); i += 7 {
		b := []byte(text)
		if b[i] == 'A' {
			b[i] = 'B'
		} else {
			b[i] = 'A'
		}
		if _, err := ParseToken(string(b)); !errors.Is(err, ErrTokenGarbled) {
			t.Fatalf("changed character %d: got %v", i, err)
		}
	}
	for _, bad := range []string{"", "hello", tokenPrefix, tokenPrefix + "!!!", text[:len(text)-1]} {
		if _, err := ParseToken(bad); !errors.Is(err, ErrTokenGarbled) {
			t.Fatalf("ParseToken(%q) = %v, want ErrTokenGarbled", bad, err)
		}
	}
}
