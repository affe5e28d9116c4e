package mesh

import (
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"net/netip"
	"strings"
	"time"
)

// An invitation token is what `booture invite` prints and `booture join`
// takes: a one-time secret, its expiry, and where to find the inviter. It is
// a secret too: whoever holds it can join the mesh once, until it expires.
//
// Encoding: tokenPrefix, then unpadded base64url of
//
//	version(1) | id(16) | secret(32) | expires unix seconds(8) |
//	count(1) | count × (len(1) | "host:port") | crc32(4)
//
// The CRC lets the joiner tell a mistyped token from one the inviter does not
// know, without contacting anyone.
const tokenPrefix = "booture-invite-"

const tokenVersion = 1

// Errors returned when a token cannot be used. The join command shows them
// as they are, so they say which problem it is.
var (
	ErrTokenGarbled = errors.New("invitation token is garbled (incomplete or mistyped)")
	ErrTokenExpired = errors.New("invitation token has expired")
	ErrTokenUsed    = errors.New("invitation token was already used")
	ErrTokenUnknown = errors.New("invitation token is not known to the inviter")
	ErrTokenRevoked = errors.New("invitation token was revoked by the inviter")
)

// Token is a decoded invitation.
type Token struct {
	ID      [16]byte
	Secret  [32]byte
	Expires time.Time
	// Inviter lists gossip addresses of the inviting booture (and possibly
	// of others that can redeem it).
	Inviter []netip.AddrPort
}

// maxTokenAddrs bounds the addresses carried in a token.
const maxTokenAddrs = 8

// Encode returns the token's text form.
func (t *Token) Encode() string {
	b := []byte{tokenVersion}
	b = append(b, t.ID[:]...)
	b = append(b, t.Secret[:]...)
	b = binary.BigEndian.AppendUint64(b, uint64(t.Expires.Unix()))
	addrs := t.Inviter
	if len(addrs) > maxTokenAddrs {
		addrs = addrs[:maxTokenAddrs]
	}
	b = append(b, byte(len(addrs)))
	for _, a := range addrs {
		s := a.String()
		b = append(b, byte(len(s)))
		b = append(b, s...)
	}
	b = binary.BigEndian.AppendUint32(b, crc32.ChecksumIEEE(b))
	return tokenPrefix + base64.RawURLEncoding.EncodeToString(b)
}

// ParseToken decodes a token's text form. It checks the structure only;
// whether the token expired is the caller's question (see Token.Expires).
func ParseToken(s string) (Token, error) {
	s = strings.TrimSpace(s)
	if !strings.HasPrefix(s, tokenPrefix) {
		return Token{}, fmt.Errorf("%w: it should start with %q", ErrTokenGarbled, tokenPrefix)
	}
	b, err := base64.RawURLEncoding.DecodeString(s[len(tokenPrefix):])
	if err != nil {
		return Token{}, fmt.Errorf("%w: not base64url", ErrTokenGarbled)
	}
	if len(b) < 1+16+32+8+1+4 {
		return Token{}, fmt.Errorf("%w: too short", ErrTokenGarbled)
	}
	body, sum := b[:len(b)-4], binary.BigEndian.Uint32(b[len(b)-4:])
	if crc32.ChecksumIEEE(body) != sum {
		return Token{}, fmt.Errorf("%w: checksum mismatch", ErrTokenGarbled)
	}
	if body[0] != tokenVersion {
		return Token{}, fmt.Errorf("%w: version %d is not supported", ErrTokenGarbled, body[0])
	}
	var t Token
	p := body[1:]
	copy(t.ID[:], p[:16])
	copy(t.Secret[:], p[16:48])
	t.Expires = time.Unix(int64(binary.BigEndian.Uint64(p[48:56])), 0)
	n := int(p[56])
	p = p[57:]
	if n == 0 || n > maxTokenAddrs {
		return Token{}, fmt.Errorf("%w: %d inviter addresses", ErrTokenGarbled, n)
	}
	for i := 0; i < n; i++ {
		if len(p) < 1 || len(p) < 1+int(p[0]) {
			return Token{}, fmt.Errorf("%w: truncated address", ErrTokenGarbled)
		}
		ap, err := netip.ParseAddrPort(string(p[1 : 1+int(p[0])]))
		if err != nil || ap.Port() == 0 {
			return Token{}, fmt.Errorf("%w: bad inviter address", ErrTokenGarbled)
		}
		t.Inviter = append(t.Inviter, ap)
		p = p[1+int(p[0]):]
	}
	if len(p) != 0 {
		return Token{}, fmt.Errorf("%w: trailing bytes", ErrTokenGarbled)
	}
	return t, nil
}
