package enforcer

import (
	"encoding/hex"
	"maps"
	"net/http/httputil"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync/atomic"

	"github.com/tollgate/tollgate/catalog"
)

// table is the catalog compiled for the request path. Its routes (the
// stages, their resource trees and buckets) and plan runtimes are
// immutable: a change of APIs, gateway settings or plans publishes a new
// table, copying only those (O(APIs + plans)). Its keys live in a keySet
// that changes in place, one key at a time, and is shared by the tables
// that follow until a full load builds a new one. See doc.go.
type table struct {
	byHost    map[string][]*stageRoute // lower-case host → stages, longest prefix first
	anyHost   []*stageRoute            // stages without a host
	hostBased bool                     // whether any stage names a host
	stages    map[string]*stageRoute   // by "apiID:stage"
	gateway   bucket
	gwState   *atomic.Int64
	notFound  int // status for undeclared routes: 403 or 404
	headers   bool
	// plans holds the runtime of each plan by its index (binding.plan);
	// nil where no plan has the index.
	plans []*planRT
	keys  *keySet
	// share is the gateway's default share of a key's throttle
	// (Gateway.fleetShare, rate.go).
	share *atomic.Uint32
	// failSafe is the share of a quota a key without a signal of the
	// period gets (Gateway.failSafe: the fleet's share, 0 while the
	// clock is off the aggregators').
	failSafe *atomic.Uint32
}

type stageRoute struct {
	apiID, stage string
	prefix       string
	root         *node
	nRoutes      int
	bucket       bucket
	state        *atomic.Int64
	proxy        *httputil.ReverseProxy // the net/http plane's
	lean         *leanRoute             // the fasthttp plane's
	slot         uint8                  // its counters in the gateway's metrics (metrics.go)
}

// planRT is a plan compiled against a table's routes. Keys refer to
// their plans by index, so a new planRT reaches every key of the plan
// without touching them.
type planRT struct {
	id        string
	idHeader  []string
	bucket    bucket
	quota     *quota
	overrides []bucket
	layout    *overrideLayout // the names of overrides, in their order
	policy    []string        // RateLimit-Policy value
	stages    []planStage     // the stages the plan covers
}

// planStage is one stage a plan covers.
type planStage struct {
	sr *stageRoute
	// methodBucket maps a method route index of the stage to a
	// per-method bucket (index into planRT.overrides), or -1.
	methodBucket []int
}

// overrideLayout names a plan's per-method buckets ("apiID:stage" +
// "/resource/METHOD"), sorted: the position of each in planRT.overrides
// and in a key's methodTats. A plan keeps its layout (the same pointer)
// as long as the names stay the same.
type overrideLayout struct{ names []string }

func (l *overrideLayout) index(name string) int {
	i, ok := slices.BinarySearch(l.names, name)
	if !ok {
		return -1
	}
	return i
}

// keyPlanState holds the counters of one key under one plan. It lives as
// long as the key is in the plan: successive entries of the key share it.
type keyPlanState struct {
	tat   atomic.Int64
	quota atomic.Uint64 // what decides: period and count (or leased count, see ApplySignal)
	// local counts the requests this enforcer admitted in the period
	// (packed like quota); signals never change it.
	local atomic.Uint64
	// asOf is the AsOf of the last signal applied, so that an older one,
	// arriving late, is not applied over it.
	asOf atomic.Int64
	// methods holds the per-method buckets' tats, laid out as the plan's
	// overrides: made on the first request that needs one, and laid out
	// again (keeping those whose names remain) when a request finds the
	// plan's layout changed.
	methods atomic.Pointer[methodTats]
	// share is this enforcer's share of the key's throttles under the
	// plan and until when it holds (rate.go); 0: the fleet's default.
	share atomic.Uint64
}

type methodTats struct {
	layout *overrideLayout
	tat    []atomic.Int64
}

// methodTat returns the tat of the plan's per-method bucket i.
func (st *keyPlanState) methodTat(p *planRT, i int) *atomic.Int64 {
	for {
		m := st.methods.Load()
		if m != nil && m.layout == p.layout {
			return &m.tat[i]
		}
		n := &methodTats{layout: p.layout, tat: make([]atomic.Int64, len(p.layout.names))}
		if m != nil {
			for j, name := range m.layout.names {
				if k := p.layout.index(name); k >= 0 {
					n.tat[k].Store(m.tat[j].Load())
				}
			}
		}
		if st.methods.CompareAndSwap(m, n) {
			return &n.tat[i]
		}
	}
}

// planAt returns the plan with index i, or nil. An entry may be newer
// than the table a request loaded, and name a plan index the table does
// not have yet: such a binding does not apply.
func (t *table) planAt(i int32) *planRT {
	if int(i) >= len(t.plans) {
		return nil
	}
	return t.plans[i]
}

// bind finds the key's plan for stage sr.
func (t *table) bind(e *keyEntry, sr *stageRoute) (*planRT, *keyPlanState, []int) {
	for i := range e.plans {
		b := &e.plans[i]
		p := t.planAt(b.plan)
		if p == nil {
			continue
		}
		for j := range p.stages {
			if p.stages[j].sr == sr {
				return p, b.state, p.stages[j].methodBucket
			}
		}
	}
	return nil, nil, nil
}

// keyPlan returns the counters of a key under a plan and the plan, or
// nils when the key is not in the plan.
func (t *table) keyPlan(keyID, planID string) (*keyPlanState, *planRT) {
	e := t.keys.entry(keyID)
	if e == nil {
		return nil, nil
	}
	for _, b := range e.plans {
		if p := t.planAt(b.plan); p != nil && p.id == planID {
			return b.state, p
		}
	}
	return nil, nil
}

func throttleBucket(t *catalog.Throttle) bucket {
	if t == nil {
		return unlimitedBucket
	}
	return newBucket(t.RateLimit, t.BurstLimit)
}

// compileRoutes builds the routes of a table: its stages and the
// gateway-wide settings. global returns the shared counter of a bucket
// by name (so that counters survive new tables); newProxy sets the
// proxies of a stage.
func compileRoutes(gw catalog.Gateway, apis []catalog.API, global func(string) *atomic.Int64, newProxy func(apiID string, s catalog.Stage, sr *stageRoute) error) (*table, error) {
	t := &table{
		byHost:   map[string][]*stageRoute{},
		stages:   map[string]*stageRoute{},
		gateway:  throttleBucket(gw.Throttle),
		gwState:  global("gateway"),
		notFound: 403,
		headers:  gw.RateLimitHeadersOn(),
	}
	if gw.UnknownRouteStatus == 404 {
		t.notFound = 404
	}
	for _, a := range apis {
		for _, s := range a.Stages {
			sr := &stageRoute{
				apiID: a.ID, stage: s.Name, prefix: s.Prefix(), root: &node{},
				bucket: throttleBucket(s.Throttle),
				state:  global("stage/" + a.ID + ":" + s.Name),
			}
			for _, r := range a.Resources {
				n := sr.root.insert(r.Path)
				for _, m := range slices.Sorted(maps.Keys(r.Methods)) {
					n.methods[methodIndex(m)] = &methodRoute{idx: sr.nRoutes, resource: r.Path, method: m, keyRequired: r.Methods[m].APIKeyRequired}
					sr.nRoutes++
				}
			}
			if err := newProxy(a.ID, s, sr); err != nil {
				return nil, err
			}
			t.stages[a.ID+":"+s.Name] = sr
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
		sort.SliceStable(l, func(i, j int) bool { return len(l[i].prefix) > len(l[j].prefix) })
	}
	byLongest(t.anyHost)
	for _, l := range t.byHost {
		byLongest(l)
	}
	return t, nil
}

// compilePlan builds the runtime of a plan against t's routes. prev is
// the plan's previous runtime, or nil: its override layout is kept when
// the names are the same, so that keys' per-method counters stay laid
// out.
func compilePlan(p *catalog.UsagePlan, t *table, prev *planRT) *planRT {
	rt := &planRT{id: p.ID, idHeader: []string{p.ID}, bucket: throttleBucket(p.Throttle),
		quota: newQuota(p.Quota, p.CreatedDate), policy: []string{policyHeader(*p)}}
	ths := map[string]catalog.Throttle{}
	for _, as := range p.APIStages {
		for k, th := range as.Throttle {
			ths[as.APIID+":"+as.Stage+k] = th
		}
	}
	names := slices.Sorted(maps.Keys(ths))
	for _, name := range names {
		th := ths[name]
		rt.overrides = append(rt.overrides, newBucket(th.RateLimit, th.BurstLimit))
	}
	if prev != nil && prev.id == p.ID && slices.Equal(prev.layout.names, names) {
		rt.layout = prev.layout
	} else {
		rt.layout = &overrideLayout{names: names}
	}
	for _, as := range p.APIStages {
		stage := as.APIID + ":" + as.Stage
		sr := t.stages[stage]
		if sr == nil {
			continue // validated catalogs name existing stages
		}
		mb := make([]int, sr.nRoutes)
		for i := range mb {
			mb[i] = -1
		}
		sr.root.each(func(m *methodRoute) {
			mb[m.idx] = rt.layout.index(stage + m.resource + "/" + m.method)
		})
		rt.stages = append(rt.stages, planStage{sr: sr, methodBucket: mb})
	}
	return rt
}

// newEntry builds the entry of a key; planIndex gives the index of a plan
// by id (false if there is none). The key keeps the counters old (its
// previous entry, or nil) had for the plans it stays in. It returns nil
// for a key without a valid value hash (validated catalogs always carry
// one).
func newEntry(k *catalog.APIKey, old *keyEntry, planIndex func(string) (int32, bool)) *keyEntry {
	var h [32]byte
	if len(k.ValueHash) != 64 {
		return nil
	}
	if _, err := hex.Decode(h[:], []byte(k.ValueHash)); err != nil {
		return nil
	}
	e := &keyEntry{enabled: k.Enabled, expires: k.ExpiresAt(), id: [1]string{k.ID}}
	e.setHash(h)
	if len(k.UsagePlans) <= 1 {
		e.plans = e.one[:0]
	} else {
		e.plans = make([]binding, 0, len(k.UsagePlans))
	}
	for _, pid := range k.UsagePlans {
		i, ok := planIndex(pid)
		if !ok {
			continue
		}
		var st *keyPlanState
		if old != nil {
			for _, b := range old.plans {
				if b.plan == i {
					st = b.state
					break
				}
			}
		}
		if st == nil {
			st = new(keyPlanState)
		}
		e.plans = append(e.plans, binding{plan: i, state: st})
	}
	return e
}

// newPreviousEntry builds the entry of the previous value of a key in a
// rotation (catalog.APIKey.PreviousValueHash), from e, the entry of its
// current value: the same key, plans and counters (the plans slice
// itself, so the same keyPlanState pointers: either value takes the
// key's tokens and quota), its own hash and fingerprint, expiring when
// the grace ends or when the key does, whichever comes first. It returns
// nil for a key without a previous value (or without a valid hash of
// one).
func newPreviousEntry(k *catalog.APIKey, e *keyEntry) *keyEntry {
	var h [32]byte
	if len(k.PreviousValueHash) != 64 {
		return nil
	}
	if _, err := hex.Decode(h[:], []byte(k.PreviousValueHash)); err != nil || h == e.hash {
		return nil
	}
	expires := k.PreviousValueUntil
	if e.expires != 0 && e.expires < expires {
		expires = e.expires
	}
	// Never 0, which would mean never: validated catalogs give a grace
	// an end after 1970.
	pe := &keyEntry{enabled: e.enabled, expires: max(expires, 1), id: e.id, plans: e.plans}
	pe.setHash(h)
	return pe
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
