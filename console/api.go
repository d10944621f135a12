package console

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"time"

	"github.com/tollgate/tollgate/catalog"
)

// api reads and changes through the admin API's own routes (Config.Call):
// what the console shows is what the API answers, and what it changes
// is validated, audited and refused exactly as over the network.
type api struct {
	call  func(ctx context.Context, actor, method, target string, body []byte) (int, http.Header, []byte)
	actor string
}

// apiError is a refusal of the API: its status and message, shown as
// the API wrote them.
type apiError struct {
	Status  int
	Type    string
	Message string
}

func (e *apiError) Error() string {
	if e.Type != "" {
		return fmt.Sprintf("%s (%d): %s", e.Type, e.Status, e.Message)
	}
	return fmt.Sprintf("%d: %s", e.Status, e.Message)
}

// do makes one request and decodes a 2xx answer into out (nil: ignored).
func (a api) do(ctx context.Context, method, target string, in, out any) error {
	var body []byte
	if in != nil {
		var err error
		if body, err = json.Marshal(in); err != nil {
			return err
		}
	}
	status, hdr, resp := a.call(ctx, a.actor, method, target, body)
	if status/100 != 2 {
		e := &apiError{Status: status, Type: hdr.Get("X-Amzn-Errortype")}
		var aws struct {
			Message string `json:"message"`
		}
		if json.Unmarshal(resp, &aws) == nil && aws.Message != "" {
			e.Message = aws.Message
		} else {
			e.Message = string(resp)
		}
		return e
	}
	if out == nil || len(resp) == 0 {
		return nil
	}
	if err := json.Unmarshal(resp, out); err != nil {
		return fmt.Errorf("%s %s: decode the answer: %w", method, target, err)
	}
	return nil
}

// raw makes one GET and returns the body as the API wrote it (the
// billing CSV).
func (a api) raw(ctx context.Context, target string) ([]byte, error) {
	status, hdr, resp := a.call(ctx, a.actor, http.MethodGet, target, nil)
	if status/100 != 2 {
		return nil, &apiError{Status: status, Type: hdr.Get("X-Amzn-Errortype"), Message: string(resp)}
	}
	return resp, nil
}

// The API's shapes the console reads.

type keyJSON struct {
	ID          string            `json:"id"`
	Value       string            `json:"value"`
	Name        string            `json:"name"`
	CustomerID  string            `json:"customerId"`
	Description string            `json:"description"`
	Enabled     bool              `json:"enabled"`
	CreatedDate int64             `json:"createdDate"`
	Tags        map[string]string `json:"tags"`
	ExpiresAt   string            `json:"expiresAt"`
	// The value's fingerprint, and during a rotation's grace the
	// previous value's and when it stops (GetApiKey's).
	ValueFingerprint         string `json:"valueFingerprint"`
	PreviousValueFingerprint string `json:"previousValueFingerprint"`
	PreviousValueExpiresAt   string `json:"previousValueExpiresAt"`
}

type planJSON struct {
	ID          string             `json:"id"`
	Name        string             `json:"name"`
	Description string             `json:"description"`
	APIStages   []catalog.APIStage `json:"apiStages"`
	Throttle    *catalog.Throttle  `json:"throttle"`
	Quota       *catalog.Quota     `json:"quota"`
}

type page[T any] struct {
	Position string `json:"position"`
	Item     []T    `json:"item"`
}

// usageJSON is GetUsage's answer: per key, per day, [used, remaining].
type usageJSON struct {
	Values   map[string][][2]int64 `json:"values"`
	Position string                `json:"position"`
}

// reportJSON is /v1/usage's answer with group_by=decision.
type reportJSON struct {
	Rows []struct {
		Time     time.Time `json:"time"`
		Decision string    `json:"decision"`
		Requests int64     `json:"requests"`
	} `json:"rows"`
}

type topJSON struct {
	Rows []consumer `json:"rows"`
}

type consumer struct {
	Key        string `json:"key"`
	Name       string `json:"name"`
	CustomerID string `json:"customer_id"`
	Plan       string `json:"plan"`
	Admitted   int64  `json:"admitted"`
	Throttled  int64  `json:"throttled"`
	Limited    int64  `json:"quota_exceeded"`
}

type billingJSON struct {
	Month string       `json:"month"`
	Rows  []billingRow `json:"rows"`
}

type billingRow struct {
	KeyID       string `json:"key_id"`
	KeyName     string `json:"key_name"`
	CustomerID  string `json:"customer_id"`
	PlanID      string `json:"plan_id"`
	PlanName    string `json:"plan_name"`
	Admitted    int64  `json:"requests_admitted"`
	QuotaLimit  int64  `json:"quota_limit"`
	QuotaPeriod string `json:"quota_period"`
	Overage     int64  `json:"overage"`
	Throttled   int64  `json:"throttled"`
	Rejected    int64  `json:"rejected"`
}

func rfc(t time.Time) string { return t.UTC().Format(time.RFC3339) }

// report is /v1/usage by decision over [from, to).
func (a api) report(ctx context.Context, from, to time.Time, granularity string, filters url.Values) (reportJSON, error) {
	q := url.Values{"from": {rfc(from)}, "to": {rfc(to)}, "granularity": {granularity}, "group_by": {"decision"}}
	for k, v := range filters {
		q[k] = v
	}
	var out reportJSON
	err := a.do(ctx, http.MethodGet, "/v1/usage?"+q.Encode(), nil, &out)
	return out, err
}

// top is /v1/usage/top over [from, to).
func (a api) top(ctx context.Context, from, to time.Time, plan string, limit int) ([]consumer, error) {
	q := url.Values{"from": {rfc(from)}, "to": {rfc(to)}, "limit": {fmt.Sprint(limit)}}
	if plan != "" {
		q.Set("plan", plan)
	}
	var out topJSON
	err := a.do(ctx, http.MethodGet, "/v1/usage/top?"+q.Encode(), nil, &out)
	return out.Rows, err
}

// getUsage is GetUsage for one plan, one key or a page of its keys.
func (a api) getUsage(ctx context.Context, plan, key string, from, to time.Time, position string, limit int) (usageJSON, error) {
	q := url.Values{"startDate": {from.UTC().Format("2006-01-02")}, "endDate": {to.UTC().Format("2006-01-02")}}
	if key != "" {
		q.Set("keyId", key)
	}
	if position != "" {
		q.Set("position", position)
	}
	if limit > 0 {
		q.Set("limit", fmt.Sprint(limit))
	}
	var out usageJSON
	err := a.do(ctx, http.MethodGet, "/usageplans/"+url.PathEscape(plan)+"/usage?"+q.Encode(), nil, &out)
	return out, err
}

func (a api) key(ctx context.Context, id string) (keyJSON, error) {
	var k keyJSON
	err := a.do(ctx, http.MethodGet, "/apikeys/"+url.PathEscape(id)+"?includeValue=true", nil, &k) // its first characters
	return k, err
}

func (a api) plan(ctx context.Context, id string) (planJSON, error) {
	var p planJSON
	err := a.do(ctx, http.MethodGet, "/usageplans/"+url.PathEscape(id), nil, &p)
	return p, err
}

// plansOf lists a key's plans (GetUsagePlans with keyId); every plan
// when key is "", up to limit.
func (a api) plansOf(ctx context.Context, key string, position string, limit int) (page[planJSON], error) {
	q := url.Values{"limit": {fmt.Sprint(limit)}}
	if key != "" {
		q.Set("keyId", key)
	}
	if position != "" {
		q.Set("position", position)
	}
	var out page[planJSON]
	err := a.do(ctx, http.MethodGet, "/usageplans?"+q.Encode(), nil, &out)
	return out, err
}
