package catalog

import (
	"errors"
	"runtime"
	"slices"
	"sync"

	"github.com/google/btree"
)

// The View changes its State in place and loads whole States from
// snapshots: the helpers here do both faster than putKey, and keep the
// same indexes (TestViewStateIndexes compares them with putKey's).

// replaceKeyPlans replaces old by k, the same key but for its plans:
// only the keys and memberships indexes change.
func (s *State) replaceKeyPlans(old, k *APIKey) {
	s.keys.ReplaceOrInsert(k)
	for _, p := range old.UsagePlans {
		if !slices.Contains(k.UsagePlans, p) {
			s.members.Delete(pair{p, k.ID})
		}
	}
	for _, p := range k.UsagePlans {
		if !slices.Contains(old.UsagePlans, p) {
			s.members.ReplaceOrInsert(pair{p, k.ID})
		}
	}
}

// keyOrders lists keys (sorted by id) by position in the order of the
// other indexes: by name, by value hash, and (only keys with one) by
// customer id.
type keyOrders struct {
	names, hashes, customers []int32
}

// loadKeys fills the key indexes of an empty State from keys sorted by
// id, the orders of the other indexes, and the sorted ids of the plans
// the keys are in. Each index's entries are laid out in its order and
// the tree built from them without comparisons (bulkTree), one index per
// core at a time, the longest first. An order that is not in fact sorted
// (checked: one comparison per entry) is sorted first, so a wrong order
// costs time, never a wrong tree. The keys are kept.
func (s *State) loadKeys(keys []*APIKey, o *keyOrders, planIDs []string) {
	byPair := func(tree **btree.BTreeG[pair], order []int32, value func(*APIKey) string) func() {
		return func() {
			ps := make([]pair, len(order))
			for n, i := range order {
				ps[n] = pair{value(keys[i]), keys[i].ID}
			}
			sortPairs(ps) // only checked, when in order
			fill(tree, pairLess, ps)
		}
	}
	jobs := []func(){
		byPair(&s.keyNames, o.names, func(k *APIKey) string { return k.Name }),
		func() {
			byPair(&s.keyHashes, o.hashes, func(k *APIKey) string { return k.ValueHash })()
			s.fillPrevHashes(keys)
		},
		func() {
			// Memberships by plan, then key: bucketed, not sorted.
			index := make(map[string]int, len(planIDs))
			for i, id := range planIDs {
				index[id] = i
			}
			buckets := make([][]int32, len(planIDs))
			n := 0
			for i := range keys {
				for m, p := range keys[i].UsagePlans {
					if !slices.Contains(keys[i].UsagePlans[:m], p) { // a plan named twice is one membership
						b := index[p]
						buckets[b] = append(buckets[b], int32(i))
						n++
					}
				}
			}
			ps := make([]pair, 0, n)
			for b, list := range buckets {
				for _, i := range list {
					ps = append(ps, pair{planIDs[b], keys[i].ID})
				}
			}
			sortPairs(ps)
			fill(&s.members, pairLess, ps)
		},
		func() {
			// lastByID only checks keys in id order, and drops an id
			// given twice; on a copy, since the orders are positions.
			fill(&s.keys, keyLess, lastByID(slices.Clone(keys), func(k *APIKey) string { return k.ID }))
		},
		byPair(&s.customers, o.customers, func(k *APIKey) string { return k.CustomerID }),
	}
	onEveryCore(len(jobs), func(j int) error { jobs[j](); return nil })
}

// onEveryCore calls f(i) for each i in [0, n), on every core: a worker
// per core (at most n) takes the next i until none is left. A worker
// whose f fails stops there, the others go on; the errors are joined.
func onEveryCore(n int, f func(i int) error) error {
	var (
		wg   sync.WaitGroup
		mu   sync.Mutex
		next int
		errs []error
	)
	for range min(runtime.GOMAXPROCS(0), n) {
		wg.Go(func() {
			for {
				mu.Lock()
				i := next
				next++
				mu.Unlock()
				if i >= n {
					return
				}
				if err := f(i); err != nil {
					mu.Lock()
					errs = append(errs, err)
					mu.Unlock()
					return
				}
			}
		})
	}
	wg.Wait()
	return errors.Join(errs...)
}
