package mesh

import (
	"context"
	"encoding/json"
	"testing"
	"time"

	"github.com/booture/booture/catalog"
	"github.com/booture/booture/internal/waitfor"
	"github.com/booture/booture/key"
)

func svc(booture, name string, h catalog.Health) catalog.Service {
	return catalog.Service{Name: name, Booture: booture, URL: "http://" + name + "." + booture + ".booture.internal/",
		Access: catalog.AccessMesh, Health: h}
}

func hasService(n *Node, booture, name string, h catalog.Health) bool {
	for _, s := range n.Services() {
		if s.Booture == booture && s.Name == name && s.Health == h {
			return true
		}
	}
	return false
}

func TestCatalogReplicates(t *testing.T) {
	nodes := startCluster(t, 3)
	b1, b2, b3 := nodes[0], nodes[1], nodes[2]
	b1.SetServices([]catalog.Service{svc("b1", "cloud", catalog.HealthHealthy)})
	b2.SetServices([]catalog.Service{svc("b2", "video", catalog.HealthHealthy)})
	waitfor.Cond(t, 10*time.Second, "catalog everywhere", func() bool {
		for _, n := range nodes {
			if !hasService(n.Node, "b1", "cloud", catalog.HealthHealthy) || !hasService(n.Node, "b2", "video", catalog.HealthHealthy) {
				return false
			}
		}
		return true
	})
	// A health change shows everywhere within seconds.
	start := time.Now()
	b1.SetServices([]catalog.Service{svc("b1", "cloud", catalog.HealthUnhealthy)})
	waitfor.Cond(t, 10*time.Second, "health change everywhere", func() bool {
		return hasService(b2.Node, "b1", "cloud", catalog.HealthUnhealthy) && hasService(b3.Node, "b1", "cloud", catalog.HealthUnhealthy)
	})
	t.Logf("health change replicated in %v", time.Since(start).Round(time.Millisecond))
	// A booture that leaves takes its services with it.
	if err := b2.Leave(context.Background()); err != nil {
		t.Fatal(err)
	}
	waitfor.Cond(t, 5*time.Second, "b2's services gone", func() bool {
		for _, s := range b3.Services() {
			if s.Booture == "b2" {
				return false
			}
		}
		return true
	})
	// A booture that dies leaves its services listed, with health unknown.
	b1.Close()
	waitfor.Cond(t, 15*time.Second, "b1's services unknown", func() bool {
		return hasService(b3.Node, "b1", "cloud", catalog.HealthUnknown)
	})
}

func TestDecodeCatalogRejects(t *testing.T) {
	k, _ := key.NewPrivateKey()
	good := catalogMsg{V: 1, From: "b1", Key: k.Public(), Version: 5, Services: []catalog.Service{svc("b1", "cloud", catalog.HealthHealthy)}}
	b, _ := json.Marshal(good)
	if _, err := decodeCatalog(new(verifier), b); err != nil {
		t.Fatal(err)
	}
	for name, mutate := range map[string]func(*catalogMsg){
		"other booture":  func(m *catalogMsg) { m.Services[0].Booture = "b2" },
		"bad name":       func(m *catalogMsg) { m.Services[0].Name = "Cloud!" },
		"bad access":     func(m *catalogMsg) { m.Services[0].Access = "world" },
		"bad health":     func(m *catalogMsg) { m.Services[0].Health = "great" },
		"javascript url": func(m *catalogMsg) { m.Services[0].URL = "javascript:alert(1)" },
		"no version":     func(m *catalogMsg) { m.Version = 0 },
	} {
		m := good
		m.Services = append([]catalog.Service(nil), good.Services...)
		mutate(&m)
		b, _ := json.Marshal(m)
		if _, err := decodeCatalog(new(verifier), b); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}

func FuzzDecodeCatalog(f *testing.F) {
	k, _ := key.NewPrivateKey()
	b, _ := json.Marshal(catalogMsg{V: 1, From: "b1", Key: k.Public(), Version: 5, Services: []catalog.Service{svc("b1", "cloud", catalog.HealthHealthy)}})
	f.Add(b)
	f.Add([]byte(`{"v":1}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		msg, err := decodeCatalog(new(verifier), b)
		if err != nil {
			return
		}
		for _, s := range msg.Services {
			if checkService(s, msg.From) != nil {
				t.Fatal("accepted an invalid service")
			}
		}
	})
}
