// Package benchkit is the scaffolding the benchmark commands share
// (cmd/historybench, cmd/scalebench, cmd/loadtest): their main and exit
// codes, the processes they start and stop, what they read of those
// processes (announced addresses, output lines, CPU time, RSS), the
// in-process Kafka broker with tollgate's topics, and small waits.
//
// A benchmark's main is
//
//	// run(ctx, cfg, stdout, stderr) error; parseFlags(args, stderr) (config, error)
//	var cli = benchkit.Command("mybench", parseFlags, run)
//
//	func main() { benchkit.Main(cli) }
//
// and it starts tollgate with a Procs, stopped together at its end:
//
//	var ps benchkit.Procs
//	defer ps.StopAll()
//	p, err := ps.Start("serve", bin, args, benchkit.ChildEnv(), "", nil)
//	addr, err := p.Addr(ctx, "admin") // once it logs msg="admin listening" addr=...
//
// StartProc says more: a context whose end kills the process group, the
// grace Stop gives before SIGKILL, how many output lines Failure shows.
//
// What is particular to one benchmark (its measurements, tables and
// flags) stays in its command.
package benchkit
