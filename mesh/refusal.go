package mesh

import (
	"errors"
	"net"
	"strings"
)

// RefusalCode says why a booture refused a handshake (a join or a
// catch-up). The codes travel on the wire, in an error frame "code: reason",
// and must stay as they are: bootures of different versions read them.
type RefusalCode string

const (
	// RefusedGarbled: the request (or the token's secret) did not make
	// sense to the inviter.
	RefusedGarbled RefusalCode = "garbled"
	// RefusedExpired: the invitation has expired.
	RefusedExpired RefusalCode = "expired"
	// RefusedUsed: the invitation was used by another booture.
	RefusedUsed RefusalCode = "used"
	// RefusedUnknown: the inviter does not know the invitation (or, for a
	// catch-up, the booture asking).
	RefusedUnknown RefusalCode = "unknown"
	// RefusedRevoked: the inviter revoked the invitation.
	RefusedRevoked RefusalCode = "revoked"
	// RefusedInvalid: the joiner's record or credentials are malformed.
	RefusedInvalid RefusalCode = "invalid"
	// RefusedUpgrade: the joiner runs a booture too old for the inviter's
	// handshake.
	RefusedUpgrade RefusalCode = "upgrade"
	// RefusedOther: any other reason, said in the refusal's Reason.
	RefusedOther RefusalCode = "refused"
)

// refusalErrors are the joiner's errors for the codes that name a problem
// with the token; a refusal with another code is an errRefused.
var refusalErrors = map[RefusalCode]error{
	RefusedGarbled: ErrTokenGarbled,
	RefusedExpired: ErrTokenExpired,
	RefusedUsed:    ErrTokenUsed,
	RefusedUnknown: ErrTokenUnknown,
	RefusedRevoked: ErrTokenRevoked,
}

// errRefused marks a refusal by the inviter that retrying elsewhere would
// not change.
var errRefused = errors.New("join refused")

// JoinRefusal is a booture's refusal of a join: Join returns one (check
// with errors.As) when the inviter said no. It also matches, with
// errors.Is, the ErrToken error of its code, if any.
type JoinRefusal struct {
	Code RefusalCode
	// Reason says more, for people; it may be empty.
	Reason string
}

// Error is the refusal as the joiner tells it.
func (e *JoinRefusal) Error() string {
	if known, ok := refusalErrors[e.Code]; ok {
		if e.Reason != "" {
			return known.Error() + " (" + e.Reason + ")"
		}
		return known.Error()
	}
	return errRefused.Error() + ": " + e.wire()
}

// Unwrap returns the ErrToken error of the code, or errRefused.
func (e *JoinRefusal) Unwrap() error {
	if known, ok := refusalErrors[e.Code]; ok {
		return known
	}
	return errRefused
}

// wire is the refusal's error frame text.
func (e *JoinRefusal) wire() string {
	if e.Reason == "" {
		return string(e.Code)
	}
	return string(e.Code) + ": " + e.Reason
}

// parseRefusal reads an error frame's text.
func parseRefusal(body []byte) *JoinRefusal {
	code, reason, _ := strings.Cut(string(body), ": ")
	return &JoinRefusal{Code: RefusalCode(code), Reason: reason}
}

// refuse sends r in an error frame and returns, for the log, the error as
// the refusing booture tells it.
func refuse(conn net.Conn, r *JoinRefusal) error {
	text := r.wire()
	writeFrame(conn, frameError, []byte(text))
	return errors.New(text)
}

// refusalOf returns err as a refusal: err's own, or one of code other
// with err as its reason.
func refusalOf(err error) *JoinRefusal {
	var r *JoinRefusal
	if errors.As(err, &r) {
		return r
	}
	return &JoinRefusal{Code: RefusedOther, Reason: err.Error()}
}
