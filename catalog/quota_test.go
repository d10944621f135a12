package catalog

import (
	"errors"
	"strings"
	"testing"
	"time"
)

func TestQuotaTarget(t *testing.T) {
	yaml := issueExample + `
  - name: No-Quota
    value: noquotanoquotanoquota1
    usagePlans: [Unlimited]
`
	yaml = strings.Replace(yaml, "apiKeys:", `  - name: Unlimited
    apiStages: [{apiId: abc123api, stage: prod}]
apiKeys:`, 1)
	c, _ := mustApply(t, &Catalog{}, yaml)
	s := StateOf(c)
	var plan, key, unlimited, other string
	for _, p := range c.UsagePlans {
		if p.Name == "Free Tier" {
			plan = p.ID
		} else {
			unlimited = p.ID
		}
	}
	for _, k := range c.APIKeys {
		if k.Name == "Partner-Widget-Inc" {
			key = k.ID
		} else {
			other = k.ID
		}
	}
	at := now.UnixNano()
	used, start, err := s.QuotaTarget(plan, key, 30, at)
	if err != nil || used != 70 || start != now.Truncate(24*time.Hour).UnixNano() {
		t.Fatalf("QuotaTarget(30 of 100 left) = %d, %d, %v; want 70 used since the day's start", used, start, err)
	}
	for _, tt := range []struct {
		plan, key string
		remaining int64
		want      error
		msg       string
	}{
		{plan, key, 101, ErrRemainingOutOfRange, "between 0 and the period's limit 100, got 101"},
		{plan, key, -1, ErrRemainingOutOfRange, "got -1"},
		{"nope", key, 1, ErrNoSuchKeyPlan, ""},
		{plan, "nope", 1, ErrNoSuchKeyPlan, ""},
		{plan, other, 1, ErrNoSuchKeyPlan, ""}, // a key of another plan
		{unlimited, other, 1, ErrNoQuota, ""},
	} {
		_, _, err := s.QuotaTarget(tt.plan, tt.key, tt.remaining, at)
		if !errors.Is(err, tt.want) || !strings.Contains(err.Error(), tt.msg) {
			t.Errorf("QuotaTarget(%s, %s, %d) = %v, want %v saying %q", tt.plan, tt.key, tt.remaining, err, tt.want, tt.msg)
		}
	}
	// The bounds are inclusive: all of the limit, or nothing.
	for _, r := range []int64{0, 100} {
		if used, _, err := s.QuotaTarget(plan, key, r, at); err != nil || used != 100-r {
			t.Errorf("QuotaTarget(%d left) = %d, %v", r, used, err)
		}
	}
}
