package catalog

import (
	"context"
	"fmt"
	"runtime"
	"testing"
)

// bigState is a catalog of n keys in one plan, built as a store loads
// one.
func bigState(n int) *State {
	b := NewBuilder()
	b.Add(API{ID: "api1", Stages: []Stage{{Name: "prod", Upstream: "http://127.0.0.1:1"}},
		Resources: []Resource{{Path: "/items", Methods: map[string]Method{"GET": {APIKeyRequired: true}}}}})
	b.Add(&UsagePlan{ID: "plan1", Name: "Free", APIStages: []APIStage{{APIID: "api1", Stage: "prod"}}})
	for i := range n {
		id := fmt.Sprintf("k%08d", i)
		b.Add(&APIKey{ID: id, Name: "name-" + id, Enabled: true, ValueHash: HashKey(id), ValuePrefix: "k000", UsagePlans: []string{"plan1"}})
	}
	return b.State()
}

// One change (a new key in a plan, validated, audited into nothing,
// stored into memory) costs the same at any catalog size.
func BenchmarkManagerCreateKey(b *testing.B) {
	for _, n := range []int{1000, 1000000} {
		b.Run(fmt.Sprint(n), func(b *testing.B) {
			m, err := NewManager(bigState(n), &memStore{}, nil)
			if err != nil {
				b.Fatal(err)
			}
			runtime.GC() // the build's garbage is not the change's
			b.ReportAllocs()
			i := 0
			for b.Loop() {
				id := fmt.Sprintf("new%08d", i)
				_, err := m.Change(context.Background(), func(tx *Tx) error {
					if tx.KeyByName(id) != nil || tx.KeyByHash(HashKey(id)) != nil {
						b.Fatal("taken")
					}
					tx.PutKey(APIKey{ID: id, Name: id, Enabled: true, ValueHash: HashKey(id), UsagePlans: []string{"plan1"}})
					return nil
				})
				if err != nil {
					b.Fatal(err)
				}
				i++
			}
		})
	}
}
