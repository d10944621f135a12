package reportapi

import (
	"io"
	"net/http"
	"slices"

	"github.com/tollgate/tollgate/catalog"
)

// apply answers POST /v1/apply: the body is a configuration file (the
// YAML of `tollgate serve --config`), merged into the catalog exactly as
// at start: one validated, audited change, idempotent (the same file
// twice changes nothing). ?name= names the file in error messages.
func (a *apiKeys) apply(w http.ResponseWriter, r *http.Request) {
	b, err := io.ReadAll(http.MaxBytesReader(nil, r.Body, maxFileBody))
	if err != nil {
		bodyError(err, maxFileBody).write(w)
		return
	}
	name := r.URL.Query().Get("name")
	if name == "" {
		name = "request body"
	}
	f, err := catalog.ParseFile(name, b)
	if err != nil {
		badRequest(err.Error()).write(w)
		return
	}
	// Another writer's change meanwhile is retried (the file applies
	// again to the catalog that holds it), not answered 409.
	ch, cerr := catalog.ApplyFileTo(r.Context(), a.cat, f, a.now, nil)
	if cerr != nil {
		changeError(cerr).write(w)
		return
	}
	created := ch.Created
	if created == nil {
		created = []string{}
	}
	// Values generated for new keys are shown here, once.
	generated := make([]map[string]string, 0, len(ch.GeneratedKeys))
	ids := make([]string, 0, len(ch.GeneratedKeys))
	for id := range ch.GeneratedKeys {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	for _, id := range ids {
		generated = append(generated, map[string]string{"id": id, "value": ch.GeneratedKeys[id]})
	}
	writeJSON(w, http.StatusOK, map[string]any{"changed": ch.Changed, "created": created, "generatedKeys": generated})
}
