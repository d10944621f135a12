package catalog

import (
	"crypto/sha256"
	"encoding/hex"
	"maps"
	"math"
	"time"
)

// Catalog is the whole configuration an enforcer needs.
type Catalog struct {
	Gateway    Gateway     `json:"gateway" yaml:"gateway"`
	APIs       []API       `json:"apis" yaml:"apis"`
	UsagePlans []UsagePlan `json:"usagePlans" yaml:"usagePlans"`
	APIKeys    []APIKey    `json:"apiKeys" yaml:"apiKeys"`
}

// Gateway holds settings that apply to every API.
type Gateway struct {
	// Throttle is a gateway-wide token bucket shared by every request
	// (AWS's account-level limit). Nil: no gateway-wide limit.
	Throttle *Throttle `json:"throttle,omitempty" yaml:"throttle,omitempty"`
	// UnknownRouteStatus is the status for a path or method no API
	// declares: 403 with "Missing Authentication Token" as AWS answers
	// (default, 0 means 403), or 404 with "Not Found".
	UnknownRouteStatus int `json:"unknownRouteStatus,omitempty" yaml:"unknownRouteStatus,omitempty"`
	// RateLimitHeaders turns the RateLimit-Policy / RateLimit response
	// headers and Retry-After on 429 on or off. Nil means on.
	RateLimitHeaders *bool `json:"rateLimitHeaders,omitempty" yaml:"rateLimitHeaders,omitempty"`
	// UpstreamTimeout bounds the wait for an upstream's response headers;
	// past it the client gets 504. Default 29s, AWS's integration timeout.
	UpstreamTimeout Duration `json:"upstreamTimeout,omitempty" yaml:"upstreamTimeout,omitempty"`
}

// DefaultUpstreamTimeout is AWS API Gateway's integration timeout.
const DefaultUpstreamTimeout = 29 * time.Second

// RateLimitHeadersOn reports whether rate limit headers are sent.
func (g Gateway) RateLimitHeadersOn() bool { return g.RateLimitHeaders == nil || *g.RateLimitHeaders }

// API is a REST API: its resources and the stages it is deployed to.
type API struct {
	ID        string     `json:"id" yaml:"id"`
	Name      string     `json:"name,omitempty" yaml:"name,omitempty"`
	Stages    []Stage    `json:"stages" yaml:"stages"`
	Resources []Resource `json:"resources" yaml:"resources"`
}

// Stage is a deployment of an API: where requests reach it and where they
// go.
type Stage struct {
	Name string `json:"name" yaml:"name"`
	// Upstream is the base URL requests are proxied to.
	Upstream string `json:"upstream" yaml:"upstream"`
	// Host, when set, restricts the stage to requests for that host name
	// (compared without port, case-insensitively).
	Host string `json:"host,omitempty" yaml:"host,omitempty"`
	// BasePath is the path prefix that selects the stage and is stripped
	// before proxying. Nil means "/" + Name; "" (with a Host) means the
	// stage owns the whole path space of its host.
	BasePath *string `json:"basePath,omitempty" yaml:"basePath,omitempty"`
	// Throttle limits the stage as a whole, all clients together. Nil: none.
	Throttle *Throttle `json:"throttle,omitempty" yaml:"throttle,omitempty"`
}

// Prefix returns the stage's effective base path.
func (s Stage) Prefix() string {
	if s.BasePath == nil {
		return "/" + s.Name
	}
	return *s.BasePath
}

// Resource is a path template such as /items/{id} with its methods.
type Resource struct {
	Path    string            `json:"path" yaml:"path"`
	Methods map[string]Method `json:"methods" yaml:"methods"`
}

// Method is one HTTP method on a resource.
type Method struct {
	APIKeyRequired bool `json:"apiKeyRequired" yaml:"apiKeyRequired"`
}

// Throttle is a token bucket: RateLimit tokens per second refill a bucket
// of BurstLimit tokens; each request takes one.
type Throttle struct {
	RateLimit  float64 `json:"rateLimit" yaml:"rateLimit"`
	BurstLimit int64   `json:"burstLimit" yaml:"burstLimit"`
}

// Quota caps requests per calendar period.
type Quota struct {
	Limit int64 `json:"limit" yaml:"limit"`
	// Offset is subtracted from Limit in the period in which the plan was
	// created (AWS's meaning of offset).
	Offset int64  `json:"offset" yaml:"offset"`
	Period Period `json:"period" yaml:"period"`
}

// UsagePlan ties throttle and quota to API stages.
type UsagePlan struct {
	ID          string            `json:"id" yaml:"id,omitempty"`
	Name        string            `json:"name" yaml:"name"`
	Description string            `json:"description,omitempty" yaml:"description,omitempty"`
	Throttle    *Throttle         `json:"throttle,omitempty" yaml:"throttle,omitempty"`
	Quota       *Quota            `json:"quota,omitempty" yaml:"quota,omitempty"`
	APIStages   []APIStage        `json:"apiStages" yaml:"apiStages"`
	Tags        map[string]string `json:"tags,omitempty" yaml:"tags,omitempty"`
	// CreatedDate is when the plan first entered the catalog (Unix
	// seconds); it decides which period the quota offset applies to.
	CreatedDate int64 `json:"createdDate" yaml:"-"`
}

// APIStage names a stage a plan covers, with optional per-method throttles
// keyed "/resource/METHOD" (e.g. "/items/{id}/GET").
type APIStage struct {
	APIID    string              `json:"apiId" yaml:"apiId"`
	Stage    string              `json:"stage" yaml:"stage"`
	Throttle map[string]Throttle `json:"throttle,omitempty" yaml:"throttle,omitempty"`
}

// APIKey identifies a consumer.
type APIKey struct {
	ID          string            `json:"id" yaml:"id,omitempty"`
	Name        string            `json:"name" yaml:"name"`
	Description string            `json:"description,omitempty" yaml:"description,omitempty"`
	Enabled     bool              `json:"enabled" yaml:"enabled"`
	CustomerID  string            `json:"customerId,omitempty" yaml:"customerId,omitempty"`
	Tags        map[string]string `json:"tags,omitempty" yaml:"tags,omitempty"`
	// Value is the key as clients send it. It is read from files and
	// never stored: Apply replaces it with ValueHash.
	Value string `json:"-" yaml:"value,omitempty"`
	// ValueHash is the hex SHA-256 of the value.
	ValueHash string `json:"valueHash" yaml:"-"`
	// ValuePrefix is the value's first 4 characters, for display.
	ValuePrefix string `json:"valuePrefix,omitempty" yaml:"-"`
	// PreviousValueHash, PreviousValuePrefix and PreviousValueUntil
	// describe a rotation (rotation.go): the value the key had before
	// its current one (hex SHA-256, first 4 characters), which the
	// gateway still accepts for the key until PreviousValueUntil (Unix
	// nanoseconds). All empty when the key has no rotation. Files never
	// set them (a file declares values, not rotations).
	PreviousValueHash   string `json:"previousValueHash,omitempty" yaml:"-"`
	PreviousValuePrefix string `json:"previousValuePrefix,omitempty" yaml:"-"`
	PreviousValueUntil  int64  `json:"previousValueUntil,omitempty" yaml:"-"`
	// UsagePlans lists the plans the key belongs to: names or ids in a
	// file, ids in a catalog.
	UsagePlans  []string `json:"usagePlans" yaml:"usagePlans"`
	CreatedDate int64    `json:"createdDate" yaml:"-"`
	// LastUpdatedDate is when the admin API last changed the key (Unix
	// seconds); 0 until then.
	LastUpdatedDate int64 `json:"lastUpdatedDate,omitempty" yaml:"-"`
}

// HashKey returns the SHA-256 of a key value, hex-encoded as catalogs
// store it.
func HashKey(value string) string {
	h := sha256.Sum256([]byte(value))
	return hex.EncodeToString(h[:])
}

// Plan returns the plan with the given id, or nil.
func (c *Catalog) Plan(id string) *UsagePlan {
	for i := range c.UsagePlans {
		if c.UsagePlans[i].ID == id {
			return &c.UsagePlans[i]
		}
	}
	return nil
}

// PlanByName returns the plan with the given name, or nil.
func (c *Catalog) PlanByName(name string) *UsagePlan {
	for i := range c.UsagePlans {
		if c.UsagePlans[i].Name == name {
			return &c.UsagePlans[i]
		}
	}
	return nil
}

// PlanByNameOrID finds a plan by id first, then by name.
func (c *Catalog) PlanByNameOrID(s string) *UsagePlan {
	if p := c.Plan(s); p != nil {
		return p
	}
	return c.PlanByName(s)
}

// Key returns the key with the given id, or nil.
func (c *Catalog) Key(id string) *APIKey {
	for i := range c.APIKeys {
		if c.APIKeys[i].ID == id {
			return &c.APIKeys[i]
		}
	}
	return nil
}

// KeyByName returns the key with the given name, or nil.
func (c *Catalog) KeyByName(name string) *APIKey {
	for i := range c.APIKeys {
		if c.APIKeys[i].Name == name {
			return &c.APIKeys[i]
		}
	}
	return nil
}

// KeyByNameOrID finds a key by id first, then by name.
func (c *Catalog) KeyByNameOrID(s string) *APIKey {
	if k := c.Key(s); k != nil {
		return k
	}
	return c.KeyByName(s)
}

// API returns the API with the given id, or nil.
func (c *Catalog) API(id string) *API {
	for i := range c.APIs {
		if c.APIs[i].ID == id {
			return &c.APIs[i]
		}
	}
	return nil
}

// finite reports whether f is a usable limit.
func finite(f float64) bool { return !math.IsNaN(f) && !math.IsInf(f, 0) }

// Clone returns a deep copy of the plan, for a change that edits its
// throttles, quota or stages in place.
func (p *UsagePlan) Clone() UsagePlan {
	c := *p
	if p.Throttle != nil {
		t := *p.Throttle
		c.Throttle = &t
	}
	if p.Quota != nil {
		q := *p.Quota
		c.Quota = &q
	}
	c.APIStages = make([]APIStage, len(p.APIStages))
	for i, as := range p.APIStages {
		c.APIStages[i] = APIStage{APIID: as.APIID, Stage: as.Stage, Throttle: maps.Clone(as.Throttle)}
	}
	c.Tags = maps.Clone(p.Tags)
	return c
}
