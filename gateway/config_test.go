package gateway

import (
	"net/netip"
	"strings"
	"testing"
)

func TestConfigValidate(t *testing.T) {
	if err := DefaultConfig().Validate(); err != nil {
		t.Fatal(err)
	}
	c := DefaultConfig()
	c.Domain = "Bad_Domain"
	c.ForwardTimeout = 0
	c.MaxForwards = -1
	c.Upstreams = []netip.AddrPort{netip.MustParseAddrPort("0.0.0.0:53")}
	err := c.Validate()
	for _, want := range []string{"domain", "forward timeout", "max forwards", "upstream"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("Validate: %v lacks %q", err, want)
		}
	}
	if _, err := New(c, nil, nil); err == nil {
		t.Error("New accepted an invalid config")
	}
}
