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
