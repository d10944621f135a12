package catalog

import (
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"runtime"
	"syscall"
	"testing"
	"time"

	"github.com/tollgate/tollgate/schemas"
)

// Figures at scale. The million-key runs take a minute and a few GB:
//
//	go test -run '^$' -bench 'View' -benchtime 1x ./catalog/          # 1k and 1M keys
//	go test -run '^$' -bench 'View.*keys=1k' ./catalog/                 # quick
//
// BenchmarkViewApply is the cost of one record on a view of n keys;
// BenchmarkViewFirstLoad applies a whole log of n keys (a node's first
// start, less Kafka); BenchmarkViewSnapshot writes and loads the view's
// snapshot (a node's cold start, less the gateway's own indexing).

var benchSizes = []struct {
	name string
	keys int
}{{"keys=1k", 1_000}, {"keys=200k", 200_000}, {"keys=1M", 1_000_000}}

// benchLog is the log of a catalog of n keys, as the admin API writes it
// (keys, each in one of four plans; one in ten with a customer id). Its
// records are kept in one buffer without pointers: millions of small
// ones would make every collection of the garbage collector scan them,
// and a node fetches a few thousand at a time.
type benchLog struct {
	data   []byte
	ends   []int // record i's key ends at ends[2i], its value at ends[2i+1]
	keyIDs []string
}

func (l *benchLog) add(kind, id string, e any) {
	b, err := json.Marshal(e)
	if err != nil {
		panic(err)
	}
	rec := schemas.ConfigRecord{Kind: kind, ID: id, Entity: b}
	v, err := schemas.EncodeConfigRecord(&rec)
	if err != nil {
		panic(err)
	}
	l.data = append(l.data, rec.Key()...)
	l.ends = append(l.ends, len(l.data))
	l.data = append(l.data, v...)
	l.ends = append(l.ends, len(l.data))
}

func (l *benchLog) len() int { return len(l.ends) / 2 }

// record returns record i's key and value.
func (l *benchLog) record(i int) (key, value []byte) {
	start := 0
	if i > 0 {
		start = l.ends[2*i-1]
	}
	return l.data[start:l.ends[2*i]:l.ends[2*i]], l.data[l.ends[2*i]:l.ends[2*i+1]:l.ends[2*i+1]]
}

var benchPlans = []string{"free000001", "basic00001", "premium001", "enterpris1"}

func newBenchLog(n int) *benchLog {
	r := rand.New(rand.NewPCG(uint64(n), 7))
	l := &benchLog{}
	api := API{ID: "api0000001", Name: "shop", Stages: []Stage{{Name: "prod", Upstream: "http://shop.internal"}, {Name: "beta", Upstream: "http://beta.internal"}},
		Resources: []Resource{{Path: "/items", Methods: map[string]Method{"GET": {APIKeyRequired: true}, "POST": {APIKeyRequired: true}}}}}
	l.add(schemas.KindAPI, api.ID, api)
	for i, id := range benchPlans {
		p := UsagePlan{ID: id, Name: id, Throttle: &Throttle{RateLimit: float64(10 * (i + 1)), BurstLimit: int64(20 * (i + 1))},
			Quota: &Quota{Limit: 1000, Period: "DAY"}, APIStages: []APIStage{{APIID: api.ID, Stage: "prod"}}, CreatedDate: 1_700_000_000}
		l.add(schemas.KindUsagePlan, id, p)
	}
	for i := range n {
		id := randomString(rngReader{r}, 10, idAlphabet)
		value := randomString(rngReader{r}, 40, idAlphabet)
		k := APIKey{ID: id, Name: fmt.Sprintf("customer-key-%07d", i), Enabled: true, ValueHash: HashKey(value), ValuePrefix: value[:4],
			CreatedDate: 1_700_000_000 + int64(i)}
		if i%10 == 0 {
			k.CustomerID = fmt.Sprintf("cust-%06d", i/10)
		}
		l.add(schemas.KindAPIKey, id, k)
		p := benchPlans[r.IntN(len(benchPlans))]
		l.add(schemas.KindUsagePlanKey, p+"/"+id, planKeyEntity{UsagePlanID: p, KeyID: id})
		l.keyIDs = append(l.keyIDs, id)
	}
	return l
}

// rngReader reads from a math/rand source, for repeatable ids.
type rngReader struct{ r *rand.Rand }

func (g rngReader) Read(p []byte) (int, error) {
	for i := range p {
		p[i] = byte(g.r.Uint32())
	}
	return len(p), nil
}

// view applies the log to a new view in batches, as the config log does
// with what it fetches, and settles it.
func (l *benchLog) view(tb testing.TB) *View {
	v := NewView()
	v.Grow(l.len())
	const batch = 30_000 // about what one fetch of 8 MiB holds
	recs := make([]Record, 0, batch)
	for start := 0; start < l.len(); start += batch {
		recs = recs[:0]
		for i := start; i < min(start+batch, l.len()); i++ {
			k, val := l.record(i)
			recs = append(recs, Record{Offset: int64(i), Key: k, Value: val})
		}
		for _, err := range v.ApplyBatch(recs) {
			if err != nil {
				tb.Fatal(err)
			}
		}
	}
	v.State()
	return v
}

var (
	benchLogs  = map[int]*benchLog{}
	benchViews = map[int]*View{} // BenchmarkViewApply's, reused as b.N grows
)

func benchLogOf(n int) *benchLog {
	if benchLogs[n] == nil {
		benchLogs[n] = newBenchLog(n)
	}
	return benchLogs[n]
}

// BenchmarkViewApply: one record on a view of n keys, and the O(1)
// State and the delta that follow it, as the config log takes them for
// a live change (the State's trees are shared with the view, so the next
// record copies the nodes it changes).
func BenchmarkViewApply(b *testing.B) {
	for _, size := range benchSizes {
		b.Run(size.name, func(b *testing.B) {
			l := benchLogOf(size.keys)
			if benchViews[size.keys] == nil {
				benchViews[size.keys] = l.view(b)
			}
			v := benchViews[size.keys]
			v.TakeDelta()
			// Records to apply: a key disabled or enabled, a key moved to
			// another plan (a membership leaves, another comes).
			type rec struct{ key, value []byte }
			var recs []rec
			r := rand.New(rand.NewPCG(1, 2))
			for i := range 4096 {
				id := l.keyIDs[r.IntN(len(l.keyIDs))]
				k := *v.st.Key(id)
				k.UsagePlans = nil
				switch i % 3 {
				case 0:
					k.Enabled = !k.Enabled
					e, _ := json.Marshal(k)
					val, _ := schemas.EncodeConfigRecord(&schemas.ConfigRecord{Kind: schemas.KindAPIKey, ID: id, Entity: e})
					recs = append(recs, rec{[]byte("apiKey/" + id), val})
				default:
					p := benchPlans[r.IntN(len(benchPlans))]
					e, _ := json.Marshal(planKeyEntity{UsagePlanID: p, KeyID: id})
					val, _ := schemas.EncodeConfigRecord(&schemas.ConfigRecord{Kind: schemas.KindUsagePlanKey, ID: p + "/" + id, Entity: e})
					recs = append(recs, rec{[]byte("usagePlanKey/" + p + "/" + id), val}, rec{[]byte("usagePlanKey/" + p + "/" + id), nil})
				}
			}
			off := v.last + 1
			b.ReportAllocs()
			b.ResetTimer()
			cpu0 := cpuTime()
			for i := range b.N {
				r := &recs[i%len(recs)]
				v.Apply(off, r.key, r.value)
				off++
				v.State()
				v.TakeDelta()
			}
			b.ReportMetric(float64((cpuTime()-cpu0).Nanoseconds())/float64(b.N), "cpu-ns/op")
		})
	}
}

// BenchmarkViewFirstLoad applies a whole log of n keys to a new view.
func BenchmarkViewFirstLoad(b *testing.B) {
	for _, size := range benchSizes {
		b.Run(size.name, func(b *testing.B) {
			l := benchLogOf(size.keys)
			b.ReportAllocs()
			b.ResetTimer()
			cpu0 := cpuTime()
			for range b.N {
				l.view(b)
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/float64(l.len()), "ns/record")
			b.ReportMetric(float64((cpuTime()-cpu0).Nanoseconds())/float64(b.N)/float64(l.len()), "cpu-ns/record")
		})
	}
}

// BenchmarkViewSnapshot writes the snapshot of a view of n keys to a
// file, and loads it (ns/op is the load).
func BenchmarkViewSnapshot(b *testing.B) {
	for _, size := range benchSizes {
		b.Run(size.name, func(b *testing.B) {
			v := benchLogOf(size.keys).view(b)
			path := filepath.Join(b.TempDir(), "view.snap")
			f, err := os.Create(path)
			if err != nil {
				b.Fatal(err)
			}
			start := time.Now()
			if _, err := v.Snapshot().WriteTo(f); err != nil {
				b.Fatal(err)
			}
			if err := f.Close(); err != nil {
				b.Fatal(err)
			}
			b.ReportMetric(float64(time.Since(start).Milliseconds()), "write-ms")
			fi, _ := os.Stat(path)
			b.ReportMetric(float64(fi.Size())/float64(size.keys), "bytes/key")
			runtime.GC()
			b.ReportAllocs()
			b.ResetTimer()
			for range b.N {
				f, err := os.Open(path)
				if err != nil {
					b.Fatal(err)
				}
				loaded, err := ReadView(f)
				f.Close()
				if err != nil {
					b.Fatal(err)
				}
				if loaded.st.NumKeys() != size.keys {
					b.Fatalf("%d keys loaded", loaded.st.NumKeys())
				}
			}
		})
	}
}

// The benchmark's log is a valid catalog that snapshots round-trip.
func TestViewBenchLog(t *testing.T) {
	v := newBenchLog(2000).view(t)
	if err := Validate(v.Catalog(), nil); err != nil {
		t.Fatal(err)
	}
	checkSameIndexes(t, snapshotRoundTrip(t, v).st, v.st)
	if v.st.customers.Len() == 0 {
		t.Fatal("no customer ids: the benchmark misses an index")
	}
}

// BenchmarkViewSnapshotFile loads the snapshot file named by
// $TOLLGATE_BENCH_SNAPSHOT, as a node's cold start does in a fresh
// process; if there is none yet, it writes one of
// $TOLLGATE_BENCH_KEYS keys (default a million) there first and stops
// (run it again to measure):
//
//	TOLLGATE_BENCH_SNAPSHOT=/tmp/view.snap go test -run '^$' -bench ViewSnapshotFile -benchtime 1x ./catalog/   # twice
func BenchmarkViewSnapshotFile(b *testing.B) {
	path := os.Getenv("TOLLGATE_BENCH_SNAPSHOT")
	if path == "" {
		b.Skip("TOLLGATE_BENCH_SNAPSHOT is not set")
	}
	if _, err := os.Stat(path); err != nil {
		n := 1_000_000
		if s := os.Getenv("TOLLGATE_BENCH_KEYS"); s != "" {
			fmt.Sscan(s, &n)
		}
		f, err := os.Create(path)
		if err != nil {
			b.Fatal(err)
		}
		if _, err := newBenchLog(n).view(b).Snapshot().WriteTo(f); err != nil {
			b.Fatal(err)
		}
		if err := f.Close(); err != nil {
			b.Fatal(err)
		}
		b.Skipf("wrote %s: run again to measure its load", path)
	}
	b.ReportAllocs()
	cpu0 := cpuTime()
	for range b.N {
		f, err := os.Open(path)
		if err != nil {
			b.Fatal(err)
		}
		v, err := ReadView(f)
		f.Close()
		if err != nil {
			b.Fatal(err)
		}
		b.ReportMetric(float64(v.st.NumKeys()), "keys")
		b.StopTimer()
		runtime.GC()
		var ms runtime.MemStats
		runtime.ReadMemStats(&ms)
		b.ReportMetric(float64(ms.HeapAlloc)/1e6, "live-heap-MB")
		runtime.KeepAlive(v)
		b.StartTimer()
	}
	b.ReportMetric(float64((cpuTime()-cpu0).Milliseconds())/float64(b.N), "cpu-ms/op")
}

// cpuTime is the CPU time the process used so far: with other work on
// the machine, wall time says little.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
