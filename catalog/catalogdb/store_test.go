package catalogdb

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/tollgate/tollgate/catalog"
)

func sample(n int) *catalog.State {
	tx := catalog.NewState().Begin()
	tx.PutAPI(catalog.API{ID: "api1", Stages: []catalog.Stage{{Name: "prod", Upstream: "http://127.0.0.1:1"}},
		Resources: []catalog.Resource{{Path: "/items", Methods: map[string]catalog.Method{"GET": {APIKeyRequired: true}}}}})
	tx.PutPlan(catalog.UsagePlan{ID: "plan1", Name: "Free", APIStages: []catalog.APIStage{{APIID: "api1", Stage: "prod"}},
		Quota: &catalog.Quota{Limit: 100, Period: catalog.Day}})
	for i := range n {
		tx.PutKey(catalog.APIKey{ID: fmt.Sprintf("key%05d", i), Name: fmt.Sprintf("name%05d", i), Enabled: true,
			ValueHash: catalog.HashKey(fmt.Sprintf("value-value-value-%05d", i)), UsagePlans: []string{"plan1"}})
	}
	return tx.State
}

func sameCatalog(t *testing.T, got, want *catalog.State) {
	t.Helper()
	if d := catalog.DiffStates(want, got); !d.Empty() {
		t.Fatalf("stored catalog differs: %+v", d.Delta)
	}
}

// A change writes what it touched; Load gives back the catalog in force.
func TestSaveLoad(t *testing.T) {
	path := filepath.Join(t.TempDir(), "catalog.db")
	db, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	s := sample(5000)
	if err := db.Save(&catalog.Change{Old: catalog.NewState(), New: s, Delta: catalog.Delta{Full: true}}); err != nil {
		t.Fatal(err)
	}
	tx := s.Begin()
	k := *tx.Key("key00007")
	k.Enabled = false
	tx.PutKey(k)
	tx.DeleteKey("key00008")
	tx.PutKey(catalog.APIKey{ID: "new", Name: "new", ValueHash: catalog.HashKey("new-new-new-new-new-new"), UsagePlans: []string{"plan1"}})
	p := tx.Plan("plan1").Clone()
	p.Quota.Limit = 5
	tx.PutPlan(p)
	if err := tx.Validate(nil); err != nil {
		t.Fatal(err)
	}
	if err := db.Save(&catalog.Change{Old: s, New: tx.State, Delta: tx.Delta()}); err != nil {
		t.Fatal(err)
	}
	db.Close()
	db, err = Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	got, err := db.Load(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	sameCatalog(t, got, tx.State)
	if got.Key("key00007").Enabled || got.Key("key00008") != nil || got.Plan("plan1").Quota.Limit != 5 || got.NumKeys() != 5000 {
		t.Fatal("the change was not stored")
	}
}

// A damaged file is refused at Open with ErrCorrupt, not at the first
// change.
func TestCorruptFileRefused(t *testing.T) {
	path := filepath.Join(t.TempDir(), "catalog.db")
	db, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := db.Save(&catalog.Change{Old: catalog.NewState(), New: sample(3000), Delta: catalog.Delta{Full: true}}); err != nil {
		t.Fatal(err)
	}
	db.Close()
	b, err := os.ReadFile(path)
	if err != nil || len(b) < 64<<10 {
		t.Fatalf("database of %d bytes: %v", len(b), err)
	}
	for i := 20 << 10; i < 40<<10; i++ {
		b[i] = 0xA5
	}
	os.WriteFile(path, b, 0o600)
	if _, err := Open(path); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("Open of a damaged file: %v, want ErrCorrupt", err)
	}
}

func BenchmarkLoad(b *testing.B) {
	path := filepath.Join(b.TempDir(), "catalog.db")
	db, err := Open(path)
	if err != nil {
		b.Fatal(err)
	}
	defer db.Close()
	if err := db.Save(&catalog.Change{Old: catalog.NewState(), New: sample(100000), Delta: catalog.Delta{Full: true}}); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := db.Load(context.Background()); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/100000, "ns/key")
}

func BenchmarkSaveOneKey(b *testing.B) {
	for _, n := range []int{1000, 100000} {
		b.Run(fmt.Sprint(n), func(b *testing.B) {
			db, err := Open(filepath.Join(b.TempDir(), "catalog.db"))
			if err != nil {
				b.Fatal(err)
			}
			defer db.Close()
			s := sample(n)
			if err := db.Save(&catalog.Change{Old: catalog.NewState(), New: s, Delta: catalog.Delta{Full: true}}); err != nil {
				b.Fatal(err)
			}
			b.ReportAllocs()
			i := 0
			for b.Loop() {
				tx := s.Begin()
				k := *tx.Key(fmt.Sprintf("key%05d", i%n))
				k.Enabled = !k.Enabled
				tx.PutKey(k)
				next := tx.State
				if err := db.Save(&catalog.Change{Old: s, New: next, Delta: tx.Delta()}); err != nil {
					b.Fatal(err)
				}
				s = next
				i++
			}
		})
	}
}

// Saving a change of 100k new keys (an ImportApiKeys; a first start from
// a file is ten of them).
func BenchmarkSaveNewKeys(b *testing.B) {
	base := sample(1000)
	tx := base.Begin()
	for i := range 100000 {
		tx.PutKey(catalog.APIKey{ID: fmt.Sprintf("new%06d", i), Name: fmt.Sprintf("new%06d", i), Enabled: true,
			ValueHash: catalog.HashKey(fmt.Sprintf("value-value-value-%06d", i)), UsagePlans: []string{"plan1"}})
	}
	ch := &catalog.Change{Old: base, New: tx.State, Delta: tx.Delta()}
	b.ReportAllocs()
	for b.Loop() {
		b.StopTimer()
		path := filepath.Join(b.TempDir(), "catalog.db")
		db, err := Open(path)
		if err != nil {
			b.Fatal(err)
		}
		if err := db.Save(&catalog.Change{Old: catalog.NewState(), New: base, Delta: catalog.Delta{Full: true}}); err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
		if err := db.Save(ch); err != nil {
			b.Fatal(err)
		}
		b.StopTimer()
		db.Close()
		b.StartTimer()
	}
}

// SaveWhile commits only when the work beside it succeeded.
func TestSaveWhile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "catalog.db")
	db, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	s := sample(3000)
	full := &catalog.Change{Old: catalog.NewState(), New: s, Delta: catalog.Delta{Full: true}}
	refused := errors.New("audit log: disk full")
	if err := db.SaveWhile(full, func() error { return refused }); err != refused {
		t.Fatalf("SaveWhile with a failing first: %v", err)
	}
	if empty, err := db.Empty(context.Background()); err != nil || !empty {
		t.Fatalf("a refused change was stored (empty %v, %v)", empty, err)
	}
	ran := false
	if err := db.SaveWhile(full, func() error { ran = true; return nil }); err != nil || !ran {
		t.Fatalf("SaveWhile: %v (first ran: %v)", err, ran)
	}
	got, err := db.Load(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	sameCatalog(t, got, s)
}

// A key row carries a rotation (version 2 of the 'K' format); a key
// without one is written as version 1, the bytes of before, and rows of
// version 1 still decode.
func TestKeyRowRotation(t *testing.T) {
	k := catalog.APIKey{ID: "k1", Name: "rotated", Enabled: true, ValueHash: catalog.HashKey("newnewnewnewnewnewnew1"), ValuePrefix: "newn",
		UsagePlans: []string{"plan1"}, CreatedDate: 5, Tags: map[string]string{"team": "a"}}
	plain, err := encodeKey(&k)
	if err != nil {
		t.Fatal(err)
	}
	if plain[0] != 'K' || plain[1] != 1 {
		t.Fatalf("a key without rotation is written as version %d", plain[1])
	}
	k.PreviousValueHash, k.PreviousValuePrefix, k.PreviousValueUntil = catalog.HashKey("oldoldoldoldoldoldold1"), "oldo", 1_801_353_600_000_000_001
	rotated, err := encodeKey(&k)
	if err != nil {
		t.Fatal(err)
	}
	if rotated[1] != 2 || !strings.HasPrefix(string(rotated[2:]), string(plain[2:])) {
		t.Fatalf("a rotation is not version 1's row followed by its fields: %q", rotated)
	}
	for _, tc := range []struct {
		row  []byte
		want catalog.APIKey
	}{{plain, func() catalog.APIKey { c := k; c.ClearRotation(); return c }()}, {rotated, k}} {
		got, err := decodeKey(string(tc.row))
		if err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(*got, tc.want) {
			t.Fatalf("decoded %+v\nwant %+v", *got, tc.want)
		}
	}
	for n := 2; n < len(rotated); n++ {
		if _, err := decodeKey(string(rotated[:n])); err == nil && n != len(plain) {
			t.Fatalf("a row cut at %d of %d decodes", n, len(rotated))
		}
	}
	bad := slices.Clone(plain)
	bad[1] = 3
	if _, err := decodeKey(string(bad)); err == nil {
		t.Fatal("a row of an unknown version decodes")
	}
}

// A catalog with a rotation in progress is stored and loaded whole.
func TestSaveLoadRotation(t *testing.T) {
	path := filepath.Join(t.TempDir(), "catalog.db")
	db, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	s := sample(10)
	tx := s.Begin()
	k := *tx.Key("key00003")
	k.Rotate(catalog.HashKey("rotated-rotated-rotated"), "rota", 1_801_353_600_000_000_000)
	tx.PutKey(k)
	if err := tx.Validate(nil); err != nil {
		t.Fatal(err)
	}
	if err := db.Save(&catalog.Change{Old: catalog.NewState(), New: tx.State, Delta: catalog.Delta{Full: true}}); err != nil {
		t.Fatal(err)
	}
	db.Close()
	if db, err = Open(path); err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	got, err := db.Load(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	sameCatalog(t, got, tx.State)
	if g := got.Key("key00003"); g.PreviousValueHash != k.PreviousValueHash || g.PreviousValueUntil != k.PreviousValueUntil || g.PreviousValuePrefix != k.PreviousValuePrefix {
		t.Fatalf("loaded %+v", g)
	}
	if got.KeyByHash(k.PreviousValueHash) == nil {
		t.Fatal("the loaded catalog does not index the previous value")
	}
}
