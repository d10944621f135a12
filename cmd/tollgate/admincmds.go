package main

import (
	"fmt"
	"io"
	"maps"
	"net/url"
	"os"
	"slices"
	"strconv"
	"strings"

	"github.com/spf13/cobra"

	usagepkg "github.com/tollgate/tollgate/usage"
)

// keyColumns are a key's columns in tables and CSV: the fingerprints
// tell a key's values apart, and during a rotation's grace its previous
// value's and when that stops.
var keyColumns = []string{"id", "name", "enabled", "customerId", "value", "valueFingerprint", "previousValueFingerprint", "previousValueExpiresAt", "description"}

func newKeysCmd() *cobra.Command {
	o := &clientOpts{}
	cmd := &cobra.Command{Use: "keys", Short: "API keys, through the admin API (create, list, get, update, rotate, delete, import)"}
	clientFlags(cmd, o)
	one := func(c *client, b []byte, cmd *cobra.Command) error {
		m, err := decode(b)
		if err != nil {
			return err
		}
		return c.print(cmd.OutOrStdout(), m, []map[string]any{m}, keyColumns)
	}

	var name, customer string
	list := &cobra.Command{Use: "list", Short: "List keys (every page)", Args: cobra.NoArgs, RunE: func(cmd *cobra.Command, _ []string) error {
		c, err := o.client()
		if err != nil {
			return err
		}
		q := url.Values{"name": {name}, "customerId": {customer}, "includeValues": {"true"}}
		items, err := c.list("/apikeys?" + q.Encode())
		if err != nil {
			return err
		}
		return c.print(cmd.OutOrStdout(), items, items, keyColumns)
	}}
	list.Flags().StringVar(&name, "name", "", "name prefix")
	list.Flags().StringVar(&customer, "customer-id", "", "customer id")

	get := &cobra.Command{Use: "get KEY_ID", Short: "Show a key", Args: cobra.ExactArgs(1), RunE: func(cmd *cobra.Command, args []string) error {
		c, err := o.client()
		if err != nil {
			return err
		}
		b, err := c.do("GET", "/apikeys/"+url.PathEscape(args[0])+"?includeValue=true", nil, "")
		if err != nil {
			return err
		}
		return one(c, b, cmd)
	}}

	var value, description, expiresAt string
	var enabled bool
	create := &cobra.Command{Use: "create --name NAME", Short: "Create a key; its value is shown this once", Args: cobra.NoArgs, RunE: func(cmd *cobra.Command, _ []string) error {
		c, err := o.client()
		if err != nil {
			return err
		}
		in := map[string]any{"name": name, "value": value, "description": description, "enabled": enabled, "customerId": customer}
		if expiresAt != "" {
			in["expiresAt"] = expiresAt
		}
		b, err := c.do("POST", "/apikeys", in, "")
		if err != nil {
			return err
		}
		return one(c, b, cmd)
	}}
	create.Flags().StringVar(&name, "name", "", "key name (required)")
	create.Flags().StringVar(&value, "value", "", "key value, 20-128 printable characters (default: generated)")
	create.Flags().StringVar(&description, "description", "", "description")
	create.Flags().BoolVar(&enabled, "enabled", false, "enable the key")
	create.Flags().StringVar(&customer, "customer-id", "", "customer id")
	create.Flags().StringVar(&expiresAt, "expires-at", "", "when the key stops working, an RFC 3339 time such as 2027-01-31T00:00:00Z (default: never)")
	create.MarkFlagRequired("name")

	var setName, setDescription, setCustomer, setEnabled, setExpiresAt string
	update := &cobra.Command{Use: "update KEY_ID", Short: "Change a key's name, description, customer id, enabled or expiry", Args: cobra.ExactArgs(1), RunE: func(cmd *cobra.Command, args []string) error {
		c, err := o.client()
		if err != nil {
			return err
		}
		var ops []map[string]string
		for path, v := range map[string]string{"/name": setName, "/description": setDescription, "/customerId": setCustomer, "/enabled": setEnabled} {
			if cmd.Flags().Changed(strings.ToLower(strings.TrimPrefix(path, "/"))) || v != "" {
				ops = append(ops, map[string]string{"op": "replace", "path": path, "value": v})
			}
		}
		switch {
		case setExpiresAt == "never":
			ops = append(ops, map[string]string{"op": "remove", "path": "/expiresAt"})
		case setExpiresAt != "":
			ops = append(ops, map[string]string{"op": "replace", "path": "/expiresAt", "value": setExpiresAt})
		}
		if len(ops) == 0 {
			return fmt.Errorf("nothing to change: give --name, --description, --customerid, --enabled or --expires-at")
		}
		b, err := c.do("PATCH", "/apikeys/"+url.PathEscape(args[0]), map[string]any{"patchOperations": ops}, "")
		if err != nil {
			return err
		}
		return one(c, b, cmd)
	}}
	update.Flags().StringVar(&setName, "name", "", "new name")
	update.Flags().StringVar(&setDescription, "description", "", "new description")
	update.Flags().StringVar(&setCustomer, "customerid", "", "new customer id")
	update.Flags().StringVar(&setEnabled, "enabled", "", "true or false")
	update.Flags().StringVar(&setExpiresAt, "expires-at", "", "when the key stops working (RFC 3339), or never")

	del := &cobra.Command{Use: "delete KEY_ID", Short: "Delete a key", Args: cobra.ExactArgs(1), RunE: func(cmd *cobra.Command, args []string) error {
		c, err := o.client()
		if err != nil {
			return err
		}
		_, err = c.do("DELETE", "/apikeys/"+url.PathEscape(args[0]), nil, "")
		return err
	}}

	var failOnWarnings bool
	imp := &cobra.Command{Use: "import FILE.csv", Short: "Import keys from a CSV (columns Name, Key, Description, Enabled, UsagePlanIds)", Args: cobra.ExactArgs(1), RunE: func(cmd *cobra.Command, args []string) error {
		c, err := o.client()
		if err != nil {
			return err
		}
		body, err := os.ReadFile(args[0])
		if err != nil {
			return err
		}
		c.progress = progressTo(cmd.OutOrStdout())
		b, err := c.do("POST", "/apikeys?mode=import&format=csv&failonwarnings="+strconv.FormatBool(failOnWarnings), body, "text/csv")
		if err != nil {
			return err
		}
		m, err := decode(b)
		if err != nil {
			return err
		}
		ids, _ := m["ids"].([]any)
		warnings, _ := m["warnings"].([]any)
		if c.output != "table" {
			return c.print(cmd.OutOrStdout(), m, nil, nil)
		}
		fmt.Fprintf(cmd.OutOrStdout(), "imported %d keys\n", len(ids))
		for _, w := range warnings {
			fmt.Fprintf(cmd.OutOrStdout(), "warning: %v\n", w)
		}
		return nil
	}}
	imp.Flags().BoolVar(&failOnWarnings, "fail-on-warnings", false, "import nothing if any row has a problem")
	cmd.AddCommand(list, get, create, update, newKeyRotateCmd(o), del, imp)
	return cmd
}

// newKeyRotateCmd is keys rotate: POST /v1/apikeys/{id}/rotate, or its
// cancel and finish.
func newKeyRotateCmd(o *clientOpts) *cobra.Command {
	var grace string
	var cancel, finish bool
	cmd := &cobra.Command{Use: "rotate KEY_ID (--grace DURATION | --cancel | --finish)",
		Short: "Give a key a new value (shown this once), its old one working for a grace period; or cancel or finish a rotation",
		Long: `Rotate a key: a new value is generated and shown this once, and the old one
keeps working, for the same key, plan and quota, until the grace ends
(--grace, a duration such as 24h, at most 720h; 0 refuses it at once).
Usage events and the audit log tell the two values apart by their
fingerprints (the first 8 hex characters of each value's SHA-256).

--cancel gives the key its old value back (the new one is refused at once);
--finish refuses the old value now.`,
		Args: cobra.ExactArgs(1), RunE: func(cmd *cobra.Command, args []string) error {
			path := "/v1/apikeys/" + url.PathEscape(args[0]) + "/rotate"
			var body any
			switch {
			case cancel && finish, (cancel || finish) && cmd.Flags().Changed("grace"):
				return fmt.Errorf("give one of --grace, --cancel and --finish")
			case cancel:
				path += "/cancel"
			case finish:
				path += "/finish"
			case !cmd.Flags().Changed("grace"):
				return fmt.Errorf("give --grace DURATION (such as 24h; 0 for a hard cut), --cancel or --finish")
			default:
				body = map[string]any{"grace": grace}
			}
			c, err := o.client()
			if err != nil {
				return err
			}
			b, err := c.do("POST", path, body, "")
			if err != nil {
				return err
			}
			m, err := decode(b)
			if err != nil {
				return err
			}
			if c.output != "table" {
				return c.print(cmd.OutOrStdout(), m, nil, nil)
			}
			w := cmd.OutOrStdout()
			str := func(f string) string { v, _ := m[f].(string); return v }
			switch {
			case cancel:
				fmt.Fprintf(w, "API key %s: rotation cancelled; its value is again the one of fingerprint %s (the new one is refused)\n", str("id"), str("valueFingerprint"))
			case finish:
				fmt.Fprintf(w, "API key %s: rotation finished; only the value of fingerprint %s works (the previous one is refused)\n", str("id"), str("valueFingerprint"))
			default:
				fmt.Fprintf(w, "API key %s rotated. Its new value, shown this once:\n\n  %s\n\n", str("id"), str("value"))
				fmt.Fprintf(w, "new value:      fingerprint %s\n", str("valueFingerprint"))
				fmt.Fprintf(w, "previous value: fingerprint %s, refused from %s\n", str("previousValueFingerprint"), str("previousValueExpiresAt"))
			}
			return nil
		}}
	cmd.Flags().StringVar(&grace, "grace", "", "how long the old value keeps working, such as 24h (at most 720h; 0: refused at once)")
	cmd.Flags().BoolVar(&cancel, "cancel", false, "cancel the rotation in its grace: the old value back, the new one refused")
	cmd.Flags().BoolVar(&finish, "finish", false, "finish the rotation in its grace: the old value refused now")
	return cmd
}

var planColumns = []string{"id", "name", "throttle", "quota", "apiStages"}

func newPlansCmd() *cobra.Command {
	o := &clientOpts{}
	cmd := &cobra.Command{Use: "plans", Short: "Usage plans, through the admin API"}
	clientFlags(cmd, o)
	run := func(f func(c *client, cmd *cobra.Command, args []string) error) func(*cobra.Command, []string) error {
		return func(cmd *cobra.Command, args []string) error {
			c, err := o.client()
			if err != nil {
				return err
			}
			return f(c, cmd, args)
		}
	}
	printOne := func(c *client, cmd *cobra.Command, b []byte, cols []string) error {
		m, err := decode(b)
		if err != nil {
			return err
		}
		return c.print(cmd.OutOrStdout(), m, []map[string]any{m}, cols)
	}
	var keyID string
	list := &cobra.Command{Use: "list", Short: "List plans", Args: cobra.NoArgs, RunE: run(func(c *client, cmd *cobra.Command, _ []string) error {
		items, err := c.list("/usageplans?" + url.Values{"keyId": {keyID}}.Encode())
		if err != nil {
			return err
		}
		return c.print(cmd.OutOrStdout(), items, items, planColumns)
	})}
	list.Flags().StringVar(&keyID, "key-id", "", "only the plans of this key")
	get := &cobra.Command{Use: "get PLAN_ID", Args: cobra.ExactArgs(1), Short: "Show a plan", RunE: run(func(c *client, cmd *cobra.Command, args []string) error {
		b, err := c.do("GET", "/usageplans/"+url.PathEscape(args[0]), nil, "")
		if err != nil {
			return err
		}
		return printOne(c, cmd, b, planColumns)
	})}
	var name, description, period string
	var rate float64
	var burst, limit, offset int64
	var stages []string
	create := &cobra.Command{Use: "create --name NAME", Short: "Create a plan", Args: cobra.NoArgs, RunE: run(func(c *client, cmd *cobra.Command, _ []string) error {
		body := map[string]any{"name": name, "description": description}
		if cmd.Flags().Changed("rate") || cmd.Flags().Changed("burst") {
			body["throttle"] = map[string]any{"rateLimit": rate, "burstLimit": burst}
		}
		if cmd.Flags().Changed("quota-limit") {
			body["quota"] = map[string]any{"limit": limit, "offset": offset, "period": period}
		}
		var as []map[string]string
		for _, s := range stages {
			api, stage, ok := strings.Cut(s, ":")
			if !ok {
				return fmt.Errorf("--api-stage %q: use apiId:stage", s)
			}
			as = append(as, map[string]string{"apiId": api, "stage": stage})
		}
		body["apiStages"] = as
		b, err := c.do("POST", "/usageplans", body, "")
		if err != nil {
			return err
		}
		return printOne(c, cmd, b, planColumns)
	})}
	create.Flags().StringVar(&name, "name", "", "plan name (required)")
	create.Flags().StringVar(&description, "description", "", "description")
	create.Flags().Float64Var(&rate, "rate", 0, "throttle: requests per second")
	create.Flags().Int64Var(&burst, "burst", 0, "throttle: burst")
	create.Flags().Int64Var(&limit, "quota-limit", 0, "quota: requests per period")
	create.Flags().Int64Var(&offset, "quota-offset", 0, "quota: offset in the first period")
	create.Flags().StringVar(&period, "quota-period", "DAY", "quota period: DAY, WEEK or MONTH")
	create.Flags().StringArrayVar(&stages, "api-stage", nil, "apiId:stage the plan covers (repeat)")
	create.MarkFlagRequired("name")
	del := &cobra.Command{Use: "delete PLAN_ID", Args: cobra.ExactArgs(1), Short: "Delete a plan", RunE: run(func(c *client, _ *cobra.Command, args []string) error {
		_, err := c.do("DELETE", "/usageplans/"+url.PathEscape(args[0]), nil, "")
		return err
	})}
	addKey := &cobra.Command{Use: "add-key PLAN_ID KEY_ID", Args: cobra.ExactArgs(2), Short: "Put a key in a plan", RunE: run(func(c *client, cmd *cobra.Command, args []string) error {
		b, err := c.do("POST", "/usageplans/"+url.PathEscape(args[0])+"/keys", map[string]string{"keyId": args[1], "keyType": "API_KEY"}, "")
		if err != nil {
			return err
		}
		return printOne(c, cmd, b, []string{"id", "name", "type", "value"})
	})}
	removeKey := &cobra.Command{Use: "remove-key PLAN_ID KEY_ID", Args: cobra.ExactArgs(2), Short: "Take a key out of a plan", RunE: run(func(c *client, _ *cobra.Command, args []string) error {
		_, err := c.do("DELETE", "/usageplans/"+url.PathEscape(args[0])+"/keys/"+url.PathEscape(args[1]), nil, "")
		return err
	})}
	keys := &cobra.Command{Use: "keys PLAN_ID", Args: cobra.ExactArgs(1), Short: "List a plan's keys", RunE: run(func(c *client, cmd *cobra.Command, args []string) error {
		items, err := c.list("/usageplans/" + url.PathEscape(args[0]) + "/keys")
		if err != nil {
			return err
		}
		return c.print(cmd.OutOrStdout(), items, items, []string{"id", "name", "type", "value"})
	})}
	var sets, addStages, removeStages []string
	update := &cobra.Command{Use: "update PLAN_ID", Args: cobra.ExactArgs(1), Short: "Change a plan (UpdateUsagePlan patch operations)",
		Long: `Change a plan: --set PATH=VALUE replaces a field, with AWS's patch paths:
/name, /description, /throttle/rateLimit, /throttle/burstLimit, /quota/limit,
/quota/period, /quota/offset, or a method's throttle
/apiStages/API:STAGE/throttle/~1items/GET/rateLimit (/ in the resource as ~1).
--add-stage and --remove-stage take API:STAGE.`,
		RunE: run(func(c *client, cmd *cobra.Command, args []string) error {
			var ops []map[string]string
			for _, s := range sets {
				path, value, ok := strings.Cut(s, "=")
				if !ok {
					return fmt.Errorf("--set %q: use PATH=VALUE", s)
				}
				ops = append(ops, map[string]string{"op": "replace", "path": path, "value": value})
			}
			for _, s := range addStages {
				ops = append(ops, map[string]string{"op": "add", "path": "/apiStages", "value": s})
			}
			for _, s := range removeStages {
				ops = append(ops, map[string]string{"op": "remove", "path": "/apiStages", "value": s})
			}
			if len(ops) == 0 {
				return fmt.Errorf("nothing to change: give --set, --add-stage or --remove-stage")
			}
			b, err := c.do("PATCH", "/usageplans/"+url.PathEscape(args[0]), map[string]any{"patchOperations": ops}, "")
			if err != nil {
				return err
			}
			return printOne(c, cmd, b, planColumns)
		})}
	update.Flags().StringArrayVar(&sets, "set", nil, "PATH=VALUE to replace (repeat)")
	update.Flags().StringArrayVar(&addStages, "add-stage", nil, "API:STAGE to add (repeat)")
	update.Flags().StringArrayVar(&removeStages, "remove-stage", nil, "API:STAGE to remove (repeat)")
	cmd.AddCommand(list, get, create, update, del, addKey, removeKey, keys)
	return cmd
}

// addUsageSubcommands adds the admin-API commands under `tollgate usage`,
// which itself still reads a local data folder.
func addUsageSubcommands(usage *cobra.Command) {
	o := &clientOpts{}
	group := func(c *cobra.Command) *cobra.Command {
		f := c.Flags()
		f.StringVar(&o.endpoint, "endpoint", envOr("TOLLGATE_ENDPOINT", "http://127.0.0.1:8081"), "admin API address (env TOLLGATE_ENDPOINT)")
		f.StringVar(&o.dataDir, "data-dir", "./tollgate-data", "data folder whose admin-credentials.json holds the token, unless TOLLGATE_ADMIN_TOKEN is set")
		f.StringVarP(&o.output, "output", "o", "table", "table, json, yaml or csv")
		return c
	}
	var plan, key, from, to string
	get := group(&cobra.Command{Use: "get --plan ID --from DATE --to DATE", Short: "GetUsage through the admin API", Args: cobra.NoArgs, RunE: func(cmd *cobra.Command, _ []string) error {
		c, err := o.client()
		if err != nil {
			return err
		}
		b, err := c.do("GET", "/usageplans/"+url.PathEscape(plan)+"/usage?"+url.Values{"keyId": {key}, "startDate": {from}, "endDate": {to}}.Encode(), nil, "")
		if err != nil {
			return err
		}
		m, err := decode(b)
		if err != nil {
			return err
		}
		first, err := usagepkg.ParseDay(from)
		if err != nil {
			return fmt.Errorf("--from: %w", err)
		}
		var rows []map[string]any
		values, _ := m["values"].(map[string]any)
		for _, k := range slices.Sorted(maps.Keys(values)) {
			days, _ := values[k].([]any)
			for i, d := range days {
				pair, _ := d.([]any)
				if len(pair) != 2 {
					continue
				}
				rows = append(rows, map[string]any{"key": k, "date": usagepkg.FormatDay(first + int64(i)), "used": pair[0], "remaining": pair[1]})
			}
		}
		return c.print(cmd.OutOrStdout(), m, rows, []string{"key", "date", "used", "remaining"})
	}})
	get.Flags().StringVar(&plan, "plan", "", "usage plan id")
	get.Flags().StringVar(&key, "key", "", "API key id (default: every key of the plan)")
	get.Flags().StringVar(&from, "from", "", "first day, YYYY-MM-DD")
	get.Flags().StringVar(&to, "to", "", "last day, YYYY-MM-DD")

	var remaining int64
	update := group(&cobra.Command{Use: "update --plan ID --key ID --remaining N", Short: "UpdateUsage: set what a key has left this period", Args: cobra.NoArgs, RunE: func(cmd *cobra.Command, _ []string) error {
		c, err := o.client()
		if err != nil {
			return err
		}
		b, err := c.do("PATCH", "/usageplans/"+url.PathEscape(plan)+"/keys/"+url.PathEscape(key)+"/usage",
			map[string]any{"patchOperations": []map[string]string{{"op": "replace", "path": "/remaining", "value": strconv.FormatInt(remaining, 10)}}}, "")
		if err != nil {
			return err
		}
		m, err := decode(b)
		if err != nil {
			return err
		}
		return c.print(cmd.OutOrStdout(), m, []map[string]any{m}, []string{"usagePlanId", "startDate", "endDate", "values"})
	}})
	update.Flags().StringVar(&plan, "plan", "", "usage plan id")
	update.Flags().StringVar(&key, "key", "", "API key id")
	update.Flags().Int64Var(&remaining, "remaining", 0, "requests left in the current period")

	var granularity, groupBy, month string
	var limit int
	export := group(&cobra.Command{Use: "export --from RFC3339 [--to ...]", Short: "Usage rows from /v1/usage (csv by -o csv)", Args: cobra.NoArgs, RunE: func(cmd *cobra.Command, _ []string) error {
		c, err := o.client()
		if err != nil {
			return err
		}
		q := url.Values{"from": {from}, "granularity": {granularity}, "group_by": {groupBy}, "key": {key}, "plan": {plan}}
		if to != "" {
			q.Set("to", to)
		}
		c.progress = progressTo(cmd.OutOrStdout())
		if c.output == "csv" {
			q.Set("format", "csv")
			b, err := c.do("GET", "/v1/usage?"+q.Encode(), nil, "")
			if err != nil {
				return err
			}
			_, err = cmd.OutOrStdout().Write(b)
			return err
		}
		b, err := c.do("GET", "/v1/usage?"+q.Encode(), nil, "")
		if err != nil {
			return err
		}
		m, err := decode(b)
		if err != nil {
			return err
		}
		rows := toRows(m["rows"])
		cols := append(append([]string{"time"}, splitNonEmpty(groupBy)...), "requests", "bytes_in", "bytes_out", "latency_ms_sum")
		return c.print(cmd.OutOrStdout(), m, rows, cols)
	}})
	export.Flags().StringVar(&from, "from", "", "start, RFC 3339")
	export.Flags().StringVar(&to, "to", "", "end, RFC 3339 (default now)")
	export.Flags().StringVar(&granularity, "granularity", "day", "minute, hour, day or month")
	export.Flags().StringVar(&groupBy, "group-by", "", "comma-separated dimensions: key, plan, api, stage, method, resource, status, decision")
	export.Flags().StringVar(&key, "key", "", "only this key id")
	export.Flags().StringVar(&plan, "plan", "", "only this plan id")

	top := group(&cobra.Command{Use: "top --from RFC3339", Short: "Heaviest consumers", Args: cobra.NoArgs, RunE: func(cmd *cobra.Command, _ []string) error {
		c, err := o.client()
		if err != nil {
			return err
		}
		q := url.Values{"from": {from}, "plan": {plan}, "limit": {strconv.Itoa(limit)}}
		if to != "" {
			q.Set("to", to)
		}
		b, err := c.do("GET", "/v1/usage/top?"+q.Encode(), nil, "")
		if err != nil {
			return err
		}
		m, err := decode(b)
		if err != nil {
			return err
		}
		return c.print(cmd.OutOrStdout(), m, toRows(m["rows"]), []string{"key", "name", "customer_id", "plan", "admitted", "throttled", "quota_exceeded"})
	}})
	top.Flags().StringVar(&from, "from", "", "start, RFC 3339")
	top.Flags().StringVar(&to, "to", "", "end, RFC 3339 (default now)")
	top.Flags().StringVar(&plan, "plan", "", "only this plan id")
	top.Flags().IntVar(&limit, "limit", 10, "how many")

	billing := group(&cobra.Command{Use: "billing --month YYYY-MM", Short: "A month's usage per key and plan", Args: cobra.NoArgs, RunE: func(cmd *cobra.Command, _ []string) error {
		c, err := o.client()
		if err != nil {
			return err
		}
		b, err := c.do("GET", "/v1/reports/billing?"+url.Values{"month": {month}}.Encode(), nil, "")
		if err != nil {
			return err
		}
		m, err := decode(b)
		if err != nil {
			return err
		}
		return c.print(cmd.OutOrStdout(), m, toRows(m["rows"]), []string{"customer_id", "key_id", "key_name", "plan_name",
			"requests_admitted", "quota_limit", "quota_period", "overage", "throttled", "rejected"})
	}})
	billing.Flags().StringVar(&month, "month", "", "month, YYYY-MM")
	usage.AddCommand(get, update, export, top, billing)
}

func toRows(v any) []map[string]any {
	list, _ := v.([]any)
	rows := make([]map[string]any, 0, len(list))
	for _, r := range list {
		if m, ok := r.(map[string]any); ok {
			rows = append(rows, m)
		}
	}
	return rows
}

func splitNonEmpty(s string) []string {
	if s == "" {
		return nil
	}
	return strings.Split(s, ",")
}

func newApplyCmd() *cobra.Command {
	o := &clientOpts{}
	var file string
	cmd := &cobra.Command{Use: "apply -f FILE", Short: "Send a configuration file through the admin API (idempotent)", Args: cobra.NoArgs, RunE: func(cmd *cobra.Command, _ []string) error {
		c, err := o.client()
		if err != nil {
			return err
		}
		body, err := os.ReadFile(file)
		if err != nil {
			return err
		}
		b, err := c.do("POST", "/v1/apply?"+url.Values{"name": {file}}.Encode(), body, "application/yaml")
		if err != nil {
			return err
		}
		m, err := decode(b)
		if err != nil {
			return err
		}
		if c.output != "table" {
			return c.print(cmd.OutOrStdout(), m, nil, nil)
		}
		out := cmd.OutOrStdout()
		if m["changed"] != true {
			fmt.Fprintln(out, "unchanged")
			return nil
		}
		for _, s := range toStrings(m["created"]) {
			fmt.Fprintln(out, "created", s)
		}
		for _, g := range toRows(m["generatedKeys"]) {
			fmt.Fprintf(out, "API key %v value: %v (shown once)\n", g["id"], g["value"])
		}
		fmt.Fprintln(out, "applied")
		return nil
	}}
	clientFlags(cmd, o)
	cmd.Flags().StringVarP(&file, "file", "f", "", "configuration file (YAML)")
	cmd.MarkFlagRequired("file")
	return cmd
}

func toStrings(v any) []string {
	list, _ := v.([]any)
	out := make([]string, 0, len(list))
	for _, s := range list {
		out = append(out, fmt.Sprint(s))
	}
	return out
}

var webhookColumns = []string{"id", "name", "url", "events", "thresholds"}
var deliveryColumns = []string{"id", "webhookId", "event", "keyId", "state", "attempts", "lastStatus", "lastError", "created"}

// newWebhooksCmd is the client of /v1/webhooks: quota notification
// subscriptions and their deliveries.
func newWebhooksCmd() *cobra.Command {
	o := &clientOpts{}
	cmd := &cobra.Command{Use: "webhooks", Short: "Quota notification webhooks, through the admin API (create, list, get, update, delete, deliveries)"}
	clientFlags(cmd, o)
	one := func(c *client, b []byte, cmd *cobra.Command) error {
		m, err := decode(b)
		if err != nil {
			return err
		}
		return c.print(cmd.OutOrStdout(), m, []map[string]any{m}, webhookColumns)
	}
	items := func(b []byte) ([]map[string]any, map[string]any, error) {
		m, err := decode(b)
		if err != nil {
			return nil, nil, err
		}
		return toRows(m["items"]), m, nil
	}
	list := &cobra.Command{Use: "list", Short: "List webhooks", Args: cobra.NoArgs, RunE: func(cmd *cobra.Command, _ []string) error {
		c, err := o.client()
		if err != nil {
			return err
		}
		b, err := c.do("GET", "/v1/webhooks", nil, "")
		if err != nil {
			return err
		}
		rows, m, err := items(b)
		if err != nil {
			return err
		}
		return c.print(cmd.OutOrStdout(), m, rows, webhookColumns)
	}}
	get := &cobra.Command{Use: "get WEBHOOK_ID", Short: "Show a webhook (never its secret)", Args: cobra.ExactArgs(1), RunE: func(cmd *cobra.Command, args []string) error {
		c, err := o.client()
		if err != nil {
			return err
		}
		b, err := c.do("GET", "/v1/webhooks/"+url.PathEscape(args[0]), nil, "")
		if err != nil {
			return err
		}
		return one(c, b, cmd)
	}}

	var name, target, secret, secretFile, events, thresholds string
	body := func(cmd *cobra.Command) (map[string]any, error) {
		m := map[string]any{}
		f := cmd.Flags()
		if f.Changed("name") {
			m["name"] = name
		}
		if f.Changed("url") {
			m["url"] = target
		}
		if f.Changed("secret") {
			m["secret"] = secret
		}
		if f.Changed("secret-file") {
			var b []byte
			var err error
			if secretFile == "-" {
				b, err = io.ReadAll(io.LimitReader(cmd.InOrStdin(), 4096))
			} else {
				b, err = os.ReadFile(secretFile)
			}
			if err != nil {
				return nil, fmt.Errorf("read --secret-file: %w", err)
			}
			m["secret"] = strings.TrimRight(string(b), "\r\n")
		}
		if f.Changed("events") {
			m["events"] = splitNonEmpty(events)
		}
		if f.Changed("thresholds") {
			ts := []float64{}
			for _, s := range splitNonEmpty(thresholds) {
				t, err := strconv.ParseFloat(s, 64)
				if err != nil {
					return nil, fmt.Errorf("--thresholds: %q is not a number", s)
				}
				ts = append(ts, t)
			}
			m["thresholds"] = ts
		}
		return m, nil
	}
	addFields := func(c *cobra.Command) {
		f := c.Flags()
		f.StringVar(&name, "name", "", "webhook name")
		f.StringVar(&target, "url", "", "http(s) URL the notifications are POSTed to")
		f.StringVar(&secret, "secret", "", "signing secret (visible to other users of this machine: prefer --secret-file)")
		f.StringVar(&secretFile, "secret-file", "", "file holding the signing secret (- reads standard input)")
		f.StringVar(&events, "events", "", "comma-separated events: quota.threshold, key.throttled, key.disabled (default all)")
		f.StringVar(&thresholds, "thresholds", "", "comma-separated percentages of the quota, each in (0, 100] (default 80,100)")
	}
	create := &cobra.Command{Use: "create --url URL --secret-file FILE", Short: "Create a webhook", Args: cobra.NoArgs, RunE: func(cmd *cobra.Command, _ []string) error {
		c, err := o.client()
		if err != nil {
			return err
		}
		m, err := body(cmd)
		if err != nil {
			return err
		}
		b, err := c.do("POST", "/v1/webhooks", m, "")
		if err != nil {
			return err
		}
		return one(c, b, cmd)
	}}
	addFields(create)
	update := &cobra.Command{Use: "update WEBHOOK_ID", Short: "Change a webhook's name, URL, secret, events or thresholds", Args: cobra.ExactArgs(1), RunE: func(cmd *cobra.Command, args []string) error {
		c, err := o.client()
		if err != nil {
			return err
		}
		m, err := body(cmd)
		if err != nil {
			return err
		}
		b, err := c.do("PATCH", "/v1/webhooks/"+url.PathEscape(args[0]), m, "")
		if err != nil {
			return err
		}
		return one(c, b, cmd)
	}}
	addFields(update)
	del := &cobra.Command{Use: "delete WEBHOOK_ID", Short: "Delete a webhook (its pending notifications are given up)", Args: cobra.ExactArgs(1), RunE: func(cmd *cobra.Command, args []string) error {
		c, err := o.client()
		if err != nil {
			return err
		}
		_, err = c.do("DELETE", "/v1/webhooks/"+url.PathEscape(args[0]), nil, "")
		return err
	}}
	var webhookID, keyID, state string
	var limit int
	deliveries := &cobra.Command{Use: "deliveries", Short: "List notification deliveries, newest first (tollgate serve: in a fleet the aggregators send them)", Args: cobra.NoArgs, RunE: func(cmd *cobra.Command, _ []string) error {
		c, err := o.client()
		if err != nil {
			return err
		}
		q := url.Values{"limit": {strconv.Itoa(limit)}}
		for k, v := range map[string]string{"webhookId": webhookID, "keyId": keyID, "state": state} {
			if v != "" {
				q.Set(k, v)
			}
		}
		b, err := c.do("GET", "/v1/webhooks/deliveries?"+q.Encode(), nil, "")
		if err != nil {
			return err
		}
		rows, m, err := items(b)
		if err != nil {
			return err
		}
		return c.print(cmd.OutOrStdout(), m, rows, deliveryColumns)
	}}
	deliveries.Flags().StringVar(&webhookID, "webhook-id", "", "only this webhook's")
	deliveries.Flags().StringVar(&keyID, "key-id", "", "only this key's")
	deliveries.Flags().StringVar(&state, "state", "", "pending, delivered or failed")
	deliveries.Flags().IntVar(&limit, "limit", 100, "at most this many (1-500)")
	cmd.AddCommand(list, get, create, update, del, deliveries)
	return cmd
}
