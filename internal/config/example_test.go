package config

import (
	"os"
	"testing"
)

// The example configuration shipped in examples/config must stay valid.
func TestExampleConfigIsValid(t *testing.T) {
	f, err := os.Open("../../examples/config/booture.toml")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	c, err := Decode(f, "booture.toml")
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	if len(c.Services) != 3 {
		t.Fatalf("services: %+v", c.Services)
	}
}
