package catalog

import (
	"fmt"
	"maps"
	"net/url"
	"slices"
	"strings"
	"unicode"
	"unicode/utf8"
)

// Methods lists the HTTP methods a resource may declare; ANY matches every
// method not declared on its own, as in AWS.
var Methods = []string{"GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS", "ANY"}

// MaxBurst and MaxRate bound throttle settings so that bucket arithmetic
// in nanoseconds cannot overflow; MaxQuota bounds quota limits.
const (
	MaxBurst = 1 << 40
	MaxRate  = 1e9
	MinRate  = 1e-6
	// MaxQuota is the largest quota limit: counters keep 40 bits.
	MaxQuota = 1<<40 - 1
)

// Bounds on text fields, in characters. AWS documents those of tags (50
// per resource, keys of 1 to 128 characters, values of up to 256); names
// and descriptions have none documented, so these leave room for any
// sensible one while keeping every catalog copy, audit entry and config
// log record small.
const (
	MaxNameLen        = 1024 // names, ids and customer ids
	MaxDescriptionLen = 4096
	MaxTags           = 50
	MaxTagKeyLen      = 128
	MaxTagValueLen    = 256
)

// CheckName returns "" if s is an acceptable name (or id, or customer
// id): valid UTF-8, at most MaxNameLen characters, without control
// characters or bidirectional controls (which make a name display as
// another).
func CheckName(s string) string { return checkText(s, MaxNameLen, false) }

// CheckDescription returns "" if s is an acceptable description: as a
// name, but up to MaxDescriptionLen characters, and tabs and line breaks
// are allowed.
func CheckDescription(s string) string { return checkText(s, MaxDescriptionLen, true) }

func checkText(s string, maxLen int, multiline bool) string {
	n := 0
	for i, r := range s {
		n++
		switch {
		case r == utf8.RuneError && invalidAt(s, i):
			return fmt.Sprintf("is not valid UTF-8 (byte %d)", i+1)
		case multiline && (r == '\t' || r == '\n' || r == '\r'):
		case unicode.IsControl(r):
			return fmt.Sprintf("contains the control character %U at character %d", r, n)
		case r >= 0x202A && r <= 0x202E || r >= 0x2066 && r <= 0x2069:
			return fmt.Sprintf("contains the bidirectional control %U at character %d", r, n)
		}
	}
	if n > maxLen {
		return fmt.Sprintf("must be at most %d characters, got %d", maxLen, n)
	}
	return ""
}

// invalidAt reports whether s has an invalid byte at i (rather than a
// U+FFFD written out).
func invalidAt(s string, i int) bool {
	_, size := utf8.DecodeRuneInString(s[i:])
	return size == 1
}

// checkTags reports the problems of a resource's tags.
func checkTags(p *problems, kind, name, id string, tags map[string]string) {
	if len(tags) > MaxTags {
		p.add(kind, name, id, "tags", "at most %d, got %d", MaxTags, len(tags))
	}
	for _, k := range slices.Sorted(maps.Keys(tags)) {
		switch n := utf8.RuneCountInString(k); {
		case k == "":
			p.add(kind, name, id, "tags", "a key is empty")
			continue
		case n > MaxTagKeyLen:
			p.add(kind, name, id, "tags", "key of %d characters; at most %d", n, MaxTagKeyLen)
			continue
		}
		if msg := checkText(k, MaxTagKeyLen, false); msg != "" {
			p.add(kind, name, id, "tags", "key %q %s", k, msg)
			continue
		}
		if msg := checkText(tags[k], MaxTagValueLen, false); msg != "" {
			p.add(kind, name, id, fmt.Sprintf("tags[%q]", k), "%s", msg)
			continue
		}
		if k == ExpiresAtTag {
			if _, err := ParseExpiresAt(tags[k]); err != nil {
				p.add(kind, name, id, fmt.Sprintf("tags[%q]", k), "%s", err)
			}
		}
	}
}

// checkNames reports the problems of an entity's text fields, given as
// field name and value pairs; description is checked as a description,
// the others as names.
func checkNames(p *problems, kind, name, id string, fields ...string) {
	for i := 0; i+1 < len(fields); i += 2 {
		f, v := fields[i], fields[i+1]
		check := CheckName
		if f == "description" {
			check = CheckDescription
		}
		if msg := check(v); msg != "" {
			p.add(kind, name, id, f, "%s", msg)
		}
	}
}

// problems collects FieldErrors, labelling entities with their place in
// the source file when they came from one.
type problems struct {
	file *File
	list []*FieldError
	// places indexes the file's entities: kind → id (APIs) or name
	// (plans, keys) → index, built on the first problem.
	places map[string]map[string]int
}

// place returns the index in the file of an entity, or -1.
func (p *problems) place(kind, name, id string) int {
	if p.places == nil {
		p.places = map[string]map[string]int{"apis": {}, "usagePlans": {}, "apiKeys": {}}
		for i, a := range p.file.Catalog.APIs {
			p.places["apis"][a.ID] = i
		}
		for i, pl := range p.file.Catalog.UsagePlans {
			p.places["usagePlans"][pl.Name] = i
		}
		for i, k := range p.file.Catalog.APIKeys {
			p.places["apiKeys"][k.Name] = i
		}
	}
	v := name
	if kind == "apis" {
		v = id
	}
	if i, ok := p.places[kind][v]; ok {
		return i
	}
	return -1
}

// where labels an entity: its place in the file if it is there, else its
// name and id in the catalog.
func (p *problems) where(kind, name, id string) (entity string, line int) {
	if p.file != nil {
		idx := p.place(kind, name, id)
		if idx >= 0 {
			place := fmt.Sprintf("%s[%d]", kind, idx)
			return fmt.Sprintf("%s %q", place, shown(name)), p.file.Line(place)
		}
	}
	if kind == "gateway" {
		return "gateway", 0
	}
	return fmt.Sprintf("%s %q (id %s)", kind, shown(name), shown(id)), 0
}

// shown cuts a name for error messages: a name too long to be valid is
// not repeated whole.
func shown(name string) string {
	const most = 64
	if len(name) <= most {
		return name
	}
	i := most
	for i > 0 && !utf8.RuneStart(name[i]) {
		i--
	}
	return name[:i] + "…"
}

func (p *problems) add(kind, name, id, field, format string, args ...any) {
	e, line := p.where(kind, name, id)
	fe := &FieldError{Entity: e, Line: line, Field: field, Msg: fmt.Sprintf(format, args...)}
	if p.file != nil {
		fe.File = p.file.Name
	}
	p.list = append(p.list, fe)
}

// addAt reports a problem of the file's entity at index i.
func (p *problems) addAt(kind string, i int, name, field, format string, args ...any) {
	place := fmt.Sprintf("%s[%d]", kind, i)
	fe := &FieldError{Entity: fmt.Sprintf("%s %q", place, shown(name)), Field: field, Msg: fmt.Sprintf(format, args...)}
	if p.file != nil {
		fe.File, fe.Line = p.file.Name, p.file.Line(place)
	}
	p.list = append(p.list, fe)
}

func (p *problems) err() error {
	if len(p.list) == 0 {
		return nil
	}
	return &ValidationError{Problems: p.list}
}

// Validate checks a catalog's structure as a whole: references, unique
// names, ids and values, limits. src, when not nil, is the file the
// catalog was merged from, so errors name its places and lines. It does
// not apply the text rules (CheckName, CheckDescription, tags): those
// judge input, see ValidateChange.
func Validate(c *Catalog, src *File) error {
	p := &problems{file: src}
	validateStructure(p, c)
	return p.err()
}

// ValidateChange checks next as Validate does, and the text that the
// change from old to next brings in (names, ids, descriptions, customer
// ids, tags of new entities, and the fields a change alters) against the
// text rules. Text already stored is not judged again: a rule added in a
// later version must not make a stored catalog, or the fleet's config log,
// unusable (an embedded node would refuse to start, a fleet would drop the
// entity). Every way into the catalog (admin API, configuration file,
// import) goes through it.
func ValidateChange(old, next *Catalog, src *File) error {
	p := &problems{file: src}
	validateStructure(p, next)
	validateText(p, old, next)
	return p.err()
}

func validateStructure(p *problems, c *Catalog) {
	validateGateway(p, &c.Gateway)
	validateAPIs(p, c)
	validatePlans(p, c)
	validateKeys(p, c)
}

// validateText applies the text rules to what next adds or alters.
func validateText(p *problems, old, next *Catalog) {
	validateAPIText(p, old.APIs, next.APIs)
	plans := byID(old.UsagePlans, func(pl *UsagePlan) string { return pl.ID })
	for _, pl := range next.UsagePlans {
		var was *textFields
		if o := plans[pl.ID]; o != nil {
			was = &textFields{[]string{o.Name, o.Description}, o.Tags}
		}
		checkChanged(p, "usagePlans", pl.Name, pl.ID, was, pl.Tags, "name", pl.Name, "description", pl.Description)
	}
	keys := byID(old.APIKeys, func(k *APIKey) string { return k.ID })
	for _, k := range next.APIKeys {
		var was *textFields
		if o := keys[k.ID]; o != nil {
			was = &textFields{[]string{o.Name, o.Description, o.CustomerID}, o.Tags}
		}
		checkChanged(p, "apiKeys", k.Name, k.ID, was, k.Tags, "name", k.Name, "description", k.Description, "customerId", k.CustomerID)
	}
}

// validateAPIText applies the text rules to the APIs and stages that
// next adds or renames.
func validateAPIText(p *problems, old, next []API) {
	apis := byID(old, func(a *API) string { return a.ID })
	for _, a := range next {
		o := apis[a.ID]
		if o == nil || o.Name != a.Name {
			checkNames(p, "apis", a.Name, a.ID, "id", a.ID, "name", a.Name)
		}
		for i, s := range a.Stages {
			if o != nil && slices.ContainsFunc(o.Stages, func(os Stage) bool { return os.Name == s.Name }) {
				continue
			}
			if msg := CheckName(s.Name); msg != "" {
				p.add("apis", a.Name, a.ID, fmt.Sprintf("stages[%d].name", i), "%s", msg)
			}
		}
	}
}

// textFields are an entity's stored text: its field values in the order
// checkChanged is given them, and its tags.
type textFields struct {
	values []string
	tags   map[string]string
}

// checkChanged applies the text rules to the fields (name and value
// pairs) and tags of an entity that differ from was, its stored text (all
// of them when was is nil: a new entity).
func checkChanged(p *problems, kind, name, id string, was *textFields, tags map[string]string, fields ...string) {
	for i := 0; i+1 < len(fields); i += 2 {
		if was == nil || was.values[i/2] != fields[i+1] {
			checkNames(p, kind, name, id, fields[i], fields[i+1])
		}
	}
	if was == nil || !maps.Equal(was.tags, tags) {
		checkTags(p, kind, name, id, tags)
	}
}

// byID indexes items by id.
func byID[T any](items []T, id func(*T) string) map[string]*T {
	m := make(map[string]*T, len(items))
	for i := range items {
		m[id(&items[i])] = &items[i]
	}
	return m
}

func validateThrottle(p *problems, kind, name, id, field string, t *Throttle) {
	switch {
	case !finite(t.RateLimit):
		p.add(kind, name, id, field+".rateLimit", "must be a finite number, got %v", t.RateLimit)
	case t.RateLimit < 0:
		p.add(kind, name, id, field+".rateLimit", "must not be negative, got %v", t.RateLimit)
	case t.RateLimit > MaxRate:
		p.add(kind, name, id, field+".rateLimit", "must be at most %g, got %v", float64(MaxRate), t.RateLimit)
	case t.RateLimit > 0 && t.RateLimit < MinRate:
		p.add(kind, name, id, field+".rateLimit", "must be 0 or at least %g, got %v", MinRate, t.RateLimit)
	}
	switch {
	case t.BurstLimit < 0:
		p.add(kind, name, id, field+".burstLimit", "must not be negative, got %d", t.BurstLimit)
	case t.BurstLimit > MaxBurst:
		p.add(kind, name, id, field+".burstLimit", "must be at most %d, got %d", int64(MaxBurst), t.BurstLimit)
	case t.BurstLimit == 0 && t.RateLimit > 0:
		p.add(kind, name, id, field+".burstLimit", "is 0 while rateLimit is %v: no request could ever pass; set burstLimit to at least 1", t.RateLimit)
	case t.BurstLimit > 0 && t.RateLimit == 0:
		p.add(kind, name, id, field+".rateLimit", "is 0 while burstLimit is %d: the bucket would never refill; set a rate, or both to 0 to block every request", t.BurstLimit)
	}
}

func validateGateway(p *problems, g *Gateway) {
	if g.Throttle != nil {
		validateThrottle(p, "gateway", "", "", "throttle", g.Throttle)
	}
	if s := g.UnknownRouteStatus; s != 0 && s != 403 && s != 404 {
		p.add("gateway", "", "", "unknownRouteStatus", "must be 403 (AWS's Missing Authentication Token) or 404, got %d", s)
	}
	if g.UpstreamTimeout < 0 {
		p.add("gateway", "", "", "upstreamTimeout", "must not be negative")
	}
}

func validateAPIs(p *problems, c *Catalog) {
	ids := map[string]bool{}
	routes := map[string]string{} // host + prefix → "api/stage"
	for _, a := range c.APIs {
		if a.ID == "" {
			p.add("apis", a.Name, a.ID, "id", "is required")
		} else if ids[a.ID] {
			p.add("apis", a.Name, a.ID, "id", "%q is used by two APIs", a.ID)
		}
		ids[a.ID] = true
		if len(a.Stages) == 0 {
			p.add("apis", a.Name, a.ID, "stages", "at least one stage is required")
		}
		stages := map[string]bool{}
		for i, s := range a.Stages {
			f := fmt.Sprintf("stages[%d]", i)
			switch {
			case s.Name == "":
				p.add("apis", a.Name, a.ID, f+".name", "is required")
			case strings.ContainsAny(s.Name, "/:?#% "):
				p.add("apis", a.Name, a.ID, f+".name", "%q must not contain '/', ':', '?', '#', '%%' or spaces", s.Name)
			case stages[s.Name]:
				p.add("apis", a.Name, a.ID, f+".name", "stage %q is declared twice", s.Name)
			}
			stages[s.Name] = true
			u, err := url.Parse(s.Upstream)
			if s.Upstream == "" {
				p.add("apis", a.Name, a.ID, f+".upstream", "is required (the URL requests are proxied to)")
			} else if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.RawQuery != "" || u.Fragment != "" {
				p.add("apis", a.Name, a.ID, f+".upstream", "%q must be an absolute http:// or https:// URL without query", s.Upstream)
			}
			prefix := s.Prefix()
			if prefix != "" && (!strings.HasPrefix(prefix, "/") || strings.HasSuffix(prefix, "/") || strings.Contains(prefix, "//")) {
				p.add("apis", a.Name, a.ID, f+".basePath", "%q must start with '/' and not end with '/' (or be empty with a host)", prefix)
			}
			if prefix == "" && s.Host == "" {
				p.add("apis", a.Name, a.ID, f+".basePath", "may be empty only when host is set")
			}
			if h := s.Host; h != "" && (strings.ContainsAny(h, ":/[] ") || strings.Trim(h, ".") != h) {
				p.add("apis", a.Name, a.ID, f+".host", "%q must be a host name without port, scheme or path (requests match it with their port removed)", h)
			}
			rk := strings.ToLower(s.Host) + prefix
			if other, ok := routes[rk]; ok {
				p.add("apis", a.Name, a.ID, f, "host %q and base path %q are already routed to %s", s.Host, prefix, other)
			}
			routes[rk] = a.ID + "/" + s.Name
			if s.Throttle != nil {
				validateThrottle(p, "apis", a.Name, a.ID, f+".throttle", s.Throttle)
			}
		}
		paths := map[string]bool{}
		// vars maps a parent path to its one variable child, e.g.
		// "/items" → "{id}": AWS allows one path variable per level, and
		// two would be ambiguous (which template, which key requirement?).
		vars := map[string]string{}
		for i, r := range a.Resources {
			f := fmt.Sprintf("resources[%d]", i)
			if msg := checkResourcePath(r.Path); msg != "" {
				p.add("apis", a.Name, a.ID, f+".path", "%q %s", r.Path, msg)
			} else if parent, v, clash := variableClash(vars, r.Path); clash {
				p.add("apis", a.Name, a.ID, f+".path", "%q: %s already has the path variable %s; a level may have one", r.Path, parent, v)
			}
			if paths[r.Path] {
				p.add("apis", a.Name, a.ID, f+".path", "%q is declared twice", r.Path)
			}
			paths[r.Path] = true
			if len(r.Methods) == 0 {
				p.add("apis", a.Name, a.ID, f+".methods", "at least one method is required")
			}
			for _, m := range slices.Sorted(maps.Keys(r.Methods)) {
				if !validMethod(m) {
					p.add("apis", a.Name, a.ID, f+".methods."+m, "unknown method; use one of %s", strings.Join(Methods, ", "))
				}
			}
		}
	}
}

// variableClash records the variable segments of a valid template in vars
// and reports a level that would get a second, differently named one.
func variableClash(vars map[string]string, path string) (parent, existing string, clash bool) {
	if path == "/" {
		return "", "", false
	}
	segs := strings.Split(path[1:], "/")
	for i, s := range segs {
		if !strings.HasPrefix(s, "{") {
			continue
		}
		parent = "/" + strings.Join(segs[:i], "/")
		if v, ok := vars[parent]; ok && v != s {
			return parent, v, true
		}
		vars[parent] = s
	}
	return "", "", false
}

// checkResourcePath returns "" if path is a valid resource template.
func checkResourcePath(path string) string {
	if path == "/" {
		return ""
	}
	if !strings.HasPrefix(path, "/") || strings.HasSuffix(path, "/") {
		return "must start with '/' and not end with '/'"
	}
	segs := strings.Split(path[1:], "/")
	for i, s := range segs {
		switch {
		case s == "":
			return "has an empty segment"
		case strings.HasPrefix(s, "{") && strings.HasSuffix(s, "+}"):
			if i != len(segs)-1 {
				return "may use a greedy {name+} segment only at the end"
			}
		case strings.HasPrefix(s, "{") != strings.HasSuffix(s, "}"):
			return fmt.Sprintf("segment %q has unbalanced braces", s)
		case strings.ContainsAny(s, "?#"):
			return "must not contain '?' or '#'"
		}
	}
	return ""
}

func validMethod(m string) bool {
	for _, x := range Methods {
		if m == x {
			return true
		}
	}
	return false
}

func validatePlans(p *problems, c *Catalog) {
	names := map[string]bool{}
	ids := map[string]bool{}
	for i := range c.UsagePlans {
		pl := &c.UsagePlans[i]
		if pl.Name != "" && names[pl.Name] {
			p.add("usagePlans", pl.Name, pl.ID, "name", "%q is used by two plans", pl.Name)
		}
		names[pl.Name] = true
		if pl.ID != "" && ids[pl.ID] {
			p.add("usagePlans", pl.Name, pl.ID, "id", "%q is used by two plans", pl.ID)
		}
		ids[pl.ID] = true
		validatePlan(p, pl, c.API)
	}
}

// validatePlan checks one plan on its own and against the APIs (api
// finds one by id); uniqueness is its caller's.
func validatePlan(p *problems, pl *UsagePlan, api func(id string) *API) {
	if pl.Name == "" {
		p.add("usagePlans", pl.Name, pl.ID, "name", "is required")
	}
	if pl.Throttle != nil {
		validateThrottle(p, "usagePlans", pl.Name, pl.ID, "throttle", pl.Throttle)
	}
	if q := pl.Quota; q != nil {
		if !q.Period.Valid() {
			p.add("usagePlans", pl.Name, pl.ID, "quota.period", "%q is not one of DAY, WEEK, MONTH", q.Period)
		}
		if q.Limit < 0 {
			p.add("usagePlans", pl.Name, pl.ID, "quota.limit", "must not be negative, got %d", q.Limit)
		} else if q.Limit > MaxQuota {
			p.add("usagePlans", pl.Name, pl.ID, "quota.limit", "must be at most %d, got %d", int64(MaxQuota), q.Limit)
		}
		if q.Offset < 0 || q.Offset > q.Limit {
			p.add("usagePlans", pl.Name, pl.ID, "quota.offset", "must be between 0 and the limit %d, got %d", q.Limit, q.Offset)
		}
	}
	seen := map[string]bool{}
	for i, as := range pl.APIStages {
		f := fmt.Sprintf("apiStages[%d]", i)
		a := api(as.APIID)
		if a == nil {
			p.add("usagePlans", pl.Name, pl.ID, f+".apiId", "names API %q, which does not exist", as.APIID)
			continue
		}
		if !hasStage(a, as.Stage) {
			p.add("usagePlans", pl.Name, pl.ID, f+".stage", "API %q has no stage %q", as.APIID, as.Stage)
			continue
		}
		if seen[as.APIID+":"+as.Stage] {
			p.add("usagePlans", pl.Name, pl.ID, f, "stage %s:%s is listed twice", as.APIID, as.Stage)
		}
		seen[as.APIID+":"+as.Stage] = true
		for _, k := range slices.Sorted(maps.Keys(as.Throttle)) {
			t := as.Throttle[k]
			ff := fmt.Sprintf("%s.throttle[%q]", f, k)
			res, m, ok := SplitMethodKey(k)
			if !ok {
				p.add("usagePlans", pl.Name, pl.ID, ff, "must have the form /resource/METHOD, e.g. /items/GET")
				continue
			}
			r := findResource(a, res)
			if r == nil {
				p.add("usagePlans", pl.Name, pl.ID, ff, "API %q has no resource %q", a.ID, res)
				continue
			}
			if _, ok := r.Methods[m]; !ok {
				msg := fmt.Sprintf("resource %q of API %q declares no method %s", res, a.ID, m)
				if _, any := r.Methods["ANY"]; any {
					// One bucket per declared method: methods that reach
					// the resource through ANY share ANY's.
					msg += fmt.Sprintf(" (it reaches %s through ANY: throttle %s/ANY, or declare %s)", m, res, m)
				}
				p.add("usagePlans", pl.Name, pl.ID, ff, "%s", msg)
				continue
			}
			validateThrottle(p, "usagePlans", pl.Name, pl.ID, ff, &t)
		}
	}
}

// SplitMethodKey splits "/items/{id}/GET" into "/items/{id}" and "GET".
// The root resource is written "//GET", as AWS writes it.
func SplitMethodKey(k string) (resource, method string, ok bool) {
	i := strings.LastIndexByte(k, '/')
	if i <= 0 || !strings.HasPrefix(k, "/") {
		return "", "", false
	}
	resource, method = k[:i], k[i+1:]
	if resource == "/" || resource == "" {
		resource = "/"
	}
	if method == "" || strings.ToUpper(method) != method || !validMethod(method) {
		return "", "", false
	}
	return resource, method, true
}

func hasStage(a *API, stage string) bool {
	for _, s := range a.Stages {
		if s.Name == stage {
			return true
		}
	}
	return false
}

func findResource(a *API, path string) *Resource {
	for i := range a.Resources {
		if a.Resources[i].Path == path {
			return &a.Resources[i]
		}
	}
	return nil
}

func validateKeys(p *problems, c *Catalog) {
	names := make(map[string]bool, len(c.APIKeys))
	ids := make(map[string]bool, len(c.APIKeys))
	hashes := make(map[string]string, len(c.APIKeys))
	plans := byID(c.UsagePlans, func(pl *UsagePlan) string { return pl.ID })
	for i := range c.APIKeys {
		k := &c.APIKeys[i]
		if k.ID != "" && ids[k.ID] {
			p.add("apiKeys", k.Name, k.ID, "id", "%q is used by two keys", k.ID)
		}
		ids[k.ID] = true
		if k.Name != "" && names[k.Name] {
			p.add("apiKeys", k.Name, k.ID, "name", "%q is used by two keys", k.Name)
		}
		names[k.Name] = true
		if other, ok := hashes[k.ValueHash]; ok && k.ValueHash != "" {
			p.add("apiKeys", k.Name, k.ID, "value", "is the same as the value of key %q; values must be unique", other)
		}
		hashes[k.ValueHash] = k.Name
		if other, ok := hashes[k.PreviousValueHash]; ok && k.PreviousValueHash != "" && other != k.Name {
			p.add("apiKeys", k.Name, k.ID, "previousValueHash", "is the same as a value of key %q; values must be unique", other)
		}
		if k.PreviousValueHash != "" {
			hashes[k.PreviousValueHash] = k.Name
		}
		validateKey(p, k, func(id string) *UsagePlan { return plans[id] })
	}
}

// validateKey checks one key on its own and against the plans it lists
// (plan finds one by id); uniqueness is its caller's.
func validateKey(p *problems, k *APIKey, plan func(id string) *UsagePlan) {
	if k.Name == "" {
		p.add("apiKeys", k.Name, k.ID, "name", "is required")
	}
	validateRotation(p, k)
	var stages map[string]string // "api:stage" → plan name
	for i, ref := range k.UsagePlans {
		if slices.Contains(k.UsagePlans[:i], ref) {
			p.add("apiKeys", k.Name, k.ID, fmt.Sprintf("usagePlans[%d]", i), "lists plan %q twice", ref)
			continue
		}
		pl := plan(ref)
		if pl == nil {
			p.add("apiKeys", k.Name, k.ID, fmt.Sprintf("usagePlans[%d]", i), "names plan %q, which does not exist", ref)
			continue
		}
		if len(k.UsagePlans) == 1 {
			break
		}
		if stages == nil {
			stages = map[string]string{}
		}
		for _, as := range pl.APIStages {
			s := as.APIID + ":" + as.Stage
			if other, ok := stages[s]; ok && other != pl.Name {
				p.add("apiKeys", k.Name, k.ID, fmt.Sprintf("usagePlans[%d]", i),
					"plans %q and %q both cover stage %s; a key may belong to one plan per API stage (as in AWS)", other, pl.Name, s)
			}
			stages[s] = pl.Name
		}
	}
}

// CheckKeyValue returns "" if v is an acceptable API key value: 20 to 128
// printable ASCII characters without whitespace.
func CheckKeyValue(v string) string {
	if len(v) < 20 || len(v) > 128 {
		return fmt.Sprintf("must be 20 to 128 characters long, got %d", len(v))
	}
	for i := 0; i < len(v); i++ {
		if v[i] <= ' ' || v[i] > '~' {
			return fmt.Sprintf("must be printable ASCII without whitespace; character %d is %q", i+1, v[i])
		}
	}
	return ""
}

// validateRotation checks the fields of a key's rotation: all empty, or
// a previous value's SHA-256 (64 lowercase hex characters, not the
// current value's) with a prefix of at most 4 characters and the time
// it stops (after 1970).
func validateRotation(p *problems, k *APIKey) {
	if k.PreviousValueHash == "" {
		if k.PreviousValueUntil != 0 {
			p.add("apiKeys", k.Name, k.ID, "previousValueUntil", "is set without a previousValueHash")
		}
		if k.PreviousValuePrefix != "" {
			p.add("apiKeys", k.Name, k.ID, "previousValuePrefix", "is set without a previousValueHash")
		}
		return
	}
	if !isHexHash(k.PreviousValueHash) {
		p.add("apiKeys", k.Name, k.ID, "previousValueHash", "must be a SHA-256 in 64 lowercase hex characters")
	} else if k.PreviousValueHash == k.ValueHash {
		p.add("apiKeys", k.Name, k.ID, "previousValueHash", "is the key's current value: a rotation replaces a value with another")
	}
	if len(k.PreviousValuePrefix) > 4 {
		p.add("apiKeys", k.Name, k.ID, "previousValuePrefix", "must be at most 4 characters, got %d", len(k.PreviousValuePrefix))
	}
	if k.PreviousValueUntil <= 0 {
		p.add("apiKeys", k.Name, k.ID, "previousValueUntil", "must be a time after 1970 (Unix nanoseconds) when previousValueHash is set")
	}
}

// isHexHash reports whether s is a SHA-256 as catalogs hold it.
func isHexHash(s string) bool {
	if len(s) != 64 {
		return false
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return false
		}
	}
	return true
}
