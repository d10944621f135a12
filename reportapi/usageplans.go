package reportapi

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/go-chi/chi/v5"

	"github.com/tollgate/tollgate/catalog"
	"github.com/tollgate/tollgate/internal/jsonw"
	"github.com/tollgate/tollgate/internal/utc"
	"github.com/tollgate/tollgate/usage"
)

// UsageStore reads the daily usage rollup and the quota adjustments, per
// (day, plan, key): usage/sqlitestore.Store or usage/chstore.Store.
type UsageStore interface {
	Daily(ctx context.Context, f usage.Filter) ([]usage.DayCount, error)
}

// usagePlanJSON is the UsagePlan shape of AWS API Gateway 2015-07-09. The
// catalog's types carry the same JSON names for throttle, quota and
// apiStages.
type usagePlanJSON struct {
	ID          string             `json:"id"`
	Name        string             `json:"name"`
	Description string             `json:"description,omitempty"`
	APIStages   []catalog.APIStage `json:"apiStages"`
	Throttle    *catalog.Throttle  `json:"throttle,omitempty"`
	Quota       *catalog.Quota     `json:"quota,omitempty"`
	Tags        map[string]string  `json:"tags,omitempty"`
}

func planJSON(p *catalog.UsagePlan) usagePlanJSON {
	st := p.APIStages
	if st == nil {
		st = []catalog.APIStage{}
	}
	return usagePlanJSON{ID: p.ID, Name: p.Name, Description: p.Description, APIStages: st, Throttle: p.Throttle, Quota: p.Quota, Tags: p.Tags}
}

type usagePlanKeyJSON struct {
	ID    string `json:"id"`
	Type  string `json:"type"`
	Value string `json:"value"`
	Name  string `json:"name"`
}

func planKeyJSON(k *catalog.APIKey) usagePlanKeyJSON {
	return usagePlanKeyJSON{ID: k.ID, Type: "API_KEY", Value: masked(k), Name: k.Name}
}

var (
	errPlanNotFound    = &apiError{status: 404, errType: "NotFoundException", msg: "Invalid Usage Plan ID specified"}
	errPlanKeyNotFound = &apiError{status: 404, errType: "NotFoundException", msg: "Invalid API Key identifier specified"}
)

// ErrNotSupported is what a QuotaAdjuster wraps when this deployment
// cannot carry out UpdateUsage (501); the message says what would.
var ErrNotSupported = errors.New("not supported")

// QuotaAdjuster sets what a key has left of its quota under a plan in the
// current period (UpdateUsage): usage.QuotaUpdate. Its rule's errors
// (catalog.ErrNoSuchKeyPlan, ErrNoQuota, ErrRemainingOutOfRange) answer
// 404 and 400.
type QuotaAdjuster interface {
	SetRemaining(ctx context.Context, planID, keyID string, remaining int64) error
}

type usagePlans struct {
	cat    CatalogStore
	usage  UsageStore
	quotas QuotaAdjuster
	now    func() time.Time
}

func (u *usagePlans) routes(r chi.Router) {
	r.Post("/usageplans", u.create)
	r.Get("/usageplans", u.list)
	r.Get("/usageplans/{id}", u.get)
	r.Patch("/usageplans/{id}", u.update)
	r.Delete("/usageplans/{id}", u.delete)
	r.Post("/usageplans/{id}/keys", u.addKey)
	r.Get("/usageplans/{id}/keys", u.listKeys)
	r.Get("/usageplans/{id}/keys/{keyId}", u.getKey)
	r.Delete("/usageplans/{id}/keys/{keyId}", u.removeKey)
	r.Post("/v1/apikeys/{id}/move", u.moveKey)
	if u.usage != nil {
		r.Get("/usageplans/{id}/usage", u.getUsage)
	}
	if u.usage != nil && u.quotas != nil {
		r.Patch("/usageplans/{id}/keys/{keyId}/usage", u.updateUsage)
	}
}

func (u *usagePlans) create(w http.ResponseWriter, r *http.Request) {
	var in usagePlanJSON
	if err := decodeBody(r, &in); err != nil {
		err.write(w)
		return
	}
	if in.Name == "" {
		badRequest("Invalid usage plan name specified: name is required").write(w)
		return
	}
	var created catalog.UsagePlan
	if !change(w, r, u.cat, func(tx *catalog.Tx) error {
		if tx.PlanByName(in.Name) != nil {
			return &apiError{status: 409, errType: "ConflictException", msg: fmt.Sprintf("A usage plan named %q already exists; tollgate requires unique names", in.Name)}
		}
		created = catalog.UsagePlan{ID: newKeyID(tx), Name: in.Name, Description: in.Description, APIStages: in.APIStages,
			Throttle: in.Throttle, Quota: in.Quota, Tags: in.Tags, CreatedDate: u.now().Unix()}
		if created.APIStages == nil {
			created.APIStages = []catalog.APIStage{}
		}
		tx.PutPlan(created)
		return nil
	}) {
		return
	}
	writeJSON(w, http.StatusCreated, planJSON(&created))
}

func (u *usagePlans) list(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	limit, perr := pageLimit(q.Get("limit"))
	if perr != nil {
		perr.write(w)
		return
	}
	c := u.cat.State()
	walk := c.Plans
	scope := "usageplans"
	if id := q.Get("keyId"); id != "" {
		k := c.Key(id)
		if k == nil {
			errPlanKeyNotFound.write(w)
			return
		}
		scope += "?keyId=" + id
		walk = func(after string, f func(*catalog.UsagePlan) bool) {
			for _, pid := range slices.Sorted(slices.Values(k.UsagePlans)) {
				if p := c.Plan(pid); p != nil && pid > after && !f(p) {
					return
				}
			}
		}
	}
	writeWalk(w, walk, func(p *catalog.UsagePlan) string { return p.ID }, planJSON, scope, q.Get("position"), limit)
}

func (u *usagePlans) get(w http.ResponseWriter, r *http.Request) {
	p := u.cat.State().Plan(urlParam(r, "id"))
	if p == nil {
		errPlanNotFound.write(w)
		return
	}
	writeJSON(w, http.StatusOK, planJSON(p))
}

func (u *usagePlans) delete(w http.ResponseWriter, r *http.Request) {
	id := urlParam(r, "id")
	if !change(w, r, u.cat, func(tx *catalog.Tx) error {
		if tx.Plan(id) == nil {
			return errPlanNotFound
		}
		// The plan's keys leave it with it (O(keys of the plan)).
		var keys []catalog.APIKey
		tx.PlanKeys(id, "", func(k *catalog.APIKey) bool { keys = append(keys, *k); return true })
		for _, k := range keys {
			k.UsagePlans = slices.DeleteFunc(slices.Clone(k.UsagePlans), func(p string) bool { return p == id })
			tx.PutKey(k)
		}
		tx.DeletePlan(id)
		return nil
	}) {
		return
	}
	w.WriteHeader(http.StatusAccepted)
}

// planPatchPaths are the paths UpdateUsagePlan accepts, for error messages.
const planPatchPaths = "/name, /description, /throttle/rateLimit, /throttle/burstLimit, /quota/limit, /quota/period, /quota/offset, " +
	"/apiStages (add or remove, value apiId:stage), /apiStages/{apiId}:{stage}/throttle/{resource with / as ~1}/{METHOD}/rateLimit or /burstLimit"

func (u *usagePlans) update(w http.ResponseWriter, r *http.Request) {
	var in struct {
		PatchOperations []patchOp `json:"patchOperations"`
	}
	if err := decodeBody(r, &in); err != nil {
		err.write(w)
		return
	}
	id := urlParam(r, "id")
	var updated catalog.UsagePlan
	if !change(w, r, u.cat, func(tx *catalog.Tx) error {
		cur := tx.Plan(id)
		if cur == nil {
			return errPlanNotFound
		}
		p := cur.Clone() // patchPlan writes into the throttle, quota and stages
		for i, op := range in.PatchOperations {
			if err := patchPlan(&p, op); err != nil {
				return badRequest(fmt.Sprintf("patchOperations[%d] (%s %s): %s", i, op.Op, op.Path, err.msg))
			}
		}
		tx.PutPlan(p)
		updated = p
		return nil
	}) {
		return
	}
	writeJSON(w, http.StatusOK, planJSON(&updated))
}

// patchPlan applies one patch operation; the result is validated with the
// whole catalog afterwards.
func patchPlan(p *catalog.UsagePlan, op patchOp) *apiError {
	throttle := func() *catalog.Throttle {
		if p.Throttle == nil {
			p.Throttle = &catalog.Throttle{}
		}
		return p.Throttle
	}
	quota := func() *catalog.Quota {
		if p.Quota == nil {
			p.Quota = &catalog.Quota{Period: catalog.Day}
		}
		return p.Quota
	}
	switch {
	case op.Op == "replace" && op.Path == "/name":
		if op.Value == "" {
			return badRequest("the name must not be empty")
		}
		p.Name = op.Value
	case op.Op == "replace" && op.Path == "/description":
		p.Description = op.Value
	case op.Op == "replace" && op.Path == "/throttle/rateLimit":
		return parseRate(op.Value, &throttle().RateLimit)
	case op.Op == "replace" && op.Path == "/throttle/burstLimit":
		return parseCount(op.Value, &throttle().BurstLimit)
	case op.Op == "remove" && op.Path == "/throttle":
		p.Throttle = nil
	case op.Op == "replace" && op.Path == "/quota/limit":
		return parseCount(op.Value, &quota().Limit)
	case op.Op == "replace" && op.Path == "/quota/offset":
		return parseCount(op.Value, &quota().Offset)
	case op.Op == "replace" && op.Path == "/quota/period":
		quota().Period = catalog.Period(op.Value)
	case op.Op == "remove" && op.Path == "/quota":
		p.Quota = nil
	case op.Path == "/apiStages" && (op.Op == "add" || op.Op == "remove"):
		apiID, stage, ok := strings.Cut(op.Value, ":")
		if !ok || apiID == "" || stage == "" {
			return badRequest(fmt.Sprintf("value %q must be apiId:stage", op.Value))
		}
		i := slices.IndexFunc(p.APIStages, func(s catalog.APIStage) bool { return s.APIID == apiID && s.Stage == stage })
		switch {
		case op.Op == "add" && i >= 0:
			return badRequest(fmt.Sprintf("stage %s is already in the plan", op.Value))
		case op.Op == "add":
			p.APIStages = append(p.APIStages, catalog.APIStage{APIID: apiID, Stage: stage})
		case i < 0:
			return badRequest(fmt.Sprintf("stage %s is not in the plan", op.Value))
		default:
			p.APIStages = slices.Delete(p.APIStages, i, i+1)
		}
	case strings.HasPrefix(op.Path, "/apiStages/"):
		return patchMethodThrottle(p, op)
	default:
		return badRequest("unsupported operation; the paths are " + planPatchPaths)
	}
	return nil
}

// patchMethodThrottle handles
// /apiStages/{apiId}:{stage}/throttle/{resource with / as ~1}/{METHOD}[/rateLimit|/burstLimit].
func patchMethodThrottle(p *catalog.UsagePlan, op patchOp) *apiError {
	rest := strings.TrimPrefix(op.Path, "/apiStages/")
	stageRef, rest, _ := strings.Cut(rest, "/throttle/")
	apiID, stage, ok := strings.Cut(stageRef, ":")
	parts := strings.Split(rest, "/")
	if !ok || len(parts) < 2 || len(parts) > 3 {
		return badRequest("the path must be /apiStages/{apiId}:{stage}/throttle/{resource}/{METHOD}[/rateLimit|/burstLimit], with / in the resource written ~1")
	}
	i := slices.IndexFunc(p.APIStages, func(s catalog.APIStage) bool { return s.APIID == apiID && s.Stage == stage })
	if i < 0 {
		return badRequest(fmt.Sprintf("stage %s:%s is not in the plan", apiID, stage))
	}
	as := &p.APIStages[i]
	key := strings.ReplaceAll(strings.ReplaceAll(parts[0], "~1", "/"), "~0", "~") + "/" + parts[1]
	if !strings.HasPrefix(key, "/") {
		key = "/" + key
	}
	if len(parts) == 2 {
		if op.Op != "remove" {
			return badRequest("a method's throttle is set field by field: .../rateLimit and .../burstLimit")
		}
		if _, ok := as.Throttle[key]; !ok {
			return badRequest(fmt.Sprintf("there is no throttle for %s", key))
		}
		delete(as.Throttle, key)
		return nil
	}
	if op.Op != "replace" && op.Op != "add" {
		return badRequest("use replace (or add) to set a method's limit, remove on the method to drop it")
	}
	if as.Throttle == nil {
		as.Throttle = map[string]catalog.Throttle{}
	}
	t := as.Throttle[key]
	var perr *apiError
	switch parts[2] {
	case "rateLimit":
		perr = parseRate(op.Value, &t.RateLimit)
	case "burstLimit":
		perr = parseCount(op.Value, &t.BurstLimit)
	default:
		perr = badRequest(fmt.Sprintf("%q is not rateLimit or burstLimit", parts[2]))
	}
	if perr != nil {
		return perr
	}
	as.Throttle[key] = t
	return nil
}

func (u *usagePlans) addKey(w http.ResponseWriter, r *http.Request) {
	var in struct {
		KeyID   string `json:"keyId"`
		KeyType string `json:"keyType"`
	}
	if err := decodeBody(r, &in); err != nil {
		err.write(w)
		return
	}
	if in.KeyType != "API_KEY" {
		badRequest(fmt.Sprintf("keyType must be API_KEY, got %q", in.KeyType)).write(w)
		return
	}
	id := urlParam(r, "id")
	var key catalog.APIKey
	if !change(w, r, u.cat, func(tx *catalog.Tx) error {
		p := tx.Plan(id)
		if p == nil {
			return errPlanNotFound
		}
		cur := tx.Key(in.KeyID)
		if cur == nil {
			return errPlanKeyNotFound
		}
		k := *cur
		if slices.Contains(k.UsagePlans, id) {
			return &apiError{status: 409, errType: "ConflictException", msg: fmt.Sprintf("API Key %s is already in usage plan %s", k.ID, id)}
		}
		if err := stageConflict(tx, &k, p, ""); err != nil {
			return err
		}
		k.UsagePlans = append(slices.Clone(k.UsagePlans), id)
		tx.PutKey(k)
		key = k
		return nil
	}) {
		return
	}
	writeJSON(w, http.StatusCreated, planKeyJSON(&key))
}

// stageConflict is the 409 of key k joining plan p while another of its
// plans, other than leaving ("" for none), has one of p's API stages: a
// key has one plan per stage, or the gateway could not tell whose limits
// apply. Validation would refuse it too, as a 400 about the catalog;
// this names the conflict as AWS does. Nil when there is none.
func stageConflict(tx *catalog.Tx, k *catalog.APIKey, p *catalog.UsagePlan, leaving string) *apiError {
	for _, other := range k.UsagePlans {
		if other == leaving {
			continue
		}
		op := tx.Plan(other)
		if op == nil {
			continue
		}
		for _, a := range op.APIStages {
			for _, b := range p.APIStages {
				if a.APIID == b.APIID && a.Stage == b.Stage {
					return &apiError{status: 409, errType: "ConflictException", msg: fmt.Sprintf(
						"Usage Plan %s cannot be added because API Key %s cannot reference multiple Usage Plans with the same API Stage: %s:%s", p.ID, k.ID, a.APIID, a.Stage)}
				}
			}
		}
	}
	return nil
}

// moveKey moves a key from one usage plan to another in one change:
// POST /v1/apikeys/{id}/move, {"fromUsagePlanId", "toUsagePlanId"}.
// AWS has no such operation, and its two (CreateUsagePlanKey, then
// DeleteUsagePlanKey, or the other way round) cannot do it for plans of
// the same stage, the usual case (Free to Paid): the first is refused
// while the key is in the other plan, so the key must leave one plan
// before it joins the other, and the gateway answers its requests 403
// between the two. Here the gateway sees the key in from, then in to,
// never in neither nor both.
func (u *usagePlans) moveKey(w http.ResponseWriter, r *http.Request) {
	var in struct {
		From string `json:"fromUsagePlanId"`
		To   string `json:"toUsagePlanId"`
	}
	if err := decodeBody(r, &in); err != nil {
		err.write(w)
		return
	}
	switch {
	case in.From == "":
		badRequest("fromUsagePlanId is required").write(w)
		return
	case in.To == "":
		badRequest("toUsagePlanId is required").write(w)
		return
	case in.From == in.To:
		badRequest(fmt.Sprintf("toUsagePlanId is fromUsagePlanId (%s): the key would not move", in.To)).write(w)
		return
	}
	id := urlParam(r, "id")
	var key catalog.APIKey
	if !change(w, r, u.cat, func(tx *catalog.Tx) error {
		cur := tx.Key(id)
		if cur == nil {
			return errKeyNotFound
		}
		if tx.Plan(in.From) == nil {
			return &apiError{status: 404, errType: "NotFoundException", msg: fmt.Sprintf("Invalid Usage Plan ID specified: fromUsagePlanId %s", in.From)}
		}
		to := tx.Plan(in.To)
		if to == nil {
			return &apiError{status: 404, errType: "NotFoundException", msg: fmt.Sprintf("Invalid Usage Plan ID specified: toUsagePlanId %s", in.To)}
		}
		i := slices.Index(cur.UsagePlans, in.From)
		if i < 0 {
			return &apiError{status: 404, errType: "NotFoundException", msg: fmt.Sprintf("API Key %s is not in usage plan %s (fromUsagePlanId)", id, in.From)}
		}
		if slices.Contains(cur.UsagePlans, in.To) {
			return &apiError{status: 409, errType: "ConflictException", msg: fmt.Sprintf("API Key %s is already in usage plan %s (toUsagePlanId)", id, in.To)}
		}
		k := *cur
		if err := stageConflict(tx, &k, to, in.From); err != nil {
			return err
		}
		// In from's place: the audit shows one plan replaced by another.
		k.UsagePlans = slices.Clone(k.UsagePlans)
		k.UsagePlans[i] = in.To
		tx.PutKey(k)
		key = k
		return nil
	}) {
		return
	}
	writeJSON(w, http.StatusOK, planKeyJSON(&key))
}

func (u *usagePlans) listKeys(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	limit, perr := pageLimit(q.Get("limit"))
	if perr != nil {
		perr.write(w)
		return
	}
	c := u.cat.State()
	id := urlParam(r, "id")
	if c.Plan(id) == nil {
		errPlanNotFound.write(w)
		return
	}
	// By id through the membership index; a name filter skips the keys
	// whose name does not match (AWS's nameQuery on this list).
	name := q.Get("name")
	scope := "usageplans/" + id + "/keys"
	if name != "" {
		scope += "?name=" + name
	}
	walk := func(after string, f func(*catalog.APIKey) bool) {
		c.PlanKeys(id, after, func(k *catalog.APIKey) bool { return !strings.HasPrefix(k.Name, name) || f(k) })
	}
	writeWalk(w, walk, keyID, planKeyJSON, scope, q.Get("position"), limit)
}

func (u *usagePlans) getKey(w http.ResponseWriter, r *http.Request) {
	c := u.cat.State()
	id := urlParam(r, "id")
	if c.Plan(id) == nil {
		errPlanNotFound.write(w)
		return
	}
	k := c.Key(urlParam(r, "keyId"))
	if k == nil || !slices.Contains(k.UsagePlans, id) {
		errPlanKeyNotFound.write(w)
		return
	}
	writeJSON(w, http.StatusOK, planKeyJSON(k))
}

func (u *usagePlans) removeKey(w http.ResponseWriter, r *http.Request) {
	id, keyID := urlParam(r, "id"), urlParam(r, "keyId")
	if !change(w, r, u.cat, func(tx *catalog.Tx) error {
		if tx.Plan(id) == nil {
			return errPlanNotFound
		}
		cur := tx.Key(keyID)
		if cur == nil || !slices.Contains(cur.UsagePlans, id) {
			return errPlanKeyNotFound
		}
		k := *cur
		k.UsagePlans = slices.DeleteFunc(slices.Clone(k.UsagePlans), func(p string) bool { return p == id })
		tx.PutKey(k)
		return nil
	}) {
		return
	}
	w.WriteHeader(http.StatusAccepted)
}

// getUsage answers GetUsage: per key of the plan (or the one keyId), per
// UTC day from startDate to endDate, [used, remaining].
//
// What it holds is bounded by the page: at most 500 keys (limit) × 90
// days (usage.MaxGetUsageDays), plus the days before startDate in its
// quota period (at most 30). It reads the page's keys' rollups only and
// writes each key's values as they are computed.
func (u *usagePlans) getUsage(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	c := u.cat.State()
	p := c.Plan(urlParam(r, "id"))
	if p == nil {
		errPlanNotFound.write(w)
		return
	}
	from, to, err := usage.ParseRange("startDate", q.Get("startDate"), "endDate", q.Get("endDate"))
	if err != nil {
		badRequest(err.Error()).write(w)
		return
	}
	limit, perr := pageLimit(q.Get("limit"))
	if perr != nil {
		perr.write(w)
		return
	}
	scope := "usageplans/" + p.ID + "/usage"
	after, perr := decodePosition(scope, q.Get("position"))
	if perr != nil {
		perr.write(w)
		return
	}
	// The page's keys, through the membership index: O(page).
	var page []*catalog.APIKey
	next := ""
	if id := q.Get("keyId"); id != "" {
		k := c.Key(id)
		if k == nil || !slices.Contains(k.UsagePlans, p.ID) {
			errPlanKeyNotFound.write(w)
			return
		}
		if id > after {
			page = append(page, k)
		}
	} else {
		c.PlanKeys(p.ID, after, func(k *catalog.APIKey) bool {
			if len(page) == limit {
				next = encodePosition(scope, page[len(page)-1].ID)
				return false
			}
			page = append(page, k)
			return true
		})
	}
	ids := make([]string, len(page))
	for i, k := range page {
		ids[i] = k.ID
	}
	var rows []usage.DayCount
	if len(ids) > 0 {
		rows, err = u.usage.Daily(r.Context(), usage.Filter{FromDay: usage.PeriodStartDay(p, from), ToDay: to, PlanID: p.ID, KeyIDs: ids})
		if err != nil {
			internalError("read usage: ", err).write(w)
			return
		}
	}
	// Each key's rows together, in day order, for Values.
	slices.SortStableFunc(rows, func(a, b usage.DayCount) int { return strings.Compare(a.KeyID, b.KeyID) })
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusOK)
	bw := bufio.NewWriter(w)
	buf := []byte(`{"usagePlanId":`)
	buf = jsonw.AppendString(buf, p.ID)
	buf = append(buf, `,"startDate":`...)
	buf = jsonw.AppendString(buf, q.Get("startDate"))
	buf = append(buf, `,"endDate":`...)
	buf = jsonw.AppendString(buf, q.Get("endDate"))
	buf = append(buf, `,"values":{`...)
	for i, id := range ids {
		lo, _ := slices.BinarySearchFunc(rows, id, func(d usage.DayCount, id string) int { return strings.Compare(d.KeyID, id) })
		hi := lo
		for hi < len(rows) && rows[hi].KeyID == id {
			hi++
		}
		if i > 0 {
			buf = append(buf, ',')
		}
		buf = jsonw.AppendString(buf, id)
		buf = append(buf, ":["...)
		for j, v := range usage.Values(p, id, from, to, rows[lo:hi]) {
			if j > 0 {
				buf = append(buf, ',')
			}
			buf = append(buf, '[')
			buf = strconv.AppendInt(buf, v[0], 10)
			buf = append(buf, ',')
			buf = strconv.AppendInt(buf, v[1], 10)
			buf = append(buf, ']')
		}
		buf = append(buf, ']')
		if _, err := bw.Write(buf); err != nil {
			return // the client left
		}
		buf = buf[:0]
	}
	buf = append(buf, '}')
	if next != "" {
		buf = append(buf, `,"position":`...)
		buf = jsonw.AppendString(buf, next)
	}
	buf = append(buf, "}\n"...)
	bw.Write(buf)
	bw.Flush()
}

// updateUsage answers UpdateUsage: replace /remaining sets the quota the
// key has left in the current period. It answers with the key's usage of
// the current period's days, as AWS does.
func (u *usagePlans) updateUsage(w http.ResponseWriter, r *http.Request) {
	var in struct {
		PatchOperations []patchOp `json:"patchOperations"`
	}
	if err := decodeBody(r, &in); err != nil {
		err.write(w)
		return
	}
	c := u.cat.State()
	p := c.Plan(urlParam(r, "id"))
	if p == nil {
		errPlanNotFound.write(w)
		return
	}
	k := c.Key(urlParam(r, "keyId"))
	if k == nil || !slices.Contains(k.UsagePlans, p.ID) {
		errPlanKeyNotFound.write(w)
		return
	}
	if len(in.PatchOperations) != 1 || in.PatchOperations[0].Op != "replace" || in.PatchOperations[0].Path != "/remaining" {
		badRequest("patchOperations must be one replace of /remaining").write(w)
		return
	}
	remaining, err := strconv.ParseInt(in.PatchOperations[0].Value, 10, 64)
	if err != nil {
		badRequest(fmt.Sprintf("/remaining must be an integer, got %q", in.PatchOperations[0].Value)).write(w)
		return
	}
	if err := u.quotas.SetRemaining(r.Context(), p.ID, k.ID, remaining); err != nil {
		errorOf("update usage: ", err).write(w)
		return
	}
	now := u.now().UnixNano()
	start, _ := p.Quota.Period.Bounds(now)
	from, to := utc.Day(start), utc.Day(now)
	rows, err := u.usage.Daily(r.Context(), usage.Filter{FromDay: from, ToDay: to, PlanID: p.ID, KeyID: k.ID})
	if err != nil {
		internalError("read usage: ", err).write(w)
		return
	}
	writeJSON(w, http.StatusOK, usage.GetUsage{UsagePlanID: p.ID, StartDate: usage.FormatDay(from), EndDate: usage.FormatDay(to),
		Values: map[string][][2]int64{k.ID: usage.Values(p, k.ID, from, to, rows)}})
}

// parseRate sets *dst to a patch value that must be a number.
func parseRate(v string, dst *float64) *apiError {
	f, err := strconv.ParseFloat(v, 64)
	if err != nil {
		return badRequest(fmt.Sprintf("value %q is not a number", v))
	}
	*dst = f
	return nil
}

// parseCount sets *dst to a patch value that must be an integer.
func parseCount(v string, dst *int64) *apiError {
	n, err := strconv.ParseInt(v, 10, 64)
	if err != nil {
		return badRequest(fmt.Sprintf("value %q is not an integer", v))
	}
	*dst = n
	return nil
}

// NoQuotas is the QuotaAdjuster of a deployment that cannot carry out
// UpdateUsage: it answers 501 with the reason, which says what would.
type NoQuotas string

// SetRemaining refuses.
func (n NoQuotas) SetRemaining(context.Context, string, string, int64) error {
	return fmt.Errorf("%w: %s", ErrNotSupported, string(n))
}
