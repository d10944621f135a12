package main

import (
	"flag"
	"fmt"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// upstreamBody is the upstream's answer, about 100 bytes of JSON.
var upstreamBody = []byte(`{"items":[{"id":1,"name":"alpha","price":9.99},{"id":2,"name":"beta","price":19.5}],"count":2}` + "\n")

// forbiddenBody is what tollgate answers for an unknown key.
var forbiddenBody = []byte(`{"message":"Forbidden"}`)

// fixedResponse answers every request with status and a JSON body. Its
// header values are shared slices, set by map assignment, so answering
// allocates as little as net/http lets it.
func fixedResponse(status int, body []byte) http.Handler {
	contentType := []string{"application/json"}
	contentLength := []string{strconv.Itoa(len(body))}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h["Content-Type"] = contentType
		h["Content-Length"] = contentLength
		w.WriteHeader(status)
		w.Write(body)
	})
}

// upstreamHandler is the upstream: 200 and upstreamBody for any request.
func upstreamHandler(*flag.FlagSet) func() (http.Handler, error) {
	return func() (http.Handler, error) { return fixedResponse(http.StatusOK, upstreamBody), nil }
}

// rejectHandler is the rejection baseline: 403 at once for any request.
func rejectHandler(*flag.FlagSet) func() (http.Handler, error) {
	return func() (http.Handler, error) { return fixedResponse(http.StatusForbidden, forbiddenBody), nil }
}

// proxyHandler is the proxy baseline; it needs --target.
func proxyHandler(fs *flag.FlagSet) func() (http.Handler, error) {
	target := fs.String("target", "", "upstream base URL, e.g. http://127.0.0.1:8081 (required)")
	return func() (http.Handler, error) {
		u, err := url.Parse(*target)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return nil, fmt.Errorf("--target %q must be an http(s) URL with a host", *target)
		}
		return newBareProxy(u, stagePrefix), nil
	}
}

// stagePrefix is the stage the gateway strips from the path.
const stagePrefix = "/prod"

// newBareProxy is the baseline tollgate is measured against: a bare
// httputil.ReverseProxy with a tuned transport that, like the gateway,
// serves only paths under stage and strips stage before proxying.
func newBareProxy(target *url.URL, stage string) http.Handler {
	rp := &httputil.ReverseProxy{
		Rewrite: func(pr *httputil.ProxyRequest) {
			// pr.Out is ReverseProxy's own copy, so changing it is free.
			out := pr.Out.URL
			out.Path = stripStage(out.Path, stage)
			if out.RawPath != "" {
				out.RawPath = stripStage(out.RawPath, stage)
			}
			pr.SetURL(target)
			pr.SetXForwarded()
		},
		Transport: newBaselineTransport(),
	}
	notFound := fixedResponse(http.StatusNotFound, []byte(`{"message":"Not Found"}`))
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !underStage(r.URL.Path, stage) {
			notFound.ServeHTTP(w, r)
			return
		}
		rp.ServeHTTP(w, r)
	})
}

// newBaselineTransport is the baseline proxy's transport, tuned exactly as
// the performance budget was measured.
func newBaselineTransport() *http.Transport {
	return &http.Transport{
		Proxy:                 nil,
		DialContext:           (&net.Dialer{Timeout: 5 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
		MaxIdleConns:          1024,
		MaxIdleConnsPerHost:   1024,
		IdleConnTimeout:       90 * time.Second,
		ResponseHeaderTimeout: 30 * time.Second,
		ForceAttemptHTTP2:     false,
	}
}

// underStage reports whether path is stage itself or below it.
func underStage(path, stage string) bool {
	rest, ok := strings.CutPrefix(path, stage)
	return ok && (rest == "" || rest[0] == '/')
}

// stripStage removes stage from the front of path: "/prod/items" becomes
// "/items" and "/prod" becomes "/"; other paths are returned unchanged.
func stripStage(path, stage string) string {
	if !underStage(path, stage) {
		return path
	}
	if rest := path[len(stage):]; rest != "" {
		return rest
	}
	return "/"
}
