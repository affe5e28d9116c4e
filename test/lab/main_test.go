// Package lab_test runs real bootured and booture binaries in network
// namespaces (root only; see internal/lab and TESTING.md): the mesh (found,
// invite, join, restarts, incremental reconcile, failures, invitations,
// expulsion), members' VPN access with a real wg-quick client, services
// through plugins and the gateway.
package lab_test

import (
	"os"
	"testing"

	"github.com/booture/booture/internal/lab"
)

func TestMain(m *testing.M) { os.Exit(lab.Main(m)) }
