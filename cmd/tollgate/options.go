package main

import (
	"os"
	"time"

	"github.com/spf13/pflag"
)

// options configure every role of the binary: tollgate serve (the
// gateway and the admin API on embedded storage, or, with --kafka, every
// role of a fleet in one process), tollgate enforcer (the gateway of a
// fleet) and tollgate reportapi (the admin and report API of a fleet).
// Each flag is declared once, below, with one help text; a command adds
// the groups its roles use.
type options struct {
	kafka      kafkaOptions
	clickhouse string // the usage store's DSN; "" keeps it embedded
	gateway    bool   // run the gateway (enforcer role)
	admin      bool   // run the admin and report API (reportapi role)

	config       string
	listen       string
	adminListen  string
	dataDir      string
	demoUpstream string
	queueSize    int
	flushEvery   time.Duration
	spillMax     int64
	drainTimeout time.Duration
	node         string
	fleetSize    int
	pprof        bool
	// shutdownTimeout bounds how long requests in flight may finish.
	shutdownTimeout time.Duration
	adminRate       float64
	adminBurst      int
	// noConsole leaves the web console out of the admin listener.
	noConsole bool
	// recreateMissing starts on a data folder that checkDataDir finds
	// inconsistent, making the missing state anew (embedded).
	recreateMissing bool
	// webhookAllowPrivate lets webhooks reach loopback and private
	// addresses (notify.Guard).
	webhookAllowPrivate bool
	// limits bound the gateway listener.
	limits edgeLimits
	// now replaces the clock in tests; nil means time.Now.
	now func() time.Time
}

// embedded reports whether o runs the whole pipeline on embedded storage
// (tollgate serve without --kafka).
func (o *options) embedded() bool { return !o.kafka.enabled() }

// addCommonFlags adds the flags every role has; the admin listener is
// off by default where adminDefault is "".
func (o *options) addCommonFlags(f *pflag.FlagSet, adminDefault string) {
	f.StringVar(&o.adminListen, "admin-listen", adminDefault, "admin API listen address (an enforcer serves only /healthz, /readyz and /metrics on it; \"\" turns it off)")
	f.StringVar(&o.dataDir, "data-dir", "./tollgate-data", "folder for this process's state: catalog (or its snapshot), usage database, quota states, spill log, admin credentials, audit log")
	f.DurationVar(&o.shutdownTimeout, "shutdown-timeout", 60*time.Second, "on SIGTERM, how long requests in flight may take to finish (then their connections are cut)")
	f.BoolVar(&o.pprof, "pprof", false, "serve Go profiles under /debug/pprof on the admin listener")
	f.Float64Var(&o.adminRate, "admin-rate-limit", 100, "admin API requests per second; beyond, 429 TooManyRequestsException")
	f.IntVar(&o.adminBurst, "admin-burst-limit", 1000, "admin API burst")
	f.BoolVar(&o.noConsole, "no-console", false, "leave the web console (/ui/, signed in with the admin bearer token) out of the admin listener")
}

// addConfigFlag adds --config, and the webhooks' address policy, for
// the roles that write the catalog.
func (o *options) addConfigFlag(f *pflag.FlagSet) {
	f.StringVar(&o.config, "config", "", "declarative configuration file (YAML) applied to the catalog at start; the same file again is skipped, so a restart keeps what the admin API changed since")
	f.BoolVar(&o.webhookAllowPrivate, "webhook-allow-private", false, webhookAllowPrivateHelp)
}

const webhookAllowPrivateHelp = "let webhooks reach loopback and private addresses (link-local and cloud metadata addresses stay refused)"

// addGatewayFlags adds the flags of the gateway role. The spill log, the
// drain and the node name are a fleet's (with --kafka).
func (o *options) addGatewayFlags(f *pflag.FlagSet) {
	o.limits.addFlags(f)
	f.StringVar(&o.listen, "listen", "127.0.0.1:8080", "gateway listen address")
	f.IntVar(&o.queueSize, "event-queue", 1<<16, "usage events buffered between requests and the usage store (or Kafka); beyond it events are dropped and counted")
	f.DurationVar(&o.flushEvery, "flush-interval", 200*time.Millisecond, "longest time a usage event waits before it is written to the usage store (or handed to Kafka)")
	f.Int64Var(&o.spillMax, "spill-max-bytes", 1<<30, "with --kafka: cap of the spill log (events kept on disk while Kafka is unreachable); beyond it the newest events are dropped, counted and reported as lost usage")
	f.DurationVar(&o.drainTimeout, "drain-timeout", 30*time.Second, "with --kafka: on SIGTERM, how long to spend handing spilled events to Kafka; what is left stays on disk for the next start")
	host, _ := os.Hostname()
	f.StringVar(&o.node, "node", host, "with --kafka: this enforcer's name in usage events, quota signals and lost-usage records: unique and stable per enforcer (quota leases are split by it)")
	f.IntVar(&o.fleetSize, "fleet-size", 0, "with --kafka: how many enforcers share a key's throttle until the aggregator's divisions say (each admits 1/N of a key's rate where no division holds); 0 learns it from the divisions, admitting whole rates until the first")
}
