package supervise

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"regexp"
	"strings"
)

var envName = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)

// ReadEnvFile reads an env file as docker --env-file and compose's env_file
// read one: KEY=VALUE lines, the value verbatim (no quotes, no expansion);
// blank lines and lines starting with # are skipped; a bare KEY takes its
// value from lookup and is left out when lookup has none. The entries come
// in file order.
func ReadEnvFile(r io.Reader, lookup func(string) (string, bool)) ([]string, error) {
	var out []string
	sc := bufio.NewScanner(r)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimLeft(sc.Text(), " \t")
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		key, value, set := strings.Cut(line, "=")
		if !envName.MatchString(key) {
			return nil, fmt.Errorf("line %d: %q is not a variable name", n, key)
		}
		if !set {
			v, ok := lookup(key)
			if !ok {
				continue
			}
			value = v
		}
		out = append(out, key+"="+value)
	}
	return out, sc.Err()
}

// LoadEnvFile sets this process's environment from the env file at path
// (see ReadEnvFile); a variable already set keeps its value, as a shell's
// or a container's environment wins over an env file.
func LoadEnvFile(path string) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	entries, err := ReadEnvFile(f, os.LookupEnv)
	if err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	for _, e := range entries {
		k, v, _ := strings.Cut(e, "=")
		if _, ok := os.LookupEnv(k); !ok {
			if err := os.Setenv(k, v); err != nil {
				return err
			}
		}
	}
	return nil
}
