package gateway

import (
	"testing"

	"github.com/booture/booture/catalog"
)

func TestAudienceMay(t *testing.T) {
	for _, tc := range []struct {
		a    Audience
		acc  catalog.Access
		want bool
	}{
		{AudienceSelf, catalog.AccessMembers, true},
		{AudienceMember, catalog.AccessMembers, true},
		{AudienceMesh, catalog.AccessMembers, false},
		{AudiencePublic, catalog.AccessMembers, false},
		{AudienceMesh, catalog.AccessMesh, true},
		{AudiencePublic, catalog.AccessMesh, false},
		{AudiencePublic, catalog.AccessPublic, true},
		{AudienceMember, "", true},
		{AudienceMesh, "", false},
		{AudienceMember, "bogus", false},
		{AudienceSelf, "bogus", true},
	} {
		if got := tc.a.May(tc.acc); got != tc.want {
			t.Errorf("%s may %q: got %v", tc.a, tc.acc, got)
		}
	}
}
