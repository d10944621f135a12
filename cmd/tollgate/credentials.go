package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/tollgate/tollgate/catalog"
	"github.com/tollgate/tollgate/reportapi"
)

const credentialsFile = "admin-credentials.json"

// adminCredentials returns the admin API's credentials: from
// TOLLGATE_ADMIN_ACCESS_KEY_ID / TOLLGATE_ADMIN_SECRET_ACCESS_KEY (and
// TOLLGATE_ADMIN_TOKEN) when set, else from the data folder, where the
// first start creates them (mode 0600) and tells how to use them.
func adminCredentials(dataDir string, stdout io.Writer, adminAddr string) (reportapi.Credentials, error) {
	env := reportapi.Credentials{
		AccessKeyID:     os.Getenv("TOLLGATE_ADMIN_ACCESS_KEY_ID"),
		SecretAccessKey: os.Getenv("TOLLGATE_ADMIN_SECRET_ACCESS_KEY"),
		Token:           os.Getenv("TOLLGATE_ADMIN_TOKEN"),
	}
	if env.AccessKeyID != "" || env.SecretAccessKey != "" {
		if err := env.Validate(); err != nil {
			return env, fmt.Errorf("TOLLGATE_ADMIN_ACCESS_KEY_ID and TOLLGATE_ADMIN_SECRET_ACCESS_KEY must be set together: %w", err)
		}
		return env, nil
	}
	path := filepath.Join(dataDir, credentialsFile)
	b, err := os.ReadFile(path)
	if err == nil {
		var c reportapi.Credentials
		if err := json.Unmarshal(b, &c); err != nil {
			return c, fmt.Errorf("read %s: %w", path, err)
		}
		if env.Token != "" {
			c.Token = env.Token
		}
		if err := c.Validate(); err != nil {
			return c, fmt.Errorf("%s: %w", path, err)
		}
		return c, nil
	}
	if !errors.Is(err, fs.ErrNotExist) {
		return reportapi.Credentials{}, fmt.Errorf("read admin credentials: %w", err)
	}
	c := reportapi.Credentials{
		AccessKeyID:     "TGAK" + catalog.RandomString(16, "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567"),
		SecretAccessKey: catalog.RandomString(40, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"),
		Token:           env.Token,
	}
	if c.Token == "" {
		c.Token = catalog.RandomString(40, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")
	}
	b, _ = json.MarshalIndent(c, "", "  ")
	if err := os.WriteFile(path, append(b, '\n'), 0o600); err != nil {
		return c, fmt.Errorf("write admin credentials: %w", err)
	}
	fmt.Fprintf(stdout, `Admin API credentials created in %s (keep it private).
For awscli and boto3:
  export AWS_ACCESS_KEY_ID=%s AWS_SECRET_ACCESS_KEY=%s AWS_DEFAULT_REGION=us-east-1
  aws apigateway get-api-keys --endpoint-url http://%s
For curl:
  curl -H 'Authorization: Bearer %s' http://%s/metrics
The console: http://%s/ui/ (sign in with that token)
`, path, c.AccessKeyID, c.SecretAccessKey, adminAddr, c.Token, adminAddr, adminAddr)
	return c, nil
}
