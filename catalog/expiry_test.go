package catalog

import (
	"strings"
	"testing"
)

// An expiry in a configuration file is the key's tag; one that is not an
// RFC 3339 time is refused naming the key, the tag and the file's line.
func TestExpiryTagInAFile(t *testing.T) {
	good := `usagePlans:
  - name: Free
apiKeys:
  - name: leaving
    value: leavingleavingleaving01
    enabled: true
    usagePlans: [Free]
    tags: {"tollgate:expiresAt": "2027-01-31T00:00:00Z"}
`
	c, _ := mustApply(t, &Catalog{}, good)
	k := c.KeyByName("leaving")
	if k == nil || k.ExpiresAt() != 1801353600e9 {
		t.Fatalf("the key's expiry: %+v", k)
	}
	bad := strings.Replace(good, "2027-01-31T00:00:00Z", "31/01/2027", 1)
	f, err := ParseFile("tollgate.yaml", []byte(bad))
	if err == nil {
		_, _, err = Apply(&Catalog{}, f, now)
	}
	if err == nil || !strings.Contains(err.Error(), `tags["tollgate:expiresAt"]`) || !strings.Contains(err.Error(), "not an RFC 3339 time") {
		t.Fatalf("a garbled expiry: %v", err)
	}
	if (&APIKey{Tags: map[string]string{ExpiresAtTag: "garbled"}}).ExpiresAt() != 0 || (&APIKey{}).ExpiresAt() != 0 {
		t.Fatal("a key without a valid expiry expires")
	}
}
