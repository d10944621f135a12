package catalog

import (
	"fmt"
	"math/rand/v2"
	"os"
	"slices"
	"strconv"
	"strings"
	"testing"
)

// txWorld builds random catalogs and random changes of them from small
// pools of names, values and ids, so that collisions are frequent.
type txWorld struct{ r *rand.Rand }

func (w txWorld) pick(list ...string) string { return list[w.r.IntN(len(list))] }

func (w txWorld) key() APIKey {
	k := APIKey{ID: "k" + strconv.Itoa(w.r.IntN(30)), Name: "key-" + strconv.Itoa(w.r.IntN(30)), Enabled: w.r.IntN(2) == 0,
		ValueHash: HashKey(fmt.Sprintf("value-value-value-%04d", w.r.IntN(40))), UsagePlans: []string{}}
	if w.r.IntN(3) == 0 {
		k.CustomerID = "cust-" + strconv.Itoa(w.r.IntN(4))
	}
	for range w.r.IntN(3) {
		k.UsagePlans = append(k.UsagePlans, "p"+strconv.Itoa(w.r.IntN(3)))
	}
	if w.r.IntN(3) == 0 { // a rotation: its previous value from the same pool
		k.PreviousValueHash = HashKey(fmt.Sprintf("value-value-value-%04d", w.r.IntN(40)))
		k.PreviousValuePrefix, k.PreviousValueUntil = "valu", int64(w.r.IntN(3)) // 0 is invalid
	}
	return k
}

func (w txWorld) plan() UsagePlan {
	p := UsagePlan{ID: "p" + strconv.Itoa(w.r.IntN(3)), Name: "plan-" + strconv.Itoa(w.r.IntN(6)), APIStages: []APIStage{}}
	for range w.r.IntN(3) {
		as := APIStage{APIID: w.pick("a1", "a1", "a2", "a3"), Stage: w.pick("prod", "prod", "dev", "beta")}
		if w.r.IntN(3) == 0 {
			as.Throttle = map[string]Throttle{w.pick("/items/GET", "/items/POST", "/orders/GET"): {RateLimit: 5, BurstLimit: int64(w.r.IntN(3))}}
		}
		p.APIStages = append(p.APIStages, as)
	}
	if w.r.IntN(4) == 0 {
		p.Quota = &Quota{Limit: int64(w.r.IntN(200)) - 10, Period: Period(w.pick("DAY", "YEAR"))}
	}
	return p
}

func (w txWorld) api() API {
	a := API{ID: w.pick("a1", "a2", "a3"), Stages: []Stage{{Name: "prod", Upstream: "http://127.0.0.1:1"}}}
	bp := "/" + a.ID + "-dev"
	if w.r.IntN(5) == 0 {
		bp = "/prod" // may clash with another API's prod stage
	}
	if w.r.IntN(2) == 0 {
		a.Stages[0].BasePath = &bp
		a.Stages = append(a.Stages, Stage{Name: "dev", Upstream: "http://127.0.0.1:1", BasePath: ptr("/" + a.ID + "-dev2")})
	}
	a.Stages[0].BasePath = ptr("/" + a.ID)
	a.Resources = []Resource{{Path: "/items", Methods: map[string]Method{"GET": {APIKeyRequired: true}}}}
	if w.r.IntN(2) == 0 {
		a.Resources[0].Methods["POST"] = Method{APIKeyRequired: true}
	}
	return a
}

func ptr[T any](v T) *T { return &v }

// change makes one random edit through tx.
func (w txWorld) change(tx *Tx) {
	switch w.r.IntN(10) {
	case 0, 1, 2, 3:
		tx.PutKey(w.key())
	case 4:
		tx.DeleteKey("k" + strconv.Itoa(w.r.IntN(30)))
	case 5, 6:
		tx.PutPlan(w.plan())
	case 7:
		id := "p" + strconv.Itoa(w.r.IntN(3))
		if w.r.IntN(2) == 0 { // take its keys out first, as the admin API does
			var keys []APIKey
			tx.PlanKeys(id, "", func(k *APIKey) bool { keys = append(keys, *k); return true })
			for _, k := range keys {
				k.UsagePlans = slices.DeleteFunc(slices.Clone(k.UsagePlans), func(p string) bool { return p == id })
				tx.PutKey(k)
			}
		}
		tx.DeletePlan(id)
	case 8:
		if w.r.IntN(4) == 0 {
			tx.DeleteAPI(w.pick("a1", "a2", "a3"))
		} else {
			tx.PutAPI(w.api())
		}
	case 9:
		g := Gateway{}
		if w.r.IntN(3) == 0 {
			g.UnknownRouteStatus = 405
		}
		tx.SetGateway(g)
	}
}

// Validating what a Tx touched, through the indexes, accepts exactly the
// changes that validating the whole resulting catalog accepts, and the
// state a chain of accepted changes builds has consistent indexes.
func TestTxValidationEqualsWholeCatalog(t *testing.T) {
	seed := rand.Uint64()
	if s := os.Getenv("TOLLGATE_TX_SEED"); s != "" {
		seed, _ = strconv.ParseUint(s, 10, 64)
	}
	t.Logf("seed %d (TOLLGATE_TX_SEED)", seed)
	w := txWorld{rand.New(rand.NewPCG(seed, 0))}
	accepted, refused := 0, 0
	defaultWalk := walkIndexes
	defer func() { walkIndexes = defaultWalk }()
	for run := range 600 {
		s := NewState()
		for step := range 40 {
			tx := s.Begin()
			for range 1 + w.r.IntN(3) {
				w.change(tx)
			}
			txErr := tx.Validate(nil)
			// Walking the indexes or searching them per key finds the
			// same problems, in the same order.
			for _, walk := range []bool{false, true} {
				walkIndexes = func(int, int) bool { return walk }
				if err := tx.Validate(nil); fmt.Sprint(err) != fmt.Sprint(txErr) {
					t.Fatalf("run %d step %d: walking the indexes %v: %v, else %v", run, step, walk, err, txErr)
				}
			}
			walkIndexes = defaultWalk
			whole := ValidateChange(s.Catalog(), tx.State.Catalog(), nil)
			if (txErr == nil) != (whole == nil) {
				t.Fatalf("run %d step %d: the Tx's validation says %v, the whole catalog's %v", run, step, txErr, whole)
			}
			if txErr != nil {
				refused++
				continue
			}
			accepted++
			s = tx.State
			checkStateIndexes(t, s)
		}
	}
	if accepted < 500 || refused < 500 {
		t.Fatalf("%d accepted, %d refused: the generator does not exercise both", accepted, refused)
	}
}

// checkStateIndexes compares every index lookup with a scan of the catalog.
func checkStateIndexes(t *testing.T, s *State) {
	t.Helper()
	c := s.Catalog()
	for _, k := range c.APIKeys {
		if s.KeyByName(k.Name).ID != k.ID || s.KeyByHash(k.ValueHash).ID != k.ID {
			t.Fatalf("key %s is not found by its name or value", k.ID)
		}
	}
	for _, p := range c.UsagePlans {
		if s.PlanByName(p.Name).ID != p.ID {
			t.Fatalf("plan %s is not found by its name", p.ID)
		}
		var want, got []string
		for _, k := range c.APIKeys {
			if slices.Contains(k.UsagePlans, p.ID) {
				want = append(want, k.ID)
			}
		}
		s.PlanKeys(p.ID, "", func(k *APIKey) bool { got = append(got, k.ID); return true })
		if !slices.Equal(got, want) {
			t.Fatalf("plan %s keys %v, want %v", p.ID, got, want)
		}
	}
	for i := range 4 {
		cust := "cust-" + strconv.Itoa(i)
		var want, got []string
		for _, k := range c.APIKeys {
			if k.CustomerID == cust {
				want = append(want, k.ID)
			}
		}
		s.KeysOfCustomer(cust, "", func(k *APIKey) bool { got = append(got, k.ID); return true })
		if !slices.Equal(got, want) {
			t.Fatalf("customer %s keys %v, want %v", cust, got, want)
		}
	}
}

// Pages walk the indexes from a position: every key once, in order,
// whatever the page size.
func TestStatePages(t *testing.T) {
	tx := NewState().Begin()
	for i := range 1000 {
		tx.PutKey(APIKey{ID: fmt.Sprintf("id%04d", (i*7919)%1000), Name: fmt.Sprintf("name-%03d", i%1000), ValueHash: HashKey(fmt.Sprint("v", i)),
			CustomerID: "c" + strconv.Itoa(i%3)})
	}
	s := tx.State
	for _, size := range []int{1, 7, 500, 1000} {
		var all []string
		after := ""
		for {
			var page []string
			s.Keys(after, func(k *APIKey) bool { page = append(page, k.ID); return len(page) < size })
			if len(page) == 0 {
				break
			}
			all = append(all, page...)
			after = page[len(page)-1]
		}
		if len(all) != 1000 || !slices.IsSorted(all) {
			t.Fatalf("pages of %d: %d keys, sorted %v", size, len(all), slices.IsSorted(all))
		}
	}
	var names []string
	s.KeysByName("name-01", "name-012", func(k *APIKey) bool { names = append(names, k.Name); return true })
	if strings.Join(names, ",") != "name-013,name-014,name-015,name-016,name-017,name-018,name-019" {
		t.Fatalf("names after name-012 with prefix name-01: %v", names)
	}
}
