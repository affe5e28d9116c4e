// Package names validates the names users give to bootures, members and
// services. They all end up as DNS labels under the mesh domain
// (SERVICE.BOOTURE.booture.internal), so they follow the rules of one: 1 to
// 63 characters among a-z, 0-9 and '-', not starting or ending with '-'.
package names

import (
	"errors"
	"fmt"
)

// MaxLen is the longest valid name (a DNS label).
const MaxLen = 63

// ErrInvalid is wrapped by every error of Check.
var ErrInvalid = errors.New("invalid name")

// Check returns nil if name is a valid DNS label of lower-case letters,
// digits and hyphens, else an error that says what is wrong.
func Check(name string) error {
	switch {
	case name == "":
		return fmt.Errorf("%w: empty", ErrInvalid)
	case len(name) > MaxLen:
		return fmt.Errorf("%w %.20q...: longer than %d characters", ErrInvalid, name, MaxLen)
	case name[0] == '-' || name[len(name)-1] == '-':
		return fmt.Errorf("%w %q: must not start or end with '-'", ErrInvalid, name)
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-') {
			return fmt.Errorf("%w %q: only a-z, 0-9 and '-' are allowed", ErrInvalid, name)
		}
	}
	return nil
}
