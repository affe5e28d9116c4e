package mesh

import (
	"log/slog"
	"net"
	"net/netip"
	"strconv"
	"testing"
	"time"
)

func TestGossipTransportPackets(t *testing.T) {
	var ca, cb ByteCounters
	lo := netip.MustParseAddr("127.0.0.1")
	a, err := listenGossip(lo, 0, nil, &ca, nil, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	defer a.Shutdown()
	b, err := listenGossip(lo, 0, nil, &cb, nil, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	defer b.Shutdown()

	// By address, then by host name.
	for _, to := range []string{"127.0.0.1:" + strconv.Itoa(b.port), "localhost:" + strconv.Itoa(b.port)} {
		if _, err := a.WriteTo([]byte("hello"), to); err != nil {
			t.Fatalf("write to %s: %v", to, err)
		}
		select {
		case p := <-b.PacketCh():
			if string(p.Buf) != "hello" || cap(p.Buf) > 64 {
				t.Errorf("packet %q (cap %d), want hello in a buffer of about its size", p.Buf, cap(p.Buf))
			}
			if got := p.From.(*net.UDPAddr).AddrPort(); got != netip.AddrPortFrom(lo, uint16(a.port)) {
				t.Errorf("packet from %v, want %v:%d", got, lo, a.port)
			}
		case <-time.After(5 * time.Second):
			t.Fatalf("no packet sent to %s", to)
		}
	}
	if ca.Out.Load() != 10 || cb.In.Load() != 10 {
		t.Errorf("counted %d out, %d in; want 10 and 10", ca.Out.Load(), cb.In.Load())
	}
	if _, err := a.WriteTo([]byte("x"), "no-such-host.invalid:1"); err == nil {
		t.Error("write to an unresolvable host: no error")
	}
}

func TestGossipTransportAdvertise(t *testing.T) {
	tr, err := listenGossip(netip.Addr{}, 0, nil, &ByteCounters{}, nil, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	defer tr.Shutdown()
	if _, _, err := tr.FinalAdvertiseAddr("", 0); err == nil {
		t.Error("bound to every address with no advertise address: no error")
	}
	ip, port, err := tr.FinalAdvertiseAddr("198.51.100.7", 0)
	if err != nil || !ip.Equal(net.ParseIP("198.51.100.7")) || port != tr.port {
		t.Errorf("FinalAdvertiseAddr = %v, %d, %v; want 198.51.100.7, %d", ip, port, err, tr.port)
	}
	if _, _, err := tr.FinalAdvertiseAddr("not-an-ip", 1); err == nil {
		t.Error("garbled advertise address: no error")
	}
	// A second transport on the same port fails with the port in the error.
	if _, err := listenGossip(netip.Addr{}, tr.port, nil, &ByteCounters{}, nil, slog.New(slog.DiscardHandler)); err == nil {
		t.Error("second transport on a taken port: no error")
	}
}
