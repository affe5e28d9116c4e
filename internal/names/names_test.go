package names

import (
	"errors"
	"strings"
	"testing"
)

func TestCheck(t *testing.T) {
	for _, ok := range []string{"a", "diois", "crest-2", "0", strings.Repeat("a", 63)} {
		if err := Check(ok); err != nil {
			t.Errorf("Check(%q) = %v", ok, err)
		}
	}
	for bad, why := range map[string]string{
		"":                      "empty",
		"-a":                    "start or end",
		"a-":                    "start or end",
		"Diois":                 "only a-z",
		"a.b":                   "only a-z",
		"a b":                   "only a-z",
		"é":                     "only a-z",
		strings.Repeat("a", 64): "longer than 63",
	} {
		err := Check(bad)
		if !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), why) {
			t.Errorf("Check(%q) = %v, want an ErrInvalid saying %q", bad, err, why)
		}
	}
}

func FuzzCheck(f *testing.F) {
	f.Add("diois")
	f.Add("-x")
	f.Fuzz(func(t *testing.T, s string) {
		if Check(s) != nil {
			return
		}
		if len(s) == 0 || len(s) > MaxLen || s[0] == '-' || s[len(s)-1] == '-' || strings.Trim(s, "abcdefghijklmnopqrstuvwxyz0123456789-") != "" {
			t.Fatalf("accepted %q", s)
		}
	})
}
