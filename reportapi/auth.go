package reportapi

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	v4 "github.com/aws/aws-sdk-go-v2/aws/signer/v4"
	"github.com/tollgate/tollgate/catalog"
)

// Credentials authenticate admin requests: an AWS Signature Version 4
// signed with the access key pair (what awscli and boto3 send), or
// `Authorization: Bearer <Token>` for curl.
type Credentials struct {
	AccessKeyID     string `json:"accessKeyId"`
	SecretAccessKey string `json:"secretAccessKey"`
	// Token is the bearer token. Empty: bearer tokens are refused.
	Token string `json:"token,omitempty"`
}

// Validate reports missing parts.
func (c Credentials) Validate() error {
	var errs []error
	if c.AccessKeyID == "" {
		errs = append(errs, errors.New("admin credentials: access key id is empty"))
	}
	if c.SecretAccessKey == "" {
		errs = append(errs, errors.New("admin credentials: secret access key is empty"))
	}
	return errors.Join(errs...)
}

// maxClockSkew is how far a signature's time may be from ours, as AWS
// allows.
const maxClockSkew = 15 * time.Minute

// authenticator checks admin requests. The signature is recomputed with
// the AWS SDK's own SigV4 signer over the headers the client signed, and
// compared in constant time: no signing code of our own.
//
// A SigV4 signature covers the body's hash, so the body is read before the
// caller is known; anyone who has seen the access key id (it is not
// secret) can make the server read one. What that costs is bounded:
// every header check is made first, the body may not exceed its route's
// bound (bodyLimit), its buffer grows only as its bytes arrive, all such
// buffers together take at most unknownBodyBudget bytes (past it, 429), and
// a body must arrive whole within unknownBodyTimeout (past it, 408).
type authenticator struct {
	creds  Credentials
	now    func() time.Time
	signer *v4.Signer
	// budget holds the bytes of the bodies being read before their
	// senders are known, across all connections.
	budget *bodyBudget
	// bodyTimeout is how long the server waits for the whole of such a
	// body.
	bodyTimeout time.Duration
}

// Reading bodies before their senders are known: at most
// unknownBodyBudget bytes of them at once in all, each body within
// unknownBodyTimeout. The budget holds two of the largest bodies a route
// takes (maxFileBody, about 26 MiB with the buffers outgrown on the way)
// or thirty of the largest JSON bodies; the timeout asks 1 MiB/s of a
// client sending the largest body.
const (
	unknownBodyBudget  = 64 << 20
	unknownBodyTimeout = 10 * time.Second
)

func newAuthenticator(c Credentials, now func() time.Time) *authenticator {
	return &authenticator{creds: c, now: now, signer: v4.NewSigner(), budget: newBodyBudget(unknownBodyBudget), bodyTimeout: unknownBodyTimeout}
}

// Errors as AWS answers them.
var (
	errMissingToken = &apiError{status: 403, errType: "MissingAuthenticationTokenException", msg: "Missing Authentication Token"}
	errUnrecognized = &apiError{status: 403, errType: "UnrecognizedClientException", msg: "The security token included in the request is invalid."}
	errBadSignature = &apiError{status: 403, errType: "InvalidSignatureException",
		msg: "The request signature we calculated does not match the signature you provided. Check your AWS Secret Access Key and signing method. Consult the service documentation for details."}
)

func incomplete(msg string) *apiError {
	return &apiError{status: 403, errType: "IncompleteSignatureException", msg: msg}
}

func (a *authenticator) middleware(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		// Handlers read through the same bound (and answer 413 past it).
		r.Body = http.MaxBytesReader(w, r.Body, bodyLimit(r))
		if actor, ok := r.Context().Value(inProcessActor{}).(string); ok {
			// The console's call (Console.Call): its user signed in there.
			next.ServeHTTP(w, r.WithContext(catalog.WithActor(r.Context(), actor, r.Method+" "+r.URL.Path)))
			return
		}
		actor, err := a.check(w, r)
		if err != nil {
			if r.ContentLength != 0 {
				// Part of the body may be unread: close rather than
				// read the rest of it to keep the connection.
				w.Header().Set("Connection", "close")
			}
			err.write(w)
			return
		}
		next.ServeHTTP(w, r.WithContext(catalog.WithActor(r.Context(), actor, r.Method+" "+r.URL.Path)))
	})
}

// check authenticates r and returns who made it: the access key id, or
// "bearer token".
func (a *authenticator) check(w http.ResponseWriter, r *http.Request) (string, *apiError) {
	h := r.Header.Get("Authorization")
	switch {
	case h == "":
		return "", errMissingToken
	case strings.HasPrefix(h, "Bearer "):
		tok := strings.TrimPrefix(h, "Bearer ")
		if a.creds.Token == "" || subtle.ConstantTimeCompare([]byte(tok), []byte(a.creds.Token)) != 1 {
			return "", errUnrecognized
		}
		return "bearer token", nil
	case strings.HasPrefix(h, "AWS4-HMAC-SHA256 "):
		if err := a.checkSigV4(w, r, h); err != nil {
			return "", err
		}
		return a.creds.AccessKeyID, nil
	default:
		return "", incomplete("Authorization header must be AWS4-HMAC-SHA256 (Signature Version 4) or Bearer")
	}
}

// sigV4 is a parsed Signature Version 4 Authorization header.
type sigV4 struct {
	accessKey, date, region, service string
	signedHeaders                    string
	signature                        string
}

func parseSigV4(h string) (sigV4, *apiError) {
	var s sigV4
	for _, part := range strings.Split(strings.TrimPrefix(h, "AWS4-HMAC-SHA256 "), ",") {
		k, v, _ := strings.Cut(strings.TrimSpace(part), "=")
		switch k {
		case "Credential":
			scope := strings.Split(v, "/")
			if len(scope) != 5 || scope[4] != "aws4_request" {
				return s, incomplete("Credential must have the form ACCESS_KEY/DATE/REGION/SERVICE/aws4_request")
			}
			s.accessKey, s.date, s.region, s.service = scope[0], scope[1], scope[2], scope[3]
		case "SignedHeaders":
			s.signedHeaders = v
		case "Signature":
			s.signature = v
		}
	}
	switch {
	case s.accessKey == "":
		return s, incomplete("Authorization header requires 'Credential' parameter.")
	case s.signedHeaders == "":
		return s, incomplete("Authorization header requires 'SignedHeaders' parameter.")
	case s.signature == "":
		return s, incomplete("Authorization header requires 'Signature' parameter.")
	}
	return s, nil
}

func (a *authenticator) checkSigV4(w http.ResponseWriter, r *http.Request, h string) *apiError {
	s, perr := parseSigV4(h)
	if perr != nil {
		return perr
	}
	if subtle.ConstantTimeCompare([]byte(s.accessKey), []byte(a.creds.AccessKeyID)) != 1 {
		return errUnrecognized
	}
	amzDate := r.Header.Get("X-Amz-Date")
	t, err := time.Parse("20060102T150405Z", amzDate)
	if err != nil {
		return incomplete("Authorization header requires existence of either a 'X-Amz-Date' or a 'Date' header.")
	}
	if now := a.now(); t.Before(now.Add(-maxClockSkew)) || t.After(now.Add(maxClockSkew)) {
		return &apiError{status: 403, errType: "InvalidSignatureException",
			msg: "Signature expired: " + amzDate + " is not within 15 minutes of the server's time " + now.UTC().Format("20060102T150405Z") + "."}
	}
	if s.date != amzDate[:8] {
		return incomplete("Credential should be scoped to a valid date: " + amzDate[:8] + ".")
	}
	if perr := checkSignedHeaders(r, s.signedHeaders); perr != nil {
		return perr
	}
	if r.Header.Get("X-Amz-Content-Sha256") == "UNSIGNED-PAYLOAD" {
		// Only S3 accepts an unsigned body; here the body must be signed.
		return errBadSignature
	}
	// Everything that can be checked without the body has passed.
	limit := bodyLimit(r)
	if r.ContentLength > limit {
		return tooLarge(limit)
	}
	body, held, perr := a.readBody(w, r, limit)
	if perr != nil {
		return perr
	}
	// The body is the caller's to keep once known, and garbage if not.
	defer a.budget.give(held)
	r.Body = io.NopCloser(bytes.NewReader(body))
	sum := sha256.Sum256(body)
	payloadHash := hex.EncodeToString(sum[:])

	// Rebuild the request as the client signed it: only its signed
	// headers, and the signer adds host and content-length itself.
	u := *r.URL
	u.Scheme, u.Host = "http", r.Host
	c := &http.Request{Method: r.Method, URL: &u, Host: r.Host, Header: http.Header{}}
	signedCL := false
	for _, name := range strings.Split(s.signedHeaders, ";") {
		switch name {
		case "host":
		case "content-length":
			signedCL = true
		default:
			if vs, ok := r.Header[http.CanonicalHeaderKey(name)]; ok {
				c.Header[http.CanonicalHeaderKey(name)] = vs
			}
		}
	}
	if signedCL {
		c.ContentLength = int64(len(body))
	}
	creds := aws.Credentials{AccessKeyID: a.creds.AccessKeyID, SecretAccessKey: a.creds.SecretAccessKey,
		SessionToken: r.Header.Get("X-Amz-Security-Token")}
	if err := a.signer.SignHTTP(context.Background(), creds, c, payloadHash, s.service, s.region, t); err != nil {
		return errBadSignature
	}
	mine, _ := parseSigV4(c.Header.Get("Authorization"))
	if mine.signedHeaders != s.signedHeaders || subtle.ConstantTimeCompare([]byte(mine.signature), []byte(s.signature)) != 1 {
		return errBadSignature
	}
	return nil
}

// checkSignedHeaders refuses, before any body is read, a SignedHeaders
// list that no signature could match: names must be lowercase, sorted and
// each listed once (as SigV4 canonicalises them), host and x-amz-date
// must be among them (every SigV4 signer signs both), and every name must
// be in the request.
func checkSignedHeaders(r *http.Request, list string) *apiError {
	names := strings.Split(list, ";")
	var host, date bool
	for i, name := range names {
		switch {
		case name == "" || strings.ToLower(name) != name:
			return incomplete("SignedHeaders must list lowercase header names separated by ';'.")
		case i > 0 && names[i-1] >= name:
			return incomplete("SignedHeaders must list each header once, sorted.")
		case name == "host":
			host = true
		case name == "content-length":
			if r.ContentLength < 0 {
				return incomplete("SignedHeaders lists content-length, which the request does not have.")
			}
		default:
			if _, ok := r.Header[http.CanonicalHeaderKey(name)]; !ok {
				return incomplete("SignedHeaders lists " + strconv.Quote(name) + ", which the request does not have.")
			}
			date = date || name == "x-amz-date"
		}
	}
	if !host || !date {
		return incomplete("SignedHeaders must include host and x-amz-date.")
	}
	return nil
}

// readBody reads the body of a request whose sender is not yet known, of
// at most limit bytes. Its buffer grows (doubling) only as bytes arrive,
// and every buffer it makes, outgrown ones included (they stay on the heap
// until collected), is taken from the budget first: past the budget,
// errBusy. A body of n bytes so takes about 2n, at most 2.6n. The whole
// body must arrive within a.bodyTimeout: past it, errBodyTimeout, and the
// connection stays past its read deadline, so that nothing more is read
// from it. On success the caller gives held back to the budget; on
// failure readBody has.
func (a *authenticator) readBody(w http.ResponseWriter, r *http.Request, limit int64) (body []byte, held int64, _ *apiError) {
	if r.ContentLength == 0 {
		return nil, 0, nil
	}
	rc := http.NewResponseController(w)
	// A writer that cannot set deadlines (a test recorder) reads no
	// network: the server's own ReadTimeout is the bound then.
	timed := rc.SetReadDeadline(time.Now().Add(a.bodyTimeout)) == nil
	// The most the buffer may need: the declared length, or one byte
	// past the bound (which MaxBytesReader turns into an error).
	most := limit + 1
	if r.ContentLength > 0 {
		most = r.ContentLength
	}
	var buf []byte
	for {
		if len(buf) == cap(buf) {
			if int64(len(buf)) == r.ContentLength {
				break
			}
			grown := min(max(2*int64(cap(buf)), bytes.MinRead), most)
			if !a.budget.take(grown) {
				a.budget.give(held)
				return nil, 0, errBusy
			}
			held += grown
			buf = append(make([]byte, 0, grown), buf...)
		}
		n, err := r.Body.Read(buf[len(buf):cap(buf)])
		buf = buf[:len(buf)+n]
		if err == io.EOF {
			break
		}
		if err != nil {
			a.budget.give(held)
			return nil, 0, bodyError(err, limit)
		}
	}
	if timed {
		// The body is in: the handler's time is not the sender's.
		// (net/http clears the deadline too once it sees the body's
		// end; this does not depend on it.)
		rc.SetReadDeadline(time.Time{})
	}
	return buf, held, nil
}

// bodyBudget is a number of bytes shared by the requests that take from
// it.
type bodyBudget struct {
	mu   sync.Mutex
	size int64
	used int64
}

func newBodyBudget(size int64) *bodyBudget { return &bodyBudget{size: size} }

// take takes n bytes if that many are left.
func (b *bodyBudget) take(n int64) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.used+n > b.size {
		return false
	}
	b.used += n
	return true
}

// give gives n bytes back.
func (b *bodyBudget) give(n int64) {
	b.mu.Lock()
	b.used -= n
	b.mu.Unlock()
}

// held reports the bytes taken.
func (b *bodyBudget) held() int64 {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.used
}

// errBusy answers a body that would take the budget past its size: AWS's
// throttling error, which SDKs retry.
var errBusy = &apiError{status: 429, errType: "TooManyRequestsException",
	msg: "Too Many Requests: too many request bodies are being read before their senders are known; retry"}

// errBodyTimeout answers a body that did not arrive in time; SDKs retry
// it too.
var errBodyTimeout = &apiError{status: http.StatusRequestTimeout, errType: "RequestTimeoutException",
	msg: "Request Timeout: the request body did not arrive in time"}

// apiError is an error in AWS's wire shape: a status, a JSON message and
// x-amzn-ErrorType.
type apiError struct {
	status  int
	errType string
	msg     string
}

func (e *apiError) Error() string { return e.errType + ": " + e.msg }

func (e *apiError) write(w http.ResponseWriter) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("X-Amzn-Errortype", e.errType)
	w.WriteHeader(e.status)
	b, _ := json.Marshal(map[string]string{"message": e.msg})
	w.Write(b)
}

// Sign signs req (whose body is payload) with SigV4 for the admin API, as
// awscli would: clients of tollgate use it instead of a bearer token.
func Sign(req *http.Request, payload []byte, c Credentials, at time.Time) error {
	sum := sha256.Sum256(payload)
	return v4.NewSigner().SignHTTP(context.Background(), aws.Credentials{AccessKeyID: c.AccessKeyID, SecretAccessKey: c.SecretAccessKey},
		req, hex.EncodeToString(sum[:]), "apigateway", "us-east-1", at)
}
