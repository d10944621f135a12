// Package logs holds the project's one logging rule (see ARCHITECTURE.md,
// "Logs"): a component is given its *slog.Logger in its Config (nil
// discards) and names itself under the attribute component.
package logs

import "log/slog"

// For returns the logger a component logs with: l (or, if l is nil, one
// that discards) with component set to name.
func For(l *slog.Logger, name string) *slog.Logger {
	if l == nil {
		l = slog.New(slog.DiscardHandler)
	}
	return l.With("component", name)
}
