package mesh

import "testing"

func TestSummaryOrder(t *testing.T) {
	var a, b MeshID
	a[0], b[0] = 1, 2
	small := Summary{MeshID: a, Founded: 100, Size: 1}
	big := Summary{MeshID: b, Founded: 200, Size: 3}
	if !big.Beats(small) || small.Beats(big) {
		t.Fatal("the bigger mesh must win a merge")
	}
	older := Summary{MeshID: a, Founded: 100, Size: 3}
	if !older.Beats(big) || big.Beats(older) {
		t.Fatal("at equal size the older mesh must win")
	}
	e1 := Summary{MeshID: a, Epoch: 1, KeyHash: []byte{9}}
	e2 := Summary{MeshID: a, Epoch: 2, KeyHash: []byte{9}}
	if !e2.Beats(e1) || e1.Beats(e2) {
		t.Fatal("the newer epoch must win within a mesh")
	}
	x := Summary{MeshID: a, Epoch: 2, KeyHash: []byte{1}}
	if !x.Beats(e2) || e2.Beats(x) || x.Beats(x) {
		t.Fatal("equal epochs: the lower key hash wins, and nothing beats itself")
	}
}
