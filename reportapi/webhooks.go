package reportapi

import (
	"context"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/go-chi/chi/v5"

	"github.com/tollgate/tollgate/catalog"
	"github.com/tollgate/tollgate/notify"
)

// DeliveryLister lists notification deliveries (notify.Notifier).
type DeliveryLister interface {
	List(ctx context.Context, f notify.Filter) ([]notify.Delivery, error)
}

var _ DeliveryLister = (*notify.Notifier)(nil)

// webhooks serves /v1/webhooks: the quota notification subscriptions
// (catalog.Webhook), and the deliveries of this node's notifier.
type webhooks struct {
	cat        CatalogStore
	deliveries DeliveryLister
	checkURL   func(ctx context.Context, url string) string
	now        func() time.Time
}

func (h *webhooks) routes(r chi.Router) {
	r.Post("/v1/webhooks", h.create)
	r.Get("/v1/webhooks", h.list)
	r.Get("/v1/webhooks/deliveries", h.listDeliveries)
	r.Get("/v1/webhooks/{id}", h.get)
	r.Patch("/v1/webhooks/{id}", h.update)
	r.Delete("/v1/webhooks/{id}", h.delete)
}

// webhookJSON is a webhook as the admin API shows it: never its secret.
type webhookJSON struct {
	ID          string    `json:"id"`
	Name        string    `json:"name"`
	URL         string    `json:"url"`
	Events      []string  `json:"events"`
	Thresholds  []float64 `json:"thresholds"`
	CreatedDate int64     `json:"createdDate"`
}

func showWebhook(w *catalog.Webhook) webhookJSON {
	ev := w.Events
	if len(ev) == 0 {
		ev = catalog.WebhookEvents
	}
	return webhookJSON{ID: w.ID, Name: w.Name, URL: w.URL, Events: ev, Thresholds: w.Levels(), CreatedDate: w.CreatedDate}
}

// webhookInput is the body of POST and PATCH: absent fields are left as
// they are (PATCH) or take their defaults (POST).
type webhookInput struct {
	Name       *string    `json:"name"`
	URL        *string    `json:"url"`
	Secret     *string    `json:"secret"`
	Events     *[]string  `json:"events"`
	Thresholds *[]float64 `json:"thresholds"`
}

func (in *webhookInput) apply(w *catalog.Webhook) {
	if in.Name != nil {
		w.Name = *in.Name
	}
	if in.URL != nil {
		w.URL = *in.URL
	}
	if in.Secret != nil {
		w.Secret = *in.Secret
	}
	if in.Events != nil {
		w.Events = *in.Events
	}
	if in.Thresholds != nil {
		w.Thresholds = *in.Thresholds
	}
}

// checkInput answers 400 naming the field for what the catalog's rules
// cannot see: a URL that does not resolve or resolves to an address the
// notifier refuses; and a secret given empty.
func (h *webhooks) checkInput(r *http.Request, in *webhookInput, creating bool) *apiError {
	if creating && (in.Secret == nil || *in.Secret == "") || in.Secret != nil && *in.Secret == "" {
		return badRequest("secret: is required: it signs every notification")
	}
	if creating && in.URL == nil {
		return badRequest("url: is required")
	}
	if in.URL != nil {
		// The node's check (notify.Guard.CheckURL) includes the
		// catalog's; without one, the catalog's alone.
		msg := catalog.CheckWebhookURL(*in.URL)
		if h.checkURL != nil {
			msg = h.checkURL(r.Context(), *in.URL)
		}
		if msg != "" {
			return badRequest("url: " + msg)
		}
	}
	return nil
}

func (h *webhooks) create(w http.ResponseWriter, r *http.Request) {
	var in webhookInput
	if err := decodeBody(r, &in); err != nil {
		err.write(w)
		return
	}
	if err := h.checkInput(r, &in, true); err != nil {
		err.write(w)
		return
	}
	var created catalog.Webhook
	if !change(w, r, h.cat, func(tx *catalog.Tx) error {
		created = catalog.Webhook{ID: newKeyID(tx), CreatedDate: h.now().Unix()}
		in.apply(&created)
		if created.Name == "" {
			created.Name = "webhook-" + created.ID
		}
		if tx.WebhookByName(created.Name) != nil {
			return &apiError{status: 409, errType: "ConflictException", msg: fmt.Sprintf("A webhook named %q already exists", created.Name)}
		}
		tx.PutWebhook(created)
		return nil
	}) {
		return
	}
	writeJSON(w, http.StatusCreated, showWebhook(&created))
}

var errWebhookNotFound = &apiError{status: 404, errType: "NotFoundException", msg: "Invalid webhook identifier specified"}

func (h *webhooks) list(w http.ResponseWriter, _ *http.Request) {
	list := h.cat.State().Webhooks()
	items := make([]webhookJSON, 0, len(list))
	for i := range list {
		items = append(items, showWebhook(&list[i]))
	}
	writeJSON(w, http.StatusOK, map[string]any{"items": items})
}

func (h *webhooks) get(w http.ResponseWriter, r *http.Request) {
	wh := h.cat.State().Webhook(urlParam(r, "id"))
	if wh == nil {
		errWebhookNotFound.write(w)
		return
	}
	writeJSON(w, http.StatusOK, showWebhook(wh))
}

func (h *webhooks) update(w http.ResponseWriter, r *http.Request) {
	var in webhookInput
	if err := decodeBody(r, &in); err != nil {
		err.write(w)
		return
	}
	if err := h.checkInput(r, &in, false); err != nil {
		err.write(w)
		return
	}
	var updated catalog.Webhook
	if !change(w, r, h.cat, func(tx *catalog.Tx) error {
		cur := tx.Webhook(urlParam(r, "id"))
		if cur == nil {
			return errWebhookNotFound
		}
		updated = cur.Clone()
		in.apply(&updated)
		if o := tx.WebhookByName(updated.Name); o != nil && o.ID != updated.ID {
			return &apiError{status: 409, errType: "ConflictException", msg: fmt.Sprintf("A webhook named %q already exists", updated.Name)}
		}
		tx.PutWebhook(updated)
		return nil
	}) {
		return
	}
	writeJSON(w, http.StatusOK, showWebhook(&updated))
}

func (h *webhooks) delete(w http.ResponseWriter, r *http.Request) {
	if !change(w, r, h.cat, func(tx *catalog.Tx) error {
		if !tx.DeleteWebhook(urlParam(r, "id")) {
			return errWebhookNotFound
		}
		return nil
	}) {
		return
	}
	w.WriteHeader(http.StatusAccepted)
}

// listDeliveries answers GET /v1/webhooks/deliveries?webhookId=&keyId=
// &state=pending|delivered|failed&limit=&before=<RFC 3339>&position=,
// newest first. A full page carries "position": pass it back for the
// next page.
func (h *webhooks) listDeliveries(w http.ResponseWriter, r *http.Request) {
	if h.deliveries == nil {
		(&apiError{status: 501, errType: "NotImplementedException",
			msg: "this node sends no notifications: deliveries are listed by the node that sends them (serve, or the aggregator)"}).write(w)
		return
	}
	q := r.URL.Query()
	limit, perr := pageLimit(q.Get("limit"))
	if perr != nil {
		perr.write(w)
		return
	}
	f := notify.Filter{WebhookID: q.Get("webhookId"), KeyID: q.Get("keyId"), State: -1, Limit: limit}
	if s := q.Get("state"); s != "" {
		if f.State = notify.ParseState(s); f.State < 0 {
			badRequest(fmt.Sprintf("state: must be pending, delivered or failed, got %q", s)).write(w)
			return
		}
	}
	if s := q.Get("before"); s != "" {
		t, err := time.Parse(time.RFC3339Nano, s)
		if err != nil {
			badRequest("before: must be an RFC 3339 time").write(w)
			return
		}
		f.Before = t
	}
	if s := q.Get("position"); s != "" {
		ns, id, ok := strings.Cut(s, ".")
		n, err := strconv.ParseInt(ns, 10, 64)
		if !ok || err != nil || id == "" {
			badRequest("position: is not a position this API returned").write(w)
			return
		}
		f.Before, f.BeforeID = time.Unix(0, n), id
	}
	list, err := h.deliveries.List(r.Context(), f)
	if err != nil {
		errorOf("list deliveries: ", err).write(w)
		return
	}
	if list == nil {
		list = []notify.Delivery{}
	}
	out := map[string]any{"items": list}
	if len(list) == limit {
		last := list[len(list)-1]
		out["position"] = strconv.FormatInt(last.Created.UnixNano(), 10) + "." + last.ID
	}
	writeJSON(w, http.StatusOK, out)
}
