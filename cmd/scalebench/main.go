// Command scalebench is the scale benchmark behind `make bench-scale`: it
// builds catalogs of many API keys (10k, 100k and 1M by default), drives a
// built tollgate binary through its external interfaces only (its flags,
// the gateway, the admin API, the data folder), and prints a markdown
// table of what it measured, each figure beside its target.
//
//	scalebench [--sizes 10000,100000,1000000] [--baseline 1000] [--tollgate bin/tollgate]
//	           [--ops 200] [--out FILE.md] [--skip-fleet] [--step-timeout 2m]
//
// For each size N (and the baseline size, measured in the same run so that
// the admin operations can be compared with it) it writes a configuration
// file of N keys, all in one plan, each with a deterministic value, and
// measures:
//
//   - serve's first start from that file: the time from starting the
//     process until the gateway admits the file's last key (polled every
//     10 ms until it no longer answers 403);
//   - serve's RSS (VmRSS from /proc) once it serves and has logged
//     "start memory released" (the start's garbage handed back to the
//     OS), as bytes per key: (RSS − RSS at the baseline size) / (N −
//     baseline size), so that the process's fixed cost is not counted per
//     key; the same after the restart below;
//   - --ops calls each of create-api-key, create-usage-plan-key and
//     update-api-key (disable), one after the other over loopback with a
//     bearer token: p50, p99, and p99 as a multiple of the baseline's;
//   - the RSS after those changes, against the RSS after start;
//   - GetApiKeys in pages of 500, walked from the first page to the last
//     (a page's position is opaque, so walking is the only way to reach the
//     middle and the end): the slowest page, and the first, middle and
//     last;
//   - serve's restart from its data folder (no --config) until the last
//     key is admitted;
//   - on the smallest size only, ImportApiKeys of --import-rows CSV rows
//     that name the plan in UsagePlanIds, one request;
//   - unless --skip-fleet, a fleet on a Kafka-protocol broker that runs in
//     this process (franz-go's kfake): topics made by `tollgate migrate
//     kafka`, the file applied by `tollgate reportapi --config` (the time
//     until it listens is shown, without a target), the first start of
//     `tollgate enforcer` from the config log until it admits the last
//     key, its restart from its snapshot (same data folder), and, with two
//     enforcers running, the time from the answer to create-usage-plan-key
//     (the change that makes a key created with create-api-key admissible)
//     until both enforcers admit the new key, over --fleet-changes keys.
//
// Every step is bounded by --step-timeout: a step that runs out shows
// "timed out after X" in the table (with what it measured so far) and the
// steps that needed it are skipped; the benchmark never hangs. The child
// processes are stopped (SIGTERM, then SIGKILL) when a size ends, and die
// with the benchmark on Linux.
//
// The configuration file is written as JSON, which is also YAML: today's
// catalog.ParseFile reads both with one YAML parser at the same speed
// (20k keys: 0.52 s as JSON, 0.45 s as block YAML, 0.54 s as flow YAML),
// and JSON is what a dedicated parser can read fastest. It is streamed to
// disk, one key per line (about 100 bytes a key: 100 MB at 1M keys).
//
// The measurements are made on whatever machine runs the command, with
// everything (benchmark, broker, tollgate processes) sharing its CPUs;
// the header of the table says how many there were.
package main

import "github.com/tollgate/tollgate/internal/benchkit"

// cli runs the benchmark with args and returns the exit code: 2 for bad
// flags, 1 when the benchmark could not run at all. Figures that miss their targets do
// not fail the command: the table says so.
var cli = benchkit.Command("scalebench", parseFlags, run)

func main() { benchkit.Main(cli) }
