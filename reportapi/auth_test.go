package reportapi

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"runtime"
	"runtime/debug"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	v4 "github.com/aws/aws-sdk-go-v2/aws/signer/v4"
	"github.com/prometheus/client_golang/prometheus"
)

var testCreds = Credentials{AccessKeyID: "TGAKTESTTESTTESTTEST", SecretAccessKey: "secretsecretsecretsecretsecretsecret0000", Token: "bearer-token-0000000000000001"}

func newTestServer(t *testing.T) *httptest.Server {
	t.Helper()
	h, err := New(Config{Ready: func() bool { return true }, Credentials: testCreds,
		Metrics: prometheus.NewRegistry()})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	return srv
}

// sign signs req as an AWS SDK client does.
func sign(t *testing.T, req *http.Request, body []byte, creds Credentials, region string, at time.Time) {
	t.Helper()
	sum := sha256.Sum256(body)
	err := v4.NewSigner().SignHTTP(context.Background(), aws.Credentials{AccessKeyID: creds.AccessKeyID, SecretAccessKey: creds.SecretAccessKey},
		req, hex.EncodeToString(sum[:]), "apigateway", region, at)
	if err != nil {
		t.Fatal(err)
	}
}

type result struct {
	status  int
	errType string
	message string
}

func send(t *testing.T, req *http.Request) result {
	t.Helper()
	r, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Body.Close()
	b, _ := io.ReadAll(r.Body)
	var m struct{ Message string }
	json.Unmarshal(b, &m)
	return result{r.StatusCode, r.Header.Get("x-amzn-ErrorType"), m.Message}
}

func TestAuthentication(t *testing.T) {
	srv := newTestServer(t)
	body := []byte(`{"name":"x"}`)
	req := func(method, path string, b []byte) *http.Request {
		r, _ := http.NewRequest(method, srv.URL+path, bytes.NewReader(b))
		r.Header.Set("Content-Type", "application/json")
		return r
	}
	now := time.Now()
	other := testCreds
	other.SecretAccessKey = "wrongwrongwrongwrongwrongwrongwrongwrong"
	stranger := testCreds
	stranger.AccessKeyID = "TGAKSOMEONEELSE00000"
	tests := []struct {
		name  string
		build func() *http.Request
		want  result
	}{
		{"no credentials", func() *http.Request { return req("GET", "/metrics", nil) },
			result{403, "MissingAuthenticationTokenException", "Missing Authentication Token"}},
		{"no credentials, unknown path", func() *http.Request { return req("GET", "/nope", nil) },
			result{403, "MissingAuthenticationTokenException", "Missing Authentication Token"}},
		{"bearer", func() *http.Request {
			r := req("GET", "/metrics", nil)
			r.Header.Set("Authorization", "Bearer "+testCreds.Token)
			return r
		}, result{200, "", ""}},
		{"wrong bearer", func() *http.Request {
			r := req("GET", "/metrics", nil)
			r.Header.Set("Authorization", "Bearer nope")
			return r
		}, result{403, "UnrecognizedClientException", "The security token included in the request is invalid."}},
		{"signed GET with query", func() *http.Request {
			r := req("GET", "/metrics?limit=5&name=a%20b", nil)
			sign(t, r, nil, testCreds, "us-east-1", now)
			return r
		}, result{200, "", ""}},
		{"signed POST, any region", func() *http.Request {
			r := req("POST", "/nope", body)
			sign(t, r, body, testCreds, "eu-west-3", now)
			return r
		}, result{404, "NotFoundException", "Invalid request path"}},
		{"wrong secret", func() *http.Request {
			r := req("GET", "/metrics", nil)
			sign(t, r, nil, other, "us-east-1", now)
			return r
		}, result{403, "InvalidSignatureException", errBadSignature.msg}},
		{"unknown access key", func() *http.Request {
			r := req("GET", "/metrics", nil)
			sign(t, r, nil, stranger, "us-east-1", now)
			return r
		}, result{403, "UnrecognizedClientException", "The security token included in the request is invalid."}},
		{"body changed after signing", func() *http.Request {
			r := req("POST", "/metrics", []byte(`{"name":"y"}`))
			sign(t, r, body, testCreds, "us-east-1", now)
			return r
		}, result{403, "InvalidSignatureException", errBadSignature.msg}},
		{"query changed after signing", func() *http.Request {
			r := req("GET", "/metrics?limit=5", nil)
			sign(t, r, nil, testCreds, "us-east-1", now)
			r.URL.RawQuery = "limit=500"
			return r
		}, result{403, "InvalidSignatureException", errBadSignature.msg}},
		{"signed header changed", func() *http.Request {
			r := req("GET", "/metrics", nil)
			sign(t, r, nil, testCreds, "us-east-1", now)
			r.Header.Set("Content-Type", "text/plain")
			return r
		}, result{403, "InvalidSignatureException", errBadSignature.msg}},
		{"unsigned payload", func() *http.Request {
			r := req("POST", "/metrics", body)
			r.Header.Set("X-Amz-Content-Sha256", "UNSIGNED-PAYLOAD")
			err := v4.NewSigner().SignHTTP(context.Background(), aws.Credentials{AccessKeyID: testCreds.AccessKeyID, SecretAccessKey: testCreds.SecretAccessKey},
				r, "UNSIGNED-PAYLOAD", "apigateway", "us-east-1", now)
			if err != nil {
				t.Fatal(err)
			}
			return r
		}, result{403, "InvalidSignatureException", errBadSignature.msg}},
		{"expired", func() *http.Request {
			r := req("GET", "/metrics", nil)
			sign(t, r, nil, testCreds, "us-east-1", now.Add(-20*time.Minute))
			return r
		}, result{403, "InvalidSignatureException", ""}},
		{"malformed", func() *http.Request {
			r := req("GET", "/metrics", nil)
			r.Header.Set("Authorization", "AWS4-HMAC-SHA256 Signature=abc")
			return r
		}, result{403, "IncompleteSignatureException", "Authorization header requires 'Credential' parameter."}},
		{"signed headers without host", func() *http.Request {
			r := req("GET", "/metrics", nil)
			sign(t, r, nil, testCreds, "us-east-1", now)
			r.Header.Set("Authorization", strings.Replace(r.Header.Get("Authorization"), "content-type;host;", "content-type;", 1))
			return r
		}, result{403, "IncompleteSignatureException", "SignedHeaders must include host and x-amz-date."}},
		{"signed headers unsorted", func() *http.Request {
			r := req("GET", "/metrics", nil)
			sign(t, r, nil, testCreds, "us-east-1", now)
			r.Header.Set("Authorization", strings.Replace(r.Header.Get("Authorization"), "host;x-amz-date", "x-amz-date;host", 1))
			return r
		}, result{403, "IncompleteSignatureException", "SignedHeaders must list each header once, sorted."}},
		{"signed header missing", func() *http.Request {
			r := req("GET", "/metrics", nil)
			sign(t, r, nil, testCreds, "us-east-1", now)
			r.Header.Del("Content-Type")
			return r
		}, result{403, "IncompleteSignatureException", "SignedHeaders lists \"content-type\", which the request does not have."}},
		{"body over the route's bound", func() *http.Request {
			big := bytes.Repeat([]byte("a"), maxJSONBody+1)
			r := req("POST", "/nope", big)
			sign(t, r, big, testCreds, "us-east-1", now)
			return r
		}, result{413, "PayloadTooLargeException", ""}},
		{"other scheme", func() *http.Request {
			r := req("GET", "/metrics", nil)
			r.Header.Set("Authorization", "Basic YTpi")
			return r
		}, result{403, "IncompleteSignatureException", ""}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := send(t, tt.build())
			if got.status != tt.want.status || got.errType != tt.want.errType || tt.want.message != "" && got.message != tt.want.message {
				t.Errorf("got %+v, want %+v", got, tt.want)
			}
		})
	}
	// Health needs no credentials.
	if got := send(t, req("GET", "/healthz", nil)); got.status != 200 {
		t.Errorf("healthz: %+v", got)
	}
}

func TestConfigNeedsCredentials(t *testing.T) {
	_, err := New(Config{Ready: func() bool { return true }})
	if err == nil || !strings.Contains(err.Error(), "access key id is empty") || !strings.Contains(err.Error(), "secret access key is empty") {
		t.Errorf("err = %v", err)
	}
}

// The real AWS CLI signs requests that pass, and a wrong secret fails.
// Set TOLLGATE_REQUIRE_AWSCLI=1 (CI does) to fail instead of skipping
// when aws is not installed.
func TestAWSCLISignatures(t *testing.T) {
	awsBin, err := exec.LookPath("aws")
	if err != nil {
		if os.Getenv("TOLLGATE_REQUIRE_AWSCLI") == "1" {
			t.Fatal("aws CLI not found and TOLLGATE_REQUIRE_AWSCLI=1")
		}
		t.Skip("aws CLI not installed")
	}
	srv := newTestServer(t)
	run := func(secret string) string {
		ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		defer cancel()
		cmd := exec.CommandContext(ctx, awsBin, "apigateway", "get-api-keys", "--endpoint-url", srv.URL, "--region", "us-west-2")
		cmd.Env = append(os.Environ(), "AWS_ACCESS_KEY_ID="+testCreds.AccessKeyID, "AWS_SECRET_ACCESS_KEY="+secret,
			"AWS_CONFIG_FILE=/dev/null", "AWS_SHARED_CREDENTIALS_FILE=/dev/null", "AWS_MAX_ATTEMPTS=1", "AWS_RETRY_MODE=standard",
			"AWS_PAGER=", "AWS_EC2_METADATA_DISABLED=true")
		out, _ := cmd.CombinedOutput()
		return string(out)
	}
	// No endpoint is there yet: a signature that passes reaches 404.
	if out := run(testCreds.SecretAccessKey); !strings.Contains(out, "NotFoundException") {
		t.Errorf("aws with the right secret: %s", out)
	}
	if out := run("wrongwrongwrongwrongwrongwrongwrongwrong"); !strings.Contains(out, "InvalidSignatureException") {
		t.Errorf("aws with a wrong secret: %s", out)
	}
}

// zeros is an endless body that costs the sender nothing.
type zeros struct{}

func (zeros) Read(p []byte) (int, error) {
	clear(p)
	return len(p), nil
}

// Callers who know only the access key id (it is not secret) send large
// bodies with bogus signatures: the server answers each promptly and
// holds a bounded amount of memory, because it reads no more than the
// route takes, and the bodies read at once share one budget.
func TestUnauthenticatedBodiesAreBounded(t *testing.T) {
	c := newAdminAt(t, time.Now)
	bogus := testCreds
	bogus.SecretAccessKey = "wrongwrongwrongwrongwrongwrongwrongwrong"
	type shot struct {
		name    string
		path    string
		size    int64
		chunked bool // no Content-Length: the server finds out by reading
		n       int
		want    int
	}
	shots := []shot{
		{"JSON route, declared length", "/apikeys", 24 << 20, false, 6, 413},
		{"JSON route, chunked", "/usageplans", 24 << 20, true, 6, 413},
		{"import over its bound, declared length", "/apikeys?mode=import&format=csv", 24 << 20, false, 4, 413},
		{"import over its bound, chunked", "/apikeys?mode=import&format=csv", 24 << 20, true, 2, 413},
		{"import within its bound", "/apikeys?mode=import&format=csv", 8 << 20, false, 6, 403},
	}
	// Collect often, so that heap in use follows what is live.
	defer debug.SetGCPercent(debug.SetGCPercent(10))
	runtime.GC()
	var before runtime.MemStats
	runtime.ReadMemStats(&before)
	var peak atomic.Uint64
	stop := make(chan struct{})
	sampled := make(chan struct{})
	go func() {
		defer close(sampled)
		var m runtime.MemStats
		for {
			runtime.ReadMemStats(&m)
			if m.HeapInuse > peak.Load() {
				peak.Store(m.HeapInuse)
			}
			select {
			case <-stop:
				return
			case <-time.After(2 * time.Millisecond):
			}
		}
	}()
	type answer struct {
		shot    string
		status  int
		elapsed time.Duration
		err     error
	}
	answers := make(chan answer, 64)
	var wg sync.WaitGroup
	for _, s := range shots {
		for range s.n {
			wg.Add(1)
			go func() {
				defer wg.Done()
				req, _ := http.NewRequest("POST", c.url+s.path, io.LimitReader(zeros{}, s.size))
				if !s.chunked {
					req.ContentLength = s.size
				}
				sign(t, req, nil, bogus, "us-east-1", time.Now())
				start := time.Now()
				resp, err := http.DefaultClient.Do(req)
				a := answer{shot: s.name, err: err, elapsed: time.Since(start)}
				if err == nil {
					io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
					a.status = resp.StatusCode
				}
				answers <- a
			}()
		}
	}
	wg.Wait()
	close(stop)
	<-sampled
	close(answers)
	var after runtime.MemStats
	runtime.ReadMemStats(&after)
	want := map[string]int{}
	for _, s := range shots {
		want[s.name] = s.want
	}
	busy := 0
	for a := range answers {
		if a.err != nil {
			t.Errorf("%s: %v", a.shot, a.err)
			continue
		}
		// 429: the bodies read at once took the whole budget.
		if a.status != want[a.shot] && a.status != 429 {
			t.Errorf("%s: status %d, want %d (or 429)", a.shot, a.status, want[a.shot])
		}
		if a.status == 429 {
			busy++
		}
		if a.elapsed > 20*time.Second {
			t.Errorf("%s: answered after %v, want promptly", a.shot, a.elapsed)
		}
	}
	t.Logf("%d answered 429", busy)
	const mib = 1 << 20
	inuse := int64(peak.Load()) - int64(before.HeapInuse)
	alloc := after.TotalAlloc - before.TotalAlloc
	t.Logf("peak heap in use +%d MiB, allocated %d MiB", inuse/mib, alloc/mib)
	// The budget (outgrown buffers count in it too), and some slack.
	if limit := int64(unknownBodyBudget + 16*mib); inuse > limit {
		t.Errorf("peak heap in use grew by %d MiB, want at most %d MiB", inuse/mib, limit/mib)
	}
	if limit := uint64(256 * mib); alloc > limit {
		t.Errorf("allocated %d MiB, want at most %d MiB", alloc/mib, limit/mib)
	}
}
