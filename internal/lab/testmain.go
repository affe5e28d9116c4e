package lab

import (
	"flag"
	"log"
	"testing"
)

// DefaultParallel is the -test.parallel Main sets when it is not given:
// lab tests mostly wait (for gossip, timeouts, a cut link), so more of them
// run at once than the machine has cores.
const DefaultParallel = "4"

// Main runs the tests of a package of lab tests; call it from TestMain:
//
//	func TestMain(m *testing.M) { os.Exit(lab.Main(m)) }
//
// It removes the leftovers of crashed earlier runs, raises -test.parallel to
// DefaultParallel unless it was given, runs the tests and removes the
// binaries Build made.
func Main(m *testing.M) int {
	flag.Parse()
	given := false
	flag.Visit(func(f *flag.Flag) {
		if f.Name == "test.parallel" {
			given = true
		}
	})
	if !given {
		flag.Set("test.parallel", DefaultParallel)
	}
	if Check() == nil {
		Janitor(log.Printf)
	}
	code := m.Run()
	RemoveBinaries()
	return code
}
