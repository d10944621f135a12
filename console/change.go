package console

import (
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"
)

// A change is two steps. GET /ui/confirm shows what will happen, in
// words, with a form that holds the change and the session's CSRF
// token; POST /ui/change makes it through the admin API, as the
// signed-in user, and goes back to the key (or, refused, shows the
// API's error on the confirmation page).

// op is one change the console makes: the fields it takes (from the
// confirmation's query, then from the form) and what it does.
type op struct {
	// describe checks the fields and says what the change will do.
	describe func(f url.Values) (string, error)
	// do makes it; it returns where to go next, or a page to show.
	do func(s *server, w http.ResponseWriter, r *http.Request, a api, f url.Values) (string, error)
	// fields are the ones the form carries.
	fields []string
}

var ops = map[string]op{
	"enable":  {fields: []string{"key"}, describe: describeEnable(true), do: doEnable(true)},
	"disable": {fields: []string{"key"}, describe: describeEnable(false), do: doEnable(false)},
	"move":    {fields: []string{"key", "from", "to"}, describe: describeMove, do: doMove},
	"grant":   {fields: []string{"key", "plan", "remaining", "was"}, describe: describeGrant, do: doGrant},
	"create":  {fields: []string{"name", "customer", "plan"}, describe: describeCreate, do: doCreate},
}

// need checks that the fields a change takes are there.
func need(f url.Values, names ...string) error {
	for _, n := range names {
		if strings.TrimSpace(f.Get(n)) == "" {
			return fmt.Errorf("%s: required", n)
		}
	}
	return nil
}

func describeEnable(on bool) func(url.Values) (string, error) {
	return func(f url.Values) (string, error) {
		if err := need(f, "key"); err != nil {
			return "", err
		}
		if on {
			return fmt.Sprintf("Enable API key %s: the gateway admits it again under its plans.", f.Get("key")), nil
		}
		return fmt.Sprintf("Disable API key %s: from now on the gateway answers 403 Forbidden to every request that carries it.", f.Get("key")), nil
	}
}

func doEnable(on bool) func(*server, http.ResponseWriter, *http.Request, api, url.Values) (string, error) {
	return func(_ *server, _ http.ResponseWriter, r *http.Request, a api, f url.Values) (string, error) {
		body := map[string]any{"patchOperations": []map[string]string{{"op": "replace", "path": "/enabled", "value": strconv.FormatBool(on)}}}
		if err := a.do(r.Context(), http.MethodPatch, "/apikeys/"+url.PathEscape(f.Get("key")), body, nil); err != nil {
			return "", err
		}
		done := "disabled"
		if on {
			done = "enabled"
		}
		return keyPage(f.Get("key"), done), nil
	}
}

func keyPage(id, done string) string {
	return "/ui/keys/" + url.PathEscape(id) + "?done=" + done
}

func describeMove(f url.Values) (string, error) {
	if err := need(f, "key", "from", "to"); err != nil {
		return "", err
	}
	return fmt.Sprintf("Move API key %s from usage plan %s to usage plan %s, in one change: its throttle and quota become the new plan's at once.",
		f.Get("key"), f.Get("from"), f.Get("to")), nil
}

func doMove(_ *server, _ http.ResponseWriter, r *http.Request, a api, f url.Values) (string, error) {
	body := map[string]string{"fromUsagePlanId": f.Get("from"), "toUsagePlanId": f.Get("to")}
	if err := a.do(r.Context(), http.MethodPost, "/v1/apikeys/"+url.PathEscape(f.Get("key"))+"/move", body, nil); err != nil {
		return "", err
	}
	return keyPage(f.Get("key"), "moved"), nil
}

func describeGrant(f url.Values) (string, error) {
	if err := need(f, "key", "plan", "remaining"); err != nil {
		return "", err
	}
	n, err := strconv.ParseInt(strings.TrimSpace(f.Get("remaining")), 10, 64)
	if err != nil || n < 0 {
		return "", fmt.Errorf("remaining: %q is not a whole number of requests, 0 or more", f.Get("remaining"))
	}
	was := ""
	if w := f.Get("was"); w != "" {
		was = " (it is " + w + " now)"
	}
	return fmt.Sprintf("Set the quota API key %s has left this period under usage plan %s to %d requests%s (UpdateUsage).",
		f.Get("key"), f.Get("plan"), n, was), nil
}

func doGrant(_ *server, _ http.ResponseWriter, r *http.Request, a api, f url.Values) (string, error) {
	body := map[string]any{"patchOperations": []map[string]string{{"op": "replace", "path": "/remaining", "value": strings.TrimSpace(f.Get("remaining"))}}}
	if err := a.do(r.Context(), http.MethodPatch, "/usageplans/"+url.PathEscape(f.Get("plan"))+"/keys/"+url.PathEscape(f.Get("key"))+"/usage", body, nil); err != nil {
		return "", err
	}
	return keyPage(f.Get("key"), "granted"), nil
}

func describeCreate(f url.Values) (string, error) {
	if err := need(f, "name"); err != nil {
		return "", err
	}
	d := fmt.Sprintf("Create an enabled API key named %q", f.Get("name"))
	if c := f.Get("customer"); c != "" {
		d += fmt.Sprintf(" for customer %q", c)
	}
	if p := f.Get("plan"); p != "" {
		d += " in usage plan " + p
	}
	return d + ". Its value is shown once, on the next page.", nil
}

// doCreate creates the key and adds it to the plan, then shows the value:
// the one time it is shown (the gateway keeps only its hash).
func doCreate(s *server, w http.ResponseWriter, r *http.Request, a api, f url.Values) (string, error) {
	var k keyJSON
	in := map[string]any{"name": f.Get("name"), "enabled": true, "customerId": f.Get("customer")}
	if err := a.do(r.Context(), http.MethodPost, "/apikeys", in, &k); err != nil {
		return "", err
	}
	data := map[string]any{"Key": k}
	if p := f.Get("plan"); p != "" {
		if err := a.do(r.Context(), http.MethodPost, "/usageplans/"+url.PathEscape(p)+"/keys", map[string]string{"keyId": k.ID, "keyType": "API_KEY"}, nil); err != nil {
			data["PlanError"] = err.Error()
		} else {
			data["Plan"] = p
		}
	}
	s.render(w, r, http.StatusCreated, "created", nil, data)
	return "", nil
}

func (s *server) confirm(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	name := q.Get("op")
	o, ok := ops[name]
	if !ok {
		s.render(w, r, http.StatusBadRequest, "error", nil, map[string]any{"Message": fmt.Sprintf("op: %q is not a change the console makes", name)})
		return
	}
	s.showConfirm(w, r, http.StatusOK, name, o, q, nil)
}

func (s *server) showConfirm(w http.ResponseWriter, r *http.Request, status int, name string, o op, f url.Values, failed error) {
	// Back to the key, else to the page the form was on if it is one of
	// the console's, else to the overview: never off the console.
	data := map[string]any{"Op": name, "Back": "/ui/"}
	if ref, err := url.Parse(r.Referer()); err == nil && ref.Host == r.Host && strings.HasPrefix(ref.Path, "/ui/") {
		data["Back"] = ref.Path
	}
	if k := f.Get("key"); k != "" {
		data["Back"] = "/ui/keys/" + url.PathEscape(k)
	}
	var fields []struct{ Name, Value string }
	for _, n := range o.fields {
		fields = append(fields, struct{ Name, Value string }{n, f.Get(n)})
	}
	data["Fields"] = fields
	what, err := o.describe(f)
	if err != nil {
		data["Error"] = err.Error()
		s.render(w, r, http.StatusBadRequest, "confirm", nil, data)
		return
	}
	data["What"] = what
	if failed != nil {
		data["Error"] = failed.Error()
	}
	s.render(w, r, status, "confirm", nil, data)
}

func (s *server) change(w http.ResponseWriter, r *http.Request) {
	f := r.PostForm
	name := f.Get("op")
	o, ok := ops[name]
	if !ok {
		s.render(w, r, http.StatusBadRequest, "error", nil, map[string]any{"Message": fmt.Sprintf("op: %q is not a change the console makes", name)})
		return
	}
	if _, err := o.describe(f); err != nil {
		s.showConfirm(w, r, http.StatusBadRequest, name, o, f, nil)
		return
	}
	next, err := o.do(s, w, r, s.api(r), f)
	if err != nil {
		status := http.StatusInternalServerError
		var ae *apiError
		if errors.As(err, &ae) {
			status = ae.Status
		}
		s.showConfirm(w, r, status, name, o, f, err)
		return
	}
	if next != "" {
		http.Redirect(w, r, next, http.StatusSeeOther)
	}
}
