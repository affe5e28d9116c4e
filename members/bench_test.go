package members

import (
	"fmt"
	"sync/atomic"
	"testing"
)

// BenchmarkAdd measures one Add end to end, with the durable write (temp
// file, fsync, rename, directory fsync) of the whole file.
func BenchmarkAdd(b *testing.B) {
	var r *Registry
	n := 0
	for b.Loop() {
		if r == nil || r.Len() == MaxMembers {
			b.StopTimer()
			if r != nil {
				r.Close()
			}
			r = openAt(b, b.TempDir(), site3(b))
			b.StartTimer()
		}
		n++
		if _, _, err := r.Add(AddRequest{Name: fmt.Sprintf("m%d", n)}); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkAddRemoveParallel measures concurrent Adds (each followed by a
// Remove, to stay below a full site) from 16 goroutines: group commit lets
// them share fsyncs. The time is per Add+Remove pair.
func BenchmarkAddRemoveParallel(b *testing.B) {
	r := openAt(b, b.TempDir(), site3(b))
	var n atomic.Int64
	b.SetParallelism(8)
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			name := fmt.Sprintf("m%d", n.Add(1))
			if _, _, err := r.Add(AddRequest{Name: name}); err != nil {
				b.Error(err)
				return
			}
			if _, err := r.Remove(name); err != nil {
				b.Error(err)
				return
			}
		}
	})
}

func fill(b *testing.B, count int) *Registry {
	r := openAt(b, b.TempDir(), site3(b))
	r.writeFile = fastWrite
	for i := range count {
		if _, _, err := r.Add(AddRequest{Name: fmt.Sprintf("member-%03d", i)}); err != nil {
			b.Fatal(err)
		}
	}
	return r
}

func BenchmarkList250(b *testing.B) {
	r := fill(b, 250)
	b.ReportAllocs()
	for b.Loop() {
		if len(r.List()) != 250 {
			b.Fatal("wrong count")
		}
	}
}

func BenchmarkGet250(b *testing.B) {
	r := fill(b, 250)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := r.Get("member-123"); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkRender(b *testing.B) {
	c := goldenCases(b)[0].cfg
	b.ReportAllocs()
	for b.Loop() {
		if _, err := Render(c); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkQR(b *testing.B) {
	text, _ := Render(goldenCases(b)[0].cfg)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := QR(text, QRColor); err != nil {
			b.Fatal(err)
		}
	}
}
