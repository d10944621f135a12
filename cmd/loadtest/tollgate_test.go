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
  - name: Tight
    throttle: {rateLimit: 1, burstLimit: 1}
    quota: {limit: 1000000000000, period: DAY}
    apiStages:
      - apiId: loadapi
        stage: prod
apiKeys:
  - name: load-key
    value: loadtest-key-0000000000000001
    enabled: true
    usagePlans: [Load]
  - name: tight-key
    value: loadtest-key-0000000000000002
    enabled: true
    usagePlans: [Tight]
`
	if got != want {
		t.Errorf("config =\n%s\nwant\n%s", got, want)
	}
	if strings.Contains(got, "\t") {
		t.Errorf("config holds a tab, which YAML refuses for indentation")
	}
}
