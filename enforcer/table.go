package enforcer

import (
	"crypto/sha256"
	"encoding/hex"
	"maps"
	"net/http/httputil"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/tollgate/tollgate/catalog"
)

// table is the catalog compiled for the request path: immutable once
// built, swapped atomically on change. Counters live in states, which
// survive recompiles.
type table struct {
	byHost    map[string][]*stageRoute // lower-case host → stages, longest prefix first
	anyHost   []*stageRoute            // stages without a host
	hostBased bool                     // whether any stage names a host
	keys      map[[32]byte]*keyEntry
	plans     map[string]*planRT // by id
	// verified maps key values seen on requests to their entries, so
	// that a known key is hashed once per catalog version, not once per
	// request. Only values whose SHA-256 matched a key enter it, so it
	// holds at most one entry per key however many bad keys arrive.
	verified sync.Map // string → *keyEntry
	gateway  bucket
	gwState  *atomic.Int64
	notFound int // status for undeclared routes: 403 or 404
	headers  bool
}

type stageRoute struct {
	apiID, stage string
	prefix       string
	root         *node
	nRoutes      int
	bucket       bucket
	state        *atomic.Int64
	proxy        *httputil.ReverseProxy
}

type keyEntry struct {
	id       string
	enabled  bool
	idHeader []string // precomputed X-Tollgate-Key-Id value
	bindings []binding
}

// binding is a key's plan for one stage.
type binding struct {
	stage *stageRoute
	plan  *planRT
	state *keyPlanState
	// methodBucket maps a method route index to a per-method bucket
	// (index into plan.overrides and state.overrides), or -1. Shared by
	// every key of the plan.
	methodBucket []int
}

type planRT struct {
	id        string
	idHeader  []string
	bucket    bucket
	quota     *quota
	overrides []bucket
	policy    []string // RateLimit-Policy value
}

// keyPlanState holds the counters of one key under one plan.
type keyPlanState struct {
	tat   atomic.Int64
	quota atomic.Uint64 // what decides: period and count (or leased count, see ApplySignal)
	// local counts the requests this enforcer admitted in the period
	// (packed like quota); signals never change it.
	local atomic.Uint64
	// asOf is the AsOf of the last signal applied, so that an older one,
	// arriving late, is not applied over it.
	asOf      atomic.Int64
	overrides []atomic.Int64
}

// states keeps counters across recompiles, by key and plan id, and by
// name for the shared (stage and gateway) buckets.
type states struct {
	keyPlan map[keyPlan]*keyPlanState
	global  map[string]*atomic.Int64
}

type keyPlan struct{ keyID, planID string }

func (s *states) keyPlanFor(keyID, planID string, nOverrides int) *keyPlanState {
	k := keyPlan{keyID, planID}
	st := s.keyPlan[k]
	if st == nil || len(st.overrides) != nOverrides {
		n := &keyPlanState{overrides: make([]atomic.Int64, nOverrides)}
		if st != nil {
			n.tat.Store(st.tat.Load())
			n.quota.Store(st.quota.Load())
			n.local.Store(st.local.Load())
			n.asOf.Store(st.asOf.Load())
		}
		st = n
		s.keyPlan[k] = st
	}
	return st
}

// lookup returns the counters of a key under a plan, or nil. mu guards
// the map against a concurrent compile.
func (s *states) lookup(keyID, planID string, mu *sync.Mutex) *keyPlanState {
	mu.Lock()
	defer mu.Unlock()
	return s.keyPlan[keyPlan{keyID, planID}]
}

func (s *states) globalFor(id string) *atomic.Int64 {
	st := s.global[id]
	if st == nil {
		st = new(atomic.Int64)
		s.global[id] = st
	}
	return st
}

func throttleBucket(t *catalog.Throttle) bucket {
	if t == nil {
		return unlimitedBucket
	}
	return newBucket(t.RateLimit, t.BurstLimit)
}

// compile builds a table from a validated catalog. newProxy builds the
// reverse proxy of a stage.
func compile(c *catalog.Catalog, st *states, newProxy func(apiID string, s catalog.Stage) (*httputil.ReverseProxy, error)) (*table, error) {
	t := &table{
		byHost:   map[string][]*stageRoute{},
		keys:     make(map[[32]byte]*keyEntry, len(c.APIKeys)),
		gateway:  throttleBucket(c.Gateway.Throttle),
		gwState:  st.globalFor("gateway"),
		notFound: 403,
		headers:  c.Gateway.RateLimitHeadersOn(),
	}
	if c.Gateway.UnknownRouteStatus == 404 {
		t.notFound = 404
	}
	stages := map[string]*stageRoute{} // "api:stage"
	for _, a := range c.APIs {
		for _, s := range a.Stages {
			sr := &stageRoute{
				apiID: a.ID, stage: s.Name, prefix: s.Prefix(), root: &node{},
				bucket: throttleBucket(s.Throttle),
				state:  st.globalFor("stage/" + a.ID + ":" + s.Name),
			}
			for _, r := range a.Resources {
				n := sr.root.insert(r.Path)
				for _, m := range slices.Sorted(maps.Keys(r.Methods)) {
					n.methods[methodIndex(m)] = &methodRoute{idx: sr.nRoutes, resource: r.Path, method: m, keyRequired: r.Methods[m].APIKeyRequired}
					sr.nRoutes++
				}
			}
			p, err := newProxy(a.ID, s)
			if err != nil {
				return nil, err
			}
			sr.proxy = p
			stages[a.ID+":"+s.Name] = sr
			if s.Host == "" {
				t.anyHost = append(t.anyHost, sr)
			} else {
				h := strings.ToLower(s.Host)
				t.byHost[h] = append(t.byHost[h], sr)
				t.hostBased = true
			}
		}
	}
	byLongest := func(l []*stageRoute) {
		sort.Slice(l, func(i, j int) bool { return len(l[i].prefix) > len(l[j].prefix) })
	}
	byLongest(t.anyHost)
	for _, l := range t.byHost {
		byLongest(l)
	}

	plans := map[string]*planRT{}
	overrideIdx := map[string]map[string]int{} // plan → "api:stage/resource/METHOD" → index
	for _, p := range c.UsagePlans {
		rt := &planRT{id: p.ID, idHeader: []string{p.ID}, bucket: throttleBucket(p.Throttle), quota: newQuota(p.Quota, p.CreatedDate)}
		idx := map[string]int{}
		for _, as := range p.APIStages {
			for _, k := range slices.Sorted(maps.Keys(as.Throttle)) {
				th := as.Throttle[k]
				idx[as.APIID+":"+as.Stage+k] = len(rt.overrides)
				rt.overrides = append(rt.overrides, newBucket(th.RateLimit, th.BurstLimit))
			}
		}
		rt.policy = []string{policyHeader(p)}
		plans[p.ID] = rt
		overrideIdx[p.ID] = idx
	}

	// methodBuckets maps a stage's method routes to a plan's per-method
	// buckets; every key of the plan shares the one slice.
	shared := map[string][]int{}
	methodBuckets := func(planID, stage string, sr *stageRoute) []int {
		k := planID + "/" + stage
		if mb, ok := shared[k]; ok {
			return mb
		}
		mb := make([]int, sr.nRoutes)
		for i := range mb {
			mb[i] = -1
		}
		sr.root.each(func(m *methodRoute) {
			if i, ok := overrideIdx[planID][stage+m.resource+"/"+m.method]; ok {
				mb[m.idx] = i
			}
		})
		shared[k] = mb
		return mb
	}
	planByID := make(map[string]*catalog.UsagePlan, len(c.UsagePlans))
	for i := range c.UsagePlans {
		planByID[c.UsagePlans[i].ID] = &c.UsagePlans[i]
	}
	t.plans = plans
	for _, k := range c.APIKeys {
		var h [32]byte
		if _, err := hex.Decode(h[:], []byte(k.ValueHash)); err != nil || len(k.ValueHash) != 64 {
			continue // validated catalogs always carry a hash
		}
		e := &keyEntry{id: k.ID, enabled: k.Enabled, idHeader: []string{k.ID}}
		for _, pid := range k.UsagePlans {
			p := plans[pid]
			if p == nil {
				continue
			}
			kp := st.keyPlanFor(k.ID, pid, len(p.overrides))
			pl := planByID[pid]
			for _, as := range pl.APIStages {
				sr := stages[as.APIID+":"+as.Stage]
				if sr == nil {
					continue
				}
				e.bindings = append(e.bindings, binding{stage: sr, plan: p, state: kp,
					methodBucket: methodBuckets(pid, as.APIID+":"+as.Stage, sr)})
			}
		}
		t.keys[h] = e
	}
	return t, nil
}

func (n *node) each(f func(*methodRoute)) {
	for _, m := range n.methods {
		if m != nil {
			f(m)
		}
	}
	for _, c := range n.lit {
		c.each(f)
	}
	if n.param != nil {
		n.param.each(f)
	}
	if n.greedy != nil {
		n.greedy.each(f)
	}
}

// policyHeader renders a plan's limits as an IETF RateLimit-Policy field
// (draft-ietf-httpapi-ratelimit-headers): the throttle as burstLimit per
// the seconds the bucket takes to refill, the quota per its period.
func policyHeader(p catalog.UsagePlan) string {
	var items []string
	if t := p.Throttle; t != nil && t.RateLimit > 0 {
		w := int64(float64(t.BurstLimit)/t.RateLimit + 0.999999)
		items = append(items, `"throttle";q=`+strconv.FormatInt(t.BurstLimit, 10)+";w="+strconv.FormatInt(max(w, 1), 10))
	}
	if q := p.Quota; q != nil {
		items = append(items, `"quota";q=`+strconv.FormatInt(q.Limit, 10)+";w="+strconv.FormatInt(q.Period.Seconds(), 10))
	}
	return strings.Join(items, ", ")
}

// lookupKey finds a key by its value. Values longer than any valid key
// are refused without hashing.
func (t *table) lookupKey(v string) *keyEntry {
	if len(v) < 20 || len(v) > 128 {
		return nil
	}
	if e, ok := t.verified.Load(v); ok {
		return e.(*keyEntry)
	}
	var buf [128]byte
	n := copy(buf[:], v)
	e := t.keys[sha256.Sum256(buf[:n])]
	if e != nil {
		t.verified.Store(strings.Clone(v), e)
	}
	return e
}

// route finds the stage and remaining path of a request.
func (t *table) route(host, path string) (*stageRoute, string) {
	if t.hostBased {
		if i := strings.LastIndexByte(host, ':'); i >= 0 && !strings.Contains(host[i:], "]") {
			host = host[:i]
		}
		l := t.byHost[host]
		if l == nil && hasUpper(host) {
			l = t.byHost[strings.ToLower(host)]
		}
		if sr, rest := matchPrefix(l, path); sr != nil {
			return sr, rest
		}
	}
	return matchPrefix(t.anyHost, path)
}

func matchPrefix(l []*stageRoute, path string) (*stageRoute, string) {
	for _, sr := range l {
		p := sr.prefix
		if strings.HasPrefix(path, p) && (len(path) == len(p) || path[len(p)] == '/') {
			rest := path[len(p):]
			if rest == "" {
				rest = "/"
			}
			return sr, rest
		}
	}
	return nil, ""
}

func hasUpper(s string) bool {
	for i := 0; i < len(s); i++ {
		if 'A' <= s[i] && s[i] <= 'Z' {
			return true
		}
	}
	return false
}
