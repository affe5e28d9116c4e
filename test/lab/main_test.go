// Package lab_test runs real bootured and booture binaries in network
// namespaces (root only; see internal/lab and TESTING.md): the mesh core of
// issue 2 (found, invite, join, restarts, incremental reconcile, failures,
// invitations, expulsion) and members' VPN access of issue 3 with a real
// wg-quick client.
package lab_test

import (
	"os"
	"testing"

	"github.com/booture/booture/internal/lab"
)

func TestMain(m *testing.M) { os.Exit(lab.Main(m)) }
