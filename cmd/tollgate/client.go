package main

import (
	"bytes"
	"encoding/csv"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
	"go.yaml.in/yaml/v3"

	"github.com/tollgate/tollgate/reportapi"
)

// client talks to a tollgate admin API with the bearer token.
type client struct {
	endpoint, token string
	output          string
	http            *http.Client
	// progress, when set, receives a progress bar for uploads and
	// downloads (see progressTo).
	progress io.Writer
	// sig, when set, signs requests with SigV4 instead of the token.
	sig *reportapi.Credentials
}

// clientFlags adds the flags every admin command shares.
func clientFlags(cmd *cobra.Command, c *clientOpts) {
	f := cmd.PersistentFlags()
	f.StringVar(&c.endpoint, "endpoint", envOr("TOLLGATE_ENDPOINT", "http://127.0.0.1:8081"), "admin API address (env TOLLGATE_ENDPOINT)")
	f.StringVar(&c.dataDir, "data-dir", "./tollgate-data", "data folder whose admin-credentials.json holds the token, unless TOLLGATE_ADMIN_TOKEN is set")
	f.StringVarP(&c.output, "output", "o", "table", "table, json, yaml or csv")
}

type clientOpts struct{ endpoint, dataDir, output string }

func envOr(k, def string) string {
	if v := os.Getenv(k); v != "" {
		return v
	}
	return def
}

func (o *clientOpts) client() (*client, error) {
	switch o.output {
	case "table", "json", "yaml", "csv":
	default:
		return nil, fmt.Errorf("-o %q: use table, json, yaml or csv", o.output)
	}
	token := os.Getenv("TOLLGATE_ADMIN_TOKEN")
	var sig *reportapi.Credentials
	if token == "" && os.Getenv("TOLLGATE_ADMIN_ACCESS_KEY_ID") != "" {
		// Access keys but no token: sign requests, as awscli does.
		sig = &reportapi.Credentials{AccessKeyID: os.Getenv("TOLLGATE_ADMIN_ACCESS_KEY_ID"), SecretAccessKey: os.Getenv("TOLLGATE_ADMIN_SECRET_ACCESS_KEY")}
		if err := sig.Validate(); err != nil {
			return nil, err
		}
	} else if token == "" {
		b, err := os.ReadFile(filepath.Join(o.dataDir, credentialsFile))
		if err != nil {
			return nil, fmt.Errorf("no admin token: set TOLLGATE_ADMIN_TOKEN or point --data-dir at the server's data folder (%w)", err)
		}
		var c struct{ Token string }
		if err := json.Unmarshal(b, &c); err != nil || c.Token == "" {
			return nil, fmt.Errorf("no bearer token in %s", filepath.Join(o.dataDir, credentialsFile))
		}
		token = c.Token
	}
	u, err := url.Parse(o.endpoint)
	if err != nil || u.Scheme == "" || u.Host == "" {
		return nil, fmt.Errorf("--endpoint %q must be a URL such as http://127.0.0.1:8081", o.endpoint)
	}
	return &client{endpoint: strings.TrimSuffix(o.endpoint, "/"), token: token, sig: sig, output: o.output, http: &http.Client{Timeout: 5 * time.Minute}}, nil
}

// do sends a request; a JSON body is marshalled unless it is []byte. It
// returns the response body, or the API's error message as an error.
func (c *client) do(method, path string, body any, contentType string) ([]byte, error) {
	var rd io.Reader
	switch b := body.(type) {
	case nil:
	case []byte:
		rd = bytes.NewReader(b)
		if c.progress != nil {
			rd = &progressReader{r: rd, w: c.progress, label: "upload", total: int64(len(b))}
		}
	default:
		j, err := json.Marshal(b)
		if err != nil {
			return nil, err
		}
		rd, contentType = bytes.NewReader(j), "application/json"
	}
	req, err := http.NewRequest(method, c.endpoint+path, rd)
	if err != nil {
		return nil, err
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	if c.sig != nil {
		var payload []byte
		if b, ok := body.([]byte); ok {
			payload = b
		} else if rd != nil {
			payload, _ = json.Marshal(body)
		}
		if err := reportapi.Sign(req, payload, *c.sig, time.Now()); err != nil {
			return nil, err
		}
	} else {
		req.Header.Set("Authorization", "Bearer "+c.token)
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return nil, fmt.Errorf("%s %s: %w", method, path, err)
	}
	defer resp.Body.Close()
	var respBody io.Reader = resp.Body
	if c.progress != nil && method == "GET" {
		respBody = &progressReader{r: resp.Body, w: c.progress, label: "download", total: max(resp.ContentLength, 0)}
	}
	out, err := io.ReadAll(respBody)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode >= 300 {
		var e struct{ Message string }
		json.Unmarshal(out, &e)
		if e.Message == "" {
			e.Message = strings.TrimSpace(string(out))
		}
		return nil, fmt.Errorf("%s (%d %s)", e.Message, resp.StatusCode, resp.Header.Get("x-amzn-ErrorType"))
	}
	return out, nil
}

// list follows AWS pagination (position) and returns every item.
func (c *client) list(path string) ([]map[string]any, error) {
	var all []map[string]any
	pos := ""
	sep := "?"
	if strings.Contains(path, "?") {
		sep = "&"
	}
	for {
		p := path + sep + "limit=500"
		if pos != "" {
			p += "&position=" + url.QueryEscape(pos)
		}
		b, err := c.do("GET", p, nil, "")
		if err != nil {
			return nil, err
		}
		var page struct {
			Position string           `json:"position"`
			Item     []map[string]any `json:"item"`
		}
		if err := json.Unmarshal(b, &page); err != nil {
			return nil, err
		}
		all = append(all, page.Item...)
		if page.Position == "" {
			return all, nil
		}
		pos = page.Position
	}
}

// print writes v (decoded JSON) as the chosen output: a table or CSV of
// columns for rows, or v whole as JSON or YAML.
func (c *client) print(w io.Writer, v any, rows []map[string]any, columns []string) error {
	switch c.output {
	case "json":
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		return enc.Encode(v)
	case "yaml":
		return yaml.NewEncoder(w).Encode(v)
	case "csv":
		cw := csv.NewWriter(w)
		cw.Write(columns)
		for _, r := range rows {
			cw.Write(cells(r, columns))
		}
		cw.Flush()
		return cw.Error()
	default:
		tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, strings.ToUpper(strings.Join(columns, "\t")))
		for _, r := range rows {
			fmt.Fprintln(tw, strings.Join(cells(r, columns), "\t"))
		}
		return tw.Flush()
	}
}

func cells(r map[string]any, columns []string) []string {
	out := make([]string, len(columns))
	for i, c := range columns {
		switch v := r[c].(type) {
		case nil:
		case string:
			out[i] = v
		case float64:
			out[i] = strconv.FormatFloat(v, 'f', -1, 64) // never 1.234567e+06
		default:
			b, _ := json.Marshal(v)
			out[i] = string(b)
		}
	}
	return out
}

func decode(b []byte) (map[string]any, error) {
	var m map[string]any
	err := json.Unmarshal(b, &m)
	return m, err
}
