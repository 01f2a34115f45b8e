package config

import (
	"errors"
	"fmt"
	"os"
	"strings"

	"github.com/subgate/subgate/pkg/kongschema"
)

// Secret is a secret config value from exactly one of three sources: the
// field itself (referenceable: Kong resolves a vault reference such as
// {vault://env/NAME} before the plugin sees it), a file read at instance
// start, or an environment variable. Errors name the field and the path or
// variable, never the secret.
type Secret struct {
	Field string // the config field, e.g. "keys[1].secret"
	Value string
	File  string
	Env   string
}

// Set reports whether any source is given.
func (s Secret) Set() bool { return s.Value != "" || s.File != "" || s.Env != "" }

// Sources checks that exactly one source is given, without reading it: a
// rule of its own, since Kong skips its mutually_exclusive check when the
// field holds a vault reference (kong/db/schema/init.lua run_entity_check),
// so a reference and a file pass Kong and would fail every request.
func (s Secret) Sources() error {
	n := 0
	for _, v := range []string{s.Value, s.File, s.Env} {
		if v != "" {
			n++
		}
	}
	switch {
	case n == 0:
		return fmt.Errorf("%s: no secret: set %s, %s_file or %s_env", s.Field, s.Field, s.Field, s.Field)
	case n > 1 && IsReference(s.Value):
		return fmt.Errorf("%s: a vault reference and %s_file or %s_env: set only one (Kong does not refuse this at load, the plugin would at start)", s.Field, s.Field, s.Field)
	case n > 1:
		return fmt.Errorf("%s: set only one of %s, %s_file and %s_env", s.Field, s.Field, s.Field, s.Field)
	}
	return nil
}

// SourcesIfSet is Sources for an optional secret: none given is fine.
func (s Secret) SourcesIfSet() error {
	if !s.Set() {
		return nil
	}
	return s.Sources()
}

// Read returns the secret.
func (s Secret) Read() (string, error) {
	if err := s.Sources(); err != nil {
		return "", err
	}
	switch {
	case s.Value != "":
		return s.Value, nil
	case s.File != "":
		b, err := ReadFile(s.Field+"_file", s.File)
		if err != nil {
			return "", err
		}
		v := strings.TrimRight(string(b), "\r\n") // files written by editors and echo end in a newline
		if v == "" {
			return "", fmt.Errorf("%s_file: %s is empty", s.Field, s.File)
		}
		return v, nil
	}
	v := os.Getenv(s.Env)
	if v == "" {
		return "", fmt.Errorf("%s_env: environment variable %s is unset or empty in the plugin server: "+
			"nginx clears the environment of the processes Kong starts; declare it with nginx_main_env "+
			"(KONG_NGINX_MAIN_ENV=%s) or use %s (a vault reference) or %s_file", s.Field, s.Env, s.Env, s.Field, s.Field)
	}
	return v, nil
}

// ReadFile reads the file a setting names, with an error that names the
// setting and the file once (an *os.PathError's message would repeat it).
func ReadFile(field, file string) ([]byte, error) {
	b, err := os.ReadFile(file)
	if err != nil {
		var pe *os.PathError
		if errors.As(err, &pe) {
			err = pe.Err
		}
		return nil, fmt.Errorf("%s: cannot read %s: %v", field, file, err)
	}
	return b, nil
}

// IsReference reports whether s is a Kong vault reference (kong/pdk/vault.lua
// is_reference).
func IsReference(s string) bool { return kongschema.IsReference(s) }
