package enforcer

import (
	"net/http"
	"strconv"

	"github.com/tollgate/tollgate/schemas"
)

// rejection is a response the gateway gives itself, byte for byte as AWS
// API Gateway gives it. Header values are shared slices built once, so
// answering allocates almost nothing: floods of bad keys stay cheap.
//
// A rejection of a request with a body (or of one whose framing could not
// be trusted, and every answer to a failed exchange) closes the connection
// (Connection: close): nothing the client sent after the refused request
// is read as a request, and its body is not read before the answer (see
// linger for after). A refused request without a body keeps its
// connection: nothing of it is left unread (see Gateway.ServeHTTP).
type rejection struct {
	status  int
	body    []byte
	errType []string // x-amzn-ErrorType, nil for none
}

func newRejection(status int, msg, errType string) *rejection {
	r := &rejection{status: status, body: []byte(`{"message":"` + msg + `"}`)}
	if errType != "" {
		r.errType = []string{errType}
	}
	return r
}

var (
	rejForbidden    = newRejection(403, "Forbidden", "ForbiddenException")
	rejMissingToken = newRejection(403, "Missing Authentication Token", "MissingAuthenticationTokenException")
	rejNotFound     = newRejection(404, "Not Found", "NotFoundException")
	rejThrottled    = newRejection(429, "Too Many Requests", "TooManyRequestsException")
	rejQuota        = newRejection(429, "Limit Exceeded", "LimitExceededException")
	rejBadRequest   = newRejection(400, "Bad Request", "BadRequestException")
	rejBadGateway   = newRejection(502, "Bad Gateway", "")
	rejTimeout      = newRejection(504, "Endpoint request timed out", "")
	// AWS answers a payload over its 10 MB limit with 413 (the
	// REQUEST_TOO_LARGE gateway response); its body is not documented.
	rejTooLarge = newRejection(413, "Request Too Long", "")
	// A request body that did not arrive in time; AWS documents no
	// answer of its own for it.
	rejBodyTimeout = newRejection(408, "Request Timeout", "")
	// The fasthttp plane's answers to what its parser refuses, where
	// net/http answers in plain text (lean.go, refuse).
	rejHeadersTooLarge = newRejection(431, "Request Header Fields Too Large", "")
	rejNotImplemented  = newRejection(501, "Not Implemented", "")

	hvJSON  = []string{"application/json"}
	hvClose = []string{"close"}
)

const (
	hErrorType      = "X-Amzn-Errortype" // canonical form of x-amzn-ErrorType
	hContentType    = "Content-Type"
	hConnection     = "Connection"
	hRetryAfter     = "Retry-After"
	hRateLimit      = "Ratelimit"
	hRateLimitPol   = "Ratelimit-Policy"
	hAPIKey         = "X-Api-Key"
	hTollgateKeyID  = "X-Tollgate-Key-Id"
	hTollgatePlanID = "X-Tollgate-Plan-Id"
)

func rejectionFor(o schemas.Decision, notFound int) *rejection {
	switch o {
	case schemas.DecisionForbidden:
		return rejForbidden
	case schemas.DecisionMissingToken:
		if notFound == 404 {
			return rejNotFound
		}
		return rejMissingToken
	case schemas.DecisionThrottled:
		return rejThrottled
	case schemas.DecisionQuotaExceeded:
		return rejQuota
	default:
		return rejBadRequest
	}
}

// write sends the rejection, closing the connection after it when close
// is set; it returns the body length.
func (rj *rejection) write(w http.ResponseWriter, close bool) int64 {
	h := w.Header()
	h[hContentType] = hvJSON
	if close {
		h[hConnection] = hvClose
	}
	if rj.errType != nil {
		h[hErrorType] = rj.errType
	}
	w.WriteHeader(rj.status)
	n, _ := w.Write(rj.body)
	return int64(n)
}

// setRateLimitHeaders adds RateLimit-Policy and RateLimit (IETF httpapi
// draft) for a request that reached a plan, and Retry-After on a 429.
func setRateLimitHeaders(h http.Header, d *decision) {
	if d.plan != nil && (d.throttled || d.quotaed) {
		h[hRateLimitPol] = d.plan.policy
		var buf [96]byte
		h[hRateLimit] = []string{string(appendRateLimit(buf[:0], d))}
	}
	if d.outcome == schemas.DecisionThrottled || d.outcome == schemas.DecisionQuotaExceeded {
		var buf [20]byte
		h[hRetryAfter] = []string{string(appendRetryAfter(buf[:0], d))}
	}
}

// appendRateLimit appends the RateLimit header's value of a request that
// reached a plan's throttle or quota.
func appendRateLimit(b []byte, d *decision) []byte {
	if d.throttled {
		b = append(b, `"throttle";r=`...)
		b = strconv.AppendInt(b, d.tokensLeft, 10)
		b = append(b, ";t="...)
		b = strconv.AppendInt(b, d.throttleReset, 10)
	}
	if d.quotaed {
		if d.throttled {
			b = append(b, ", "...)
		}
		b = append(b, `"quota";r=`...)
		b = strconv.AppendInt(b, d.quotaLeft, 10)
		b = append(b, ";t="...)
		b = strconv.AppendInt(b, d.quotaReset, 10)
	}
	return b
}

// appendRetryAfter appends a 429's Retry-After value: whole seconds, at
// least one.
func appendRetryAfter(b []byte, d *decision) []byte {
	secs := int64(1)
	if d.retryAfter > 0 {
		secs = max((d.retryAfter+1e9-1)/1e9, 1)
	}
	return strconv.AppendInt(b, secs, 10)
}
