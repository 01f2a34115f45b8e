package kongsim

import (
	"fmt"
	"strings"
	"sync"
)

// Level is an nginx error-log level, numbered as nginx numbers them
// (NGX_LOG_EMERG 1 ... NGX_LOG_DEBUG 8): a log at level L records a
// message at level M when M <= L.
type Level int

// nginx's levels, as Kong's PDK names them (kong/pdk/log.lua _LEVELS).
const (
	LogEmerg  Level = 1
	LogAlert  Level = 2
	LogCrit   Level = 3
	LogErr    Level = 4
	LogWarn   Level = 5
	LogNotice Level = 6
	LogInfo   Level = 7
	LogDebug  Level = 8
)

// DefaultLevel is Kong's default log_level (kong/templates/kong_defaults.lua:
// `log_level = notice`), the level of error_log in kong/templates/nginx.lua.
const DefaultLevel = LogNotice

var levelNames = map[Level]string{LogEmerg: "emerg", LogAlert: "alert", LogCrit: "crit", LogErr: "error",
	LogWarn: "warn", LogNotice: "notice", LogInfo: "info", LogDebug: "debug"}

func (l Level) String() string {
	if n, ok := levelNames[l]; ok {
		return n
	}
	return fmt.Sprintf("level(%d)", int(l))
}

// ParseLevel reads a Kong log_level value (kong/conf_loader/constants.lua:
// debug, info, notice, warn, error, crit, alert, emerg).
func ParseLevel(s string) (Level, error) {
	for l, n := range levelNames {
		if n == s {
			return l, nil
		}
	}
	return 0, fmt.Errorf("log_level %q: want one of debug, info, notice, warn, error, crit, alert, emerg", s)
}

// Entry is one error-log message.
type Entry struct {
	Level Level
	// Source is the plugin's name for the kong.log.* calls it made; "kong"
	// for what Kong's plugin-server code logs itself.
	Source string
	Text   string // the message as Kong writes it, prefixes included
}

func (e Entry) String() string { return "[" + e.Level.String() + "] " + e.Text }

// ErrorLog models Kong's error log (nginx's error_log at Kong's log_level).
// Every message is recorded with its level so a spec can ask both what an
// operator sees at the configured level and what was written at any level.
// Safe for concurrent use.
type ErrorLog struct {
	level Level

	mu      sync.Mutex
	entries []Entry
}

// NewErrorLog returns an empty error log at level (0: DefaultLevel).
func NewErrorLog(level Level) *ErrorLog {
	if level == 0 {
		level = DefaultLevel
	}
	return &ErrorLog{level: level}
}

// Level is the configured log_level.
func (l *ErrorLog) Level() Level { return l.level }

// Write records a message at level from source.
func (l *ErrorLog) Write(level Level, source, text string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.entries = append(l.entries, Entry{Level: level, Source: source, Text: text})
}

// Kong records a message Kong's own plugin-server code logs (kong.log.err,
// kong.log.warn, ... in process.lua, plugin.lua, pb_rpc.lua).
func (l *ErrorLog) Kong(level Level, format string, a ...any) {
	l.Write(level, "kong", fmt.Sprintf(format, a...))
}

// Entries returns every message recorded, whatever its level.
func (l *ErrorLog) Entries() []Entry {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]Entry(nil), l.entries...)
}

// SeenAt is what an operator reads in the error log when log_level is
// level: the messages at that level or more severe, one per line.
func (l *ErrorLog) SeenAt(level Level) string {
	var b strings.Builder
	for _, e := range l.Entries() {
		if e.Level <= level {
			b.WriteString(e.String())
			b.WriteByte('\n')
		}
	}
	return b.String()
}

// Seen is what an operator reads at the configured log_level.
func (l *ErrorLog) Seen() string { return l.SeenAt(l.level) }
