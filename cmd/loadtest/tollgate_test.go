package main

import (
	"strings"
	"testing"
)

func TestTollgateConfig(t *testing.T) {
	got := tollgateConfig("http://127.0.0.1:40555")
	want := `apis:
  - id: loadapi
    name: load-api
    stages:
      - name: prod
        upstream: http://127.0.0.1:40555
    resources:
      - path: /items
        methods: {GET: {apiKeyRequired: true}}
usagePlans:
  - name: Load
    throttle: {rateLimit: 1000000000, burstLimit: 1000000000}
    quota: {limit: 1000000000000, period: DAY}
    apiStages:
      - apiId: loadapi
        stage: prod
apiKeys:
  - name: load-key
    value: loadtest-key-0000000000000001
    enabled: true
    usagePlans: [Load]
`
	if got != want {
		t.Errorf("config =\n%s\nwant\n%s", got, want)
	}
	if strings.Contains(got, "\t") {
		t.Errorf("config holds a tab, which YAML refuses for indentation")
	}
}

func TestParseListenLine(t *testing.T) {
	tests := []struct {
		name     string
		line     string
		wantKind string
		wantAddr string
		wantOK   bool
	}{
		{
			name:     "gateway",
			line:     `time=2025-01-02T03:04:05.678Z level=INFO msg="gateway listening" addr=127.0.0.1:40123`,
			wantKind: "gateway", wantAddr: "127.0.0.1:40123", wantOK: true,
		},
		{
			name:     "admin with more attributes after",
			line:     `time=2025-01-02T03:04:05.678Z level=INFO msg="admin listening" addr=127.0.0.1:40124 tls=false`,
			wantKind: "admin", wantAddr: "127.0.0.1:40124", wantOK: true,
		},
		{
			name:     "quoted address, attributes before",
			line:     `time=x level=INFO component=gw msg="gateway listening" addr="[::1]:8080"`,
			wantKind: "gateway", wantAddr: "[::1]:8080", wantOK: true,
		},
		{
			name: "other message",
			line: `time=x level=INFO msg="catalog loaded" apis=1 addr=127.0.0.1:1`,
		},
		{
			name: "message in another attribute",
			line: `time=x level=WARN msg=retry err="gateway listening" addr=127.0.0.1:1`,
		},
		{
			name: "no address",
			line: `time=x level=INFO msg="gateway listening"`,
		},
		{
			name: "not logfmt",
			line: `panic: runtime error: invalid memory address`,
		},
		{
			name: "unterminated quote",
			line: `time=x msg="gateway listening addr=127.0.0.1:1`,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			kind, addr, ok := parseListenLine(tt.line)
			if kind != tt.wantKind || addr != tt.wantAddr || ok != tt.wantOK {
				t.Errorf("parseListenLine() = %q, %q, %v; want %q, %q, %v", kind, addr, ok, tt.wantKind, tt.wantAddr, tt.wantOK)
			}
		})
	}
}

func TestParseLogfmt(t *testing.T) {
	got := parseLogfmt(`time=t level=INFO msg="a \"quoted\" = value" empty= n=3 bare`)
	want := map[string]string{"time": "t", "level": "INFO", "msg": `a "quoted" = value`, "empty": "", "n": "3"}
	if len(got) != len(want) {
		t.Fatalf("parseLogfmt() = %q, want %q", got, want)
	}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("parseLogfmt()[%q] = %q, want %q", k, got[k], v)
		}
	}
}

func TestLineWriterSplitsLines(t *testing.T) {
	var got []string
	w := &lineWriter{onLine: func(l string) { got = append(got, l) }}
	for _, chunk := range []string{"listening on 127.", "0.0.1:9\r\nsecond\nthi", "rd\n"} {
		w.Write([]byte(chunk))
	}
	want := []string{"listening on 127.0.0.1:9", "second", "third"}
	if strings.Join(got, "|") != strings.Join(want, "|") {
		t.Errorf("lines = %q, want %q", got, want)
	}
}

func TestLineTailKeepsLast(t *testing.T) {
	tail := newLineTail(3)
	for _, l := range []string{"a", "b", "c", "d", "e"} {
		tail.add(l)
	}
	if got := strings.Join(tail.lines(), ","); got != "c,d,e" {
		t.Errorf("tail = %s, want c,d,e", got)
	}
}
