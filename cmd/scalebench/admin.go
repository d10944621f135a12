package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
)

// admin calls a tollgate admin API with the bearer token.
type admin struct {
	base, token string
	http        *http.Client
}

func newAdmin(addr, token string, client *http.Client) *admin {
	return &admin{base: "http://" + addr, token: token, http: client}
}

// call sends a request and returns the body of an answer with status
// want; any other answer is an error with the API's message.
func (a *admin) call(ctx context.Context, method, path string, body []byte, contentType string, want int) ([]byte, error) {
	req, err := http.NewRequestWithContext(ctx, method, a.base+path, bytes.NewReader(body))
	if err != nil {
		return nil, err
	}
	req.Header.Set("Authorization", "Bearer "+a.token)
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	resp, err := a.http.Do(req)
	if err != nil {
		return nil, fmt.Errorf("%s %s: %w", method, path, err)
	}
	defer resp.Body.Close()
	out, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, fmt.Errorf("%s %s: %w", method, path, err)
	}
	if resp.StatusCode != want {
		return nil, fmt.Errorf("%s %s: %d %s", method, path, resp.StatusCode, strings.TrimSpace(string(out)))
	}
	return out, nil
}

// planID returns the id of the benchmark's plan.
func (a *admin) planID(ctx context.Context) (string, error) {
	b, err := a.call(ctx, "GET", "/usageplans?limit=500", nil, "", 200)
	if err != nil {
		return "", err
	}
	var page struct {
		Item []struct{ ID, Name string }
	}
	if err := json.Unmarshal(b, &page); err != nil {
		return "", fmt.Errorf("GetUsagePlans: %w", err)
	}
	for _, p := range page.Item {
		if p.Name == planName {
			return p.ID, nil
		}
	}
	return "", fmt.Errorf("GetUsagePlans: no plan named %q", planName)
}

// createKey is create-api-key with a value of our own; it returns the
// new key's id.
func (a *admin) createKey(ctx context.Context, name, value string) (string, error) {
	body, _ := json.Marshal(map[string]any{"name": name, "value": value, "enabled": true})
	b, err := a.call(ctx, "POST", "/apikeys", body, "application/json", 201)
	if err != nil {
		return "", err
	}
	var k struct{ ID string }
	if err := json.Unmarshal(b, &k); err != nil || k.ID == "" {
		return "", fmt.Errorf("CreateApiKey: no id in %.200s", b)
	}
	return k.ID, nil
}

// addToPlan is create-usage-plan-key.
func (a *admin) addToPlan(ctx context.Context, planID, keyID string) error {
	body, _ := json.Marshal(map[string]string{"keyId": keyID, "keyType": "API_KEY"})
	_, err := a.call(ctx, "POST", "/usageplans/"+url.PathEscape(planID)+"/keys", body, "application/json", 201)
	return err
}

// disable is update-api-key replacing /enabled with false.
func (a *admin) disable(ctx context.Context, keyID string) error {
	body := []byte(`{"patchOperations":[{"op":"replace","path":"/enabled","value":"false"}]}`)
	_, err := a.call(ctx, "PATCH", "/apikeys/"+url.PathEscape(keyID), body, "application/json", 200)
	return err
}

// keysPage is GetApiKeys with limit=500 after position ("" for the first
// page); it returns the page's size and the next position.
func (a *admin) keysPage(ctx context.Context, position string) (int, string, error) {
	path := "/apikeys?limit=500"
	if position != "" {
		path += "&position=" + url.QueryEscape(position)
	}
	b, err := a.call(ctx, "GET", path, nil, "", 200)
	if err != nil {
		return 0, "", err
	}
	var page struct {
		Position string
		Item     []json.RawMessage
	}
	if err := json.Unmarshal(b, &page); err != nil {
		return 0, "", fmt.Errorf("GetApiKeys: %w", err)
	}
	return len(page.Item), page.Position, nil
}

// importKeys is ImportApiKeys of a CSV file, refused whole on any warning;
// it returns how many keys were imported.
func (a *admin) importKeys(ctx context.Context, csv []byte) (int, error) {
	b, err := a.call(ctx, "POST", "/apikeys?mode=import&format=csv&failonwarnings=true", csv, "text/csv", 201)
	if err != nil {
		return 0, err
	}
	var out struct{ IDs []string }
	if err := json.Unmarshal(b, &out); err != nil {
		return 0, fmt.Errorf("ImportApiKeys: %w", err)
	}
	return len(out.IDs), nil
}
