package console

import (
	"bytes"
	"context"
	"crypto/subtle"
	"embed"
	"errors"
	"html/template"
	"io/fs"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"time"
	"unicode"

	"github.com/go-chi/chi/v5"

	"github.com/tollgate/tollgate/catalog"
	"github.com/tollgate/tollgate/internal/logs"
)

//go:embed templates/*.html
var templateFS embed.FS

//go:embed static
var staticFS embed.FS

// Config configures the console.
type Config struct {
	// Token is the admin bearer token users sign in with. Empty: the
	// sign-in page says the console needs one, and nobody signs in.
	Token string
	// Call makes an admin API request in process as actor
	// (reportapi.Console.Call). Required.
	Call func(ctx context.Context, actor, method, target string, body []byte) (status int, header http.Header, resp []byte)
	// Audit is the log a key page shows its last changes from. Nil: the
	// section says there is none on this node.
	Audit *catalog.AuditLog
	// Now is the clock of sessions and of "now" in every page. Nil:
	// time.Now.
	Now func() time.Time
	// SessionTTL is how long a sign-in lasts. Zero: 8 hours (a working
	// day).
	SessionTTL time.Duration
	// Logger logs what a page could not read. Nil: discarded.
	Logger *slog.Logger
}

// Validate reports what is missing.
func (c *Config) Validate() error {
	if c.Call == nil {
		return errors.New("console: Call is required")
	}
	if c.SessionTTL < 0 {
		return errors.New("console: SessionTTL must not be negative")
	}
	return nil
}

// Bounds of what a caller who is not signed in can make the console do:
// a sign-in form of at most maxForm bytes, and failed sign-ins at most
// signInRate a second (signInBurst at once) in all.
const (
	maxForm     = 8 << 10
	signInRate  = 5
	signInBurst = 20
)

type server struct {
	cfg      Config
	sessions *sessions
	limiter  *signInLimiter
	pages    map[string]*template.Template
	log      *slog.Logger
	top      *topCache
}

// New returns the console's handler, to be mounted at /ui.
func New(cfg Config) (http.Handler, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.SessionTTL == 0 {
		cfg.SessionTTL = 8 * time.Hour
	}
	s := &server{cfg: cfg, sessions: newSessions(cfg.Token, cfg.SessionTTL, cfg.Now),
		limiter: &signInLimiter{rate: signInRate, burst: signInBurst, now: cfg.Now},
		log:     logs.For(cfg.Logger, "console"), top: newTopCache(cfg.Now)}
	var err error
	if s.pages, err = parsePages(); err != nil {
		return nil, err
	}
	r := chi.NewRouter()
	r.Use(headers)
	static, _ := fs.Sub(staticFS, "static")
	files := http.StripPrefix("/ui/static/", http.FileServerFS(static))
	r.Get("/static/*", func(w http.ResponseWriter, r *http.Request) {
		if strings.HasSuffix(r.URL.Path, "/") { // no listings
			http.NotFound(w, r)
			return
		}
		files.ServeHTTP(w, r)
	})
	r.Get("/signin", s.signInPage)
	r.Post("/signin", s.signIn)
	r.Group(func(r chi.Router) {
		r.Use(s.requireSession)
		r.Post("/signout", s.signOut)
		r.Get("/", s.overview)
		r.Get("/keys", s.keys)
		r.Get("/keys/new", s.newKey)
		r.Get("/keys/{id}", s.key)
		r.Get("/plans", s.plans)
		r.Get("/plans/{id}", s.plan)
		r.Get("/billing", s.billing)
		r.Get("/billing.csv", s.billingCSV)
		r.Get("/confirm", s.confirm)
		r.Post("/change", s.change)
	})
	r.NotFound(func(w http.ResponseWriter, r *http.Request) {
		s.render(w, r, http.StatusNotFound, "error", nil, map[string]any{"Message": "There is no such page."})
	})
	// Cross-origin protection refuses any POST a browser marks as sent
	// by another site (Sec-Fetch-Site, else Origin against Host): with
	// the SameSite=Strict cookie and the forms' CSRF token, a third
	// defence, and the one that covers the sign-in form.
	cop := http.NewCrossOriginProtection()
	cop.SetDenyHandler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.render(w, r, http.StatusForbidden, "error", nil, map[string]any{"Message": "Refused: this form was sent from another site."})
	}))
	return cop.Handler(r), nil
}

// headers are every answer's: no framing, no scripts at all, nothing
// loaded from elsewhere, nothing cached.
func headers(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h.Set("Content-Security-Policy", "default-src 'none'; style-src 'self'; img-src 'self' data:; form-action 'self'; frame-ancestors 'none'; base-uri 'none'")
		h.Set("X-Frame-Options", "DENY")
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("Referrer-Policy", "same-origin")
		if !strings.HasPrefix(r.URL.Path, "/ui/static/") {
			h.Set("Cache-Control", "no-store")
		}
		next.ServeHTTP(w, r)
	})
}

type sessionKey struct{}

func sessionOf(r *http.Request) session {
	se, _ := r.Context().Value(sessionKey{}).(session)
	return se
}

// requireSession sends a caller without a valid session to the sign-in
// page (saying why, when the session expired or ended) and refuses a
// change without the session's CSRF token.
func (s *server) requireSession(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c, _ := r.Cookie(cookieName)
		var se session
		why := noSession
		if c != nil {
			se, why = s.sessions.check(c.Value)
		}
		if se.nonce == "" {
			if r.Method != http.MethodGet {
				s.render(w, r, http.StatusForbidden, "signin", nil, map[string]any{"Error": firstNonEmpty(why, "Sign in first.")})
				return
			}
			if c != nil {
				http.SetCookie(w, s.sessions.cookie(r, "", time.Time{}))
			}
			target := "/ui/signin"
			if why != noSession {
				target += "?why=" + map[string]string{sessionExpired: "expired", sessionEnded: "ended"}[why]
			}
			http.Redirect(w, r, target, http.StatusSeeOther)
			return
		}
		if r.Method == http.MethodPost {
			r.Body = http.MaxBytesReader(w, r.Body, maxForm)
			if err := r.ParseForm(); err != nil {
				s.render(w, r, http.StatusBadRequest, "error", &se, map[string]any{"Message": "The form could not be read: " + err.Error()})
				return
			}
			if !s.sessions.checkCSRF(se, r.PostForm.Get("csrf")) {
				s.render(w, r, http.StatusForbidden, "error", &se, map[string]any{"Message": "Refused: the form's security token is missing or belongs to another session. Reload the page and try again."})
				return
			}
		}
		next.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), sessionKey{}, se)))
	})
}

func firstNonEmpty(s ...string) string {
	for _, v := range s {
		if v != "" {
			return v
		}
	}
	return ""
}

func (s *server) signInPage(w http.ResponseWriter, r *http.Request) {
	data := map[string]any{}
	switch r.URL.Query().Get("why") {
	case "expired":
		data["Notice"] = sessionExpired
	case "ended":
		data["Notice"] = sessionEnded
	}
	if s.cfg.Token == "" {
		data["Error"] = "This admin listener has no bearer token, and the console signs in with one: set TOLLGATE_ADMIN_TOKEN (or the token in the data folder's admin credentials) and restart."
	}
	s.render(w, r, http.StatusOK, "signin", nil, data)
}

func (s *server) signIn(w http.ResponseWriter, r *http.Request) {
	r.Body = http.MaxBytesReader(w, r.Body, maxForm)
	if err := r.ParseForm(); err != nil {
		s.render(w, r, http.StatusBadRequest, "signin", nil, map[string]any{"Error": "The form could not be read: " + err.Error()})
		return
	}
	name := strings.TrimSpace(r.PostForm.Get("name"))
	if msg := checkActor(name); msg != "" {
		s.render(w, r, http.StatusBadRequest, "signin", nil, map[string]any{"Error": msg, "Name": name})
		return
	}
	tok := r.PostForm.Get("token")
	if s.cfg.Token == "" || !equalToken(tok, s.cfg.Token) {
		status, msg := http.StatusUnauthorized, "That is not this gateway's admin token."
		if !s.limiter.allow() {
			status, msg = http.StatusTooManyRequests, "Too many failed sign-ins: wait a few seconds and try again."
		}
		s.render(w, r, status, "signin", nil, map[string]any{"Error": msg, "Name": name})
		return
	}
	actor := "console"
	if name != "" {
		actor += ":" + name
	}
	v, se := s.sessions.issue(actor)
	http.SetCookie(w, s.sessions.cookie(r, v, se.expires))
	http.Redirect(w, r, "/ui/", http.StatusSeeOther)
}

// checkActor checks the name a user signs in under: it is recorded in
// the audit log as "console:<name>", so it is short and printable.
func checkActor(name string) string {
	if len(name) > maxActor {
		return "Your name is too long: at most 64 characters."
	}
	for _, c := range name {
		if !unicode.IsPrint(c) {
			return "Your name may hold printable characters only."
		}
	}
	return ""
}

func (s *server) signOut(w http.ResponseWriter, r *http.Request) {
	s.sessions.revoke(sessionOf(r))
	http.SetCookie(w, s.sessions.cookie(r, "", time.Time{}))
	http.Redirect(w, r, "/ui/signin?why=ended", http.StatusSeeOther)
}

// render writes a page: the layout around the named page's content.
// Templates run into a buffer first, so a failure is a clean 500.
func (s *server) render(w http.ResponseWriter, r *http.Request, status int, name string, se *session, data map[string]any) {
	if data == nil {
		data = map[string]any{}
	}
	if se == nil {
		if v, ok := r.Context().Value(sessionKey{}).(session); ok {
			se = &v
		}
	}
	if se != nil {
		data["Actor"] = se.actor
		data["CSRF"] = s.sessions.csrf(*se)
	}
	data["Path"] = r.URL.Path
	var buf bytes.Buffer
	if err := s.pages[name].ExecuteTemplate(&buf, "layout", data); err != nil {
		s.log.Error("render page", "page", name, "err", err)
		http.Error(w, "the page could not be drawn", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.WriteHeader(status)
	w.Write(buf.Bytes())
}

// api returns the admin API as the signed-in user.
func (s *server) api(r *http.Request) api {
	return api{call: s.cfg.Call, actor: sessionOf(r).actor}
}

func parsePages() (map[string]*template.Template, error) {
	funcs := template.FuncMap{
		"short":   short,
		"changed": changed,
		"path":    url.PathEscape,
		"sub":     func(a, b int64) int64 { return a - b },
		"num":     thousands,
		"date":    func(t time.Time) string { return t.UTC().Format("2006-01-02 15:04 UTC") },
		"unix":    func(s int64) string { return time.Unix(s, 0).UTC().Format("2006-01-02 15:04 UTC") },
		"pct": func(a, b int64) int64 {
			if b <= 0 {
				return 0
			}
			return min(100, a*100/b)
		},
	}
	names, err := fs.Glob(templateFS, "templates/*.html")
	if err != nil {
		return nil, err
	}
	pages := map[string]*template.Template{}
	for _, n := range names {
		base := strings.TrimSuffix(strings.TrimPrefix(n, "templates/"), ".html")
		if base == "layout" {
			continue
		}
		t, err := template.New(base).Funcs(funcs).ParseFS(templateFS, "templates/layout.html", n)
		if err != nil {
			return nil, err
		}
		pages[base] = t
	}
	return pages, nil
}

// thousands writes n with thin separators: 1 234 567.
func thousands(n int64) string {
	s := []byte{}
	neg := n < 0
	if neg {
		n = -n
	}
	d := 0
	for {
		if d > 0 && d%3 == 0 {
			s = append(s, ',')
		}
		s = append(s, byte('0'+n%10))
		n /= 10
		d++
		if n == 0 {
			break
		}
	}
	if neg {
		s = append(s, '-')
	}
	for i, j := 0, len(s)-1; i < j; i, j = i+1, j-1 {
		s[i], s[j] = s[j], s[i]
	}
	return string(s)
}

// equalToken compares in constant time.
func equalToken(a, b string) bool {
	return subtle.ConstantTimeCompare([]byte(a), []byte(b)) == 1
}
