package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestAdminCredentials(t *testing.T) {
	dir := t.TempDir()
	var out bytes.Buffer
	first, err := adminCredentials(dir, &out, "127.0.0.1:8081")
	if err != nil {
		t.Fatal(err)
	}
	if len(first.AccessKeyID) != 20 || len(first.SecretAccessKey) != 40 || len(first.Token) != 40 {
		t.Errorf("credentials %+v", first)
	}
	if !strings.Contains(out.String(), "export AWS_ACCESS_KEY_ID="+first.AccessKeyID+" AWS_SECRET_ACCESS_KEY="+first.SecretAccessKey) {
		t.Errorf("first start printed %q", out.String())
	}
	fi, err := os.Stat(filepath.Join(dir, credentialsFile))
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("credentials file: %v, mode %v", err, fi.Mode())
	}
	out.Reset()
	again, err := adminCredentials(dir, &out, "127.0.0.1:8081")
	if err != nil || again != first || out.Len() != 0 {
		t.Errorf("second start: %+v, %v, printed %q; want the same credentials, silently", again, err, out.String())
	}

	t.Setenv("TOLLGATE_ADMIN_ACCESS_KEY_ID", "FROMENV0000000000000")
	t.Setenv("TOLLGATE_ADMIN_SECRET_ACCESS_KEY", "envsecret")
	t.Setenv("TOLLGATE_ADMIN_TOKEN", "envtoken")
	env, err := adminCredentials(dir, &out, "x")
	if err != nil || env.AccessKeyID != "FROMENV0000000000000" || env.SecretAccessKey != "envsecret" || env.Token != "envtoken" {
		t.Errorf("from environment: %+v, %v", env, err)
	}
	t.Setenv("TOLLGATE_ADMIN_SECRET_ACCESS_KEY", "")
	if _, err := adminCredentials(dir, &out, "x"); err == nil || !strings.Contains(err.Error(), "must be set together") {
		t.Errorf("half-set environment: %v", err)
	}
}

func TestAdminCredentialsCorruptFile(t *testing.T) {
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, credentialsFile), []byte("{nope"), 0o600)
	_, err := adminCredentials(dir, &bytes.Buffer{}, "x")
	if err == nil || !strings.Contains(err.Error(), credentialsFile) {
		t.Errorf("err = %v, want one naming the file", err)
	}
}
