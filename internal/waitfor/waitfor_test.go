package waitfor

import (
	"errors"
	"strings"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"
)

// recorder is a testing.TB that records a Fatalf instead of stopping the
// test, so that a failing wait can be checked.
type recorder struct {
	testing.TB
	failed string
}

func (r *recorder) Helper() {}

func (r *recorder) Fatalf(format string, args ...any) {
	r.failed = strings.TrimSpace(format)
	for _, a := range args {
		if err, ok := a.(error); ok {
			r.failed += " " + err.Error()
		}
	}
}

func TestCondReturnsOnceTrue(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var flag atomic.Bool
		time.AfterFunc(3*time.Second, func() { flag.Store(true) })
		start := time.Now()
		Cond(t, time.Minute, "the flag", flag.Load)
		if waited := time.Since(start); waited < 3*time.Second || waited > 3*time.Second+Interval {
			t.Errorf("waited %v for a flag set after 3 s", waited)
		}
	})
}

func TestCondFailsAfterTimeout(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := &recorder{TB: t}
		calls := 0
		start := time.Now()
		Cond(r, time.Second, "never", func() bool { calls++; return false })
		if r.failed == "" {
			t.Fatal("a condition that never holds did not fail the test")
		}
		if waited := time.Since(start); waited != time.Second {
			t.Errorf("gave up after %v, want the 1 s timeout", waited)
		}
		if want := int(time.Second/Interval) + 1; calls != want {
			t.Errorf("cond called %d times, want %d (at once, then every %v)", calls, want, Interval)
		}
	})
}

func TestNoErrorReportsTheLastError(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := &recorder{TB: t}
		n := 0
		NoError(r, 100*time.Millisecond, "the check", func() error {
			n++
			return errors.New("attempt " + strings.Repeat("I", n))
		})
		if !strings.HasSuffix(r.failed, "attempt IIIIII") {
			t.Errorf("failure %q does not end with the last error (attempt IIIIII)", r.failed)
		}
		r = &recorder{TB: t}
		NoError(r, time.Second, "the check", func() error { return nil })
		if r.failed != "" {
			t.Errorf("a passing check failed: %s", r.failed)
		}
	})
}
