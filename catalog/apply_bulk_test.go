package catalog

import (
	"fmt"
	"math/rand/v2"
	"reflect"
	"strconv"
	"testing"
)

// fileWorld makes random files of keys for a txWorld catalog: names from
// a small pool (a file may name a key twice, or a key of the catalog),
// with or without ids and values, in plans by name or id.
func (w txWorld) file() *File {
	c := Catalog{}
	for range w.r.IntN(12) {
		k := APIKey{Name: "key-" + strconv.Itoa(w.r.IntN(200)), Enabled: w.r.IntN(2) == 0, UsagePlans: []string{}}
		switch w.r.IntN(4) {
		case 0:
			k.ID = "k" + strconv.Itoa(w.r.IntN(30)) // maybe a key of the catalog
		case 1:
			k.ID = "f" + strconv.Itoa(w.r.IntN(1000))
		}
		if w.r.IntN(2) == 0 {
			k.Value = fmt.Sprintf("file-value-value-%04d", w.r.IntN(80))
		}
		if w.r.IntN(3) == 0 {
			k.CustomerID = "cust-" + strconv.Itoa(w.r.IntN(4))
		}
		for range w.r.IntN(2) {
			k.UsagePlans = append(k.UsagePlans, w.pick("p0", "p1", "plan-1", "plan-2"))
		}
		c.APIKeys = append(c.APIKeys, k)
	}
	return &File{Name: "x.yaml", Catalog: c, lines: map[string][]int{}}
}

// Adding a file's new keys in one sorted pass gives what adding them one
// by one gives: the same state, indexes, changes and errors.
func TestApplyFileBulkMatchesOneByOne(t *testing.T) {
	defer func() { bulkNewKeys = true }()
	applied := 0
	for seed := range uint64(400) {
		w := txWorld{rand.New(rand.NewPCG(seed, 11))}
		base := NewState()
		for range w.r.IntN(60) {
			tx := base.Begin()
			w.change(tx)
			if tx.Validate(nil) == nil {
				base = tx.State
			}
		}
		f := w.file()
		run := func(bulk bool) (*Tx, *Changes, error) {
			bulkNewKeys = bulk
			tx := base.Begin()
			ch, err := applyFile(tx, f, now, rand.NewChaCha8([32]byte{byte(seed)}))
			return tx, ch, err
		}
		tx1, ch1, err1 := run(false)
		tx2, ch2, err2 := run(true)
		if fmt.Sprint(err1) != fmt.Sprint(err2) {
			t.Fatalf("seed %d: one by one: %v\nbulk: %v", seed, err1, err2)
		}
		if err1 != nil {
			continue
		}
		applied++
		sameState(t, tx1.State, tx2.State)
		if !reflect.DeepEqual(ch1, ch2) || !reflect.DeepEqual(tx1.Delta(), tx2.Delta()) {
			t.Fatalf("seed %d: changes differ:\n%+v\n%+v", seed, ch1, ch2)
		}
	}
	if applied < 50 {
		t.Fatalf("only %d of 400 files applied", applied)
	}
	t.Logf("%d of 400 files applied", applied)
}

// A new key whose id (derived from its name) another new key of the file
// gives explicitly yields it, wherever it stands in the file.
func TestApplyFileDerivedIDTakenInFile(t *testing.T) {
	derived := fileID(NewState(), "apiKey", "first", nil)
	for _, order := range [][2]int{{0, 1}, {1, 0}} {
		keys := [2]APIKey{
			{Name: "first", Enabled: true, UsagePlans: []string{}},
			{ID: derived, Name: "second", Enabled: true, UsagePlans: []string{}},
		}
		f := &File{Name: "x.yaml", Catalog: Catalog{APIKeys: []APIKey{keys[order[0]], keys[order[1]]}}, lines: map[string][]int{}}
		tx := NewState().Begin()
		if _, err := applyFile(tx, f, now, rand.NewChaCha8([32]byte{})); err != nil {
			t.Fatal(err)
		}
		first, second := tx.KeyByName("first"), tx.KeyByName("second")
		if first == nil || second == nil || second.ID != derived || first.ID == derived || len(first.ID) != 10 {
			t.Fatalf("order %v: first %+v, second %+v", order, first, second)
		}
	}
}
