// Package waitfor waits, in tests, for something another goroutine or
// process makes true: a peer seen alive, a route applied, a file written.
//
// It polls a condition until it holds or a timeout passes, and fails the
// test with what was awaited (and the last error) when it does not. The
// timeout is a bound, never a timing assertion: choose it generous, since
// the tests run on small shared machines. Inside a testing/synctest bubble
// the polling runs on the bubble's fake clock, so a generous timeout costs
// nothing there.
//
// A wait is for a positive event. To check that something does not happen,
// wait for an event that would come after it (the next reconcile, the reply
// to a later request), or use synctest.Wait; never sleep and look.
package waitfor

import (
	"testing"
	"time"
)

// Interval is how often conditions are polled.
const Interval = 20 * time.Millisecond

// Cond polls cond until it returns true, and fails t (Fatal) if it has not
// after timeout. what names the awaited event in the failure message.
func Cond(t testing.TB, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	if !poll(timeout, cond) {
		t.Fatalf("timed out after %v waiting for %s", timeout, what)
	}
}

// NoError polls check until it returns nil, and fails t (Fatal) with the
// last error if it has not after timeout.
func NoError(t testing.TB, timeout time.Duration, what string, check func() error) {
	t.Helper()
	var last error
	if !poll(timeout, func() bool { last = check(); return last == nil }) {
		t.Fatalf("timed out after %v waiting for %s: %v", timeout, what, last)
	}
}

// poll calls cond at once, then every Interval, until it returns true
// (true) or timeout has passed (false, after one last try).
func poll(timeout time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(timeout)
	tick := time.NewTicker(Interval)
	defer tick.Stop()
	for !cond() {
		if !time.Now().Before(deadline) {
			return false
		}
		<-tick.C
	}
	return true
}
