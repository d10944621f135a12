package reportapi

import (
	"errors"
	"net/http"
	"net/url"
	"os"
	"strings"

	"github.com/go-chi/chi/v5"

	"github.com/tollgate/tollgate/catalog"
)

// errorOf is the one place an error becomes an HTTP answer in AWS's
// shape: an apiError as it is; a body over its limit 413; a body that
// did not arrive in time 408; an invalid catalog change 400; a catalog
// changed meanwhile 409; a catalog that cannot be written 503; and the
// UpdateUsage rule's errors (catalog.ErrNoSuchKeyPlan 404, ErrNoQuota and
// ErrRemainingOutOfRange 400) and ErrNotSupported 501.
// Anything else is the server's failure: 500, its message prefixed with
// doing.
func errorOf(doing string, err error) *apiError {
	if ae := knownError(err); ae != nil {
		return ae
	}
	return internalError(doing, err)
}

// knownError is errorOf's answer for the errors it knows, nil for others.
func knownError(err error) *apiError {
	var ae *apiError
	if errors.As(err, &ae) {
		return ae
	}
	var mbe *http.MaxBytesError
	if errors.As(err, &mbe) {
		return tooLarge(mbe.Limit)
	}
	var ve *catalog.ValidationError
	switch {
	case errors.Is(err, os.ErrDeadlineExceeded):
		return errBodyTimeout
	case errors.As(err, &ve):
		return badRequest(strings.TrimPrefix(err.Error(), "invalid configuration:\n"))
	case errors.Is(err, catalog.ErrConflict):
		return &apiError{status: 409, errType: "ConflictException", msg: err.Error()}
	case errors.Is(err, catalog.ErrUnavailable):
		return &apiError{status: 503, errType: "ServiceUnavailableException", msg: err.Error()}
	case errors.Is(err, catalog.ErrNoSuchKeyPlan):
		return &apiError{status: 404, errType: "NotFoundException", msg: err.Error()}
	case errors.Is(err, catalog.ErrNoQuota), errors.Is(err, catalog.ErrRemainingOutOfRange):
		return badRequest(err.Error())
	case errors.Is(err, ErrNotSupported):
		return &apiError{status: 501, errType: "NotImplementedException", msg: err.Error()}
	}
	return nil
}

// urlParam is a path parameter of the route, as the id it names: chi
// routes on the escaped path when the request's path needed escaping (an
// id with "/" arrives as "a%2Fb"), and gives the parameter as it is
// there, so it is unescaped here, once for every route.
func urlParam(r *http.Request, name string) string {
	v := chi.URLParam(r, name)
	if r.URL.RawPath == "" {
		return v // routed on the decoded path: v is decoded
	}
	if u, err := url.PathUnescape(v); err == nil {
		return u
	}
	return v
}
