// Command k8s-validate checks subgate's Kubernetes deployment (this
// directory: Helm values for Kong's chart and Kong Ingress Controller
// manifests) offline; `make k8s-validate` runs it.
//
// It renders the chart with each set of values (Helm's own engine, as helm
// template); checks that the API server would accept every rendered object
// and manifest (built-in kinds strictly decoded into Kubernetes' types, with
// their metadata and pod rules; custom resources against the chart's CRDs,
// OpenAPI v3 schema and CEL rules, as the apiextensions server applies them);
// checks that the Kong pod runs the plugin servers as the README says (a
// subgate-pluginservers sidecar, a shared socket directory, probes, the
// settings of kong/plugins.env, secrets only where Kong reads them); and runs
// every plugin config of the values and the manifests through spec/validate,
// the checker of `make validate`.
//
//	go run . -repo ../.. [-bin ../../bin] [-chart ../../../shared/k8s/kong-chart]
//
// The exit status is 1 when anything is wrong.
package main

import (
	"bytes"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
)

func main() {
	repo := flag.String("repo", "../..", "the subgate repository")
	bin := flag.String("bin", "", "the plugin binaries, named as the plugins (default REPO/bin; make build)")
	chart := flag.String("chart", "", "Kong's Helm chart (default: shared/k8s/kong-chart beside the repository, or beside its parent for a worktree)")
	flag.Parse()
	if *bin == "" {
		*bin = filepath.Join(*repo, "bin")
	}
	if *chart == "" {
		*chart = findChart(*repo)
	}
	tmp, err := os.MkdirTemp("", "k8s-validate-bin-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	validate, err := buildValidate(*repo, tmp)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.RemoveAll(tmp)
		os.Exit(1)
	}
	r := Check(Config{
		Dir:        filepath.Join(*repo, "docker", "k8s"),
		Chart:      *chart,
		PluginsEnv: filepath.Join(*repo, "kong", "plugins.env"),
		Dockerfile: filepath.Join(*repo, "docker", "Dockerfile"),
		Release:    "gw",
		Namespace:  "kong",
		Validate:   validator(validate, *bin),
	})
	os.RemoveAll(tmp)
	for _, n := range r.Notes {
		fmt.Println(n)
	}
	for _, p := range r.Problems {
		fmt.Fprintln(os.Stderr, p)
	}
	if len(r.Problems) > 0 {
		fmt.Fprintf(os.Stderr, "k8s-validate: %d problems\n", len(r.Problems))
		os.Exit(1)
	}
	fmt.Println("k8s-validate: ok")
}

// findChart is the chart copy in $SUBGATE_SHARED (.ci/run sets it to where
// it found the Kong kit), in shared/ beside the repository (CI's clone, the
// main checkout) or beside its parent (a worktree in wt/NAME).
func findChart(repo string) string {
	candidates := []string{filepath.Join(repo, "..", "shared", "k8s", "kong-chart"), filepath.Join(repo, "..", "..", "shared", "k8s", "kong-chart")}
	if d := os.Getenv("SUBGATE_SHARED"); d != "" {
		candidates = append([]string{filepath.Join(d, "k8s", "kong-chart")}, candidates...)
	}
	for _, c := range candidates {
		if _, err := os.Stat(filepath.Join(c, "Chart.yaml")); err == nil {
			return c
		}
	}
	return candidates[0]
}

// buildValidate builds spec/validate (the repository's own checker, run
// unchanged) into dir and returns the executable's path.
func buildValidate(repo, dir string) (string, error) {
	exe := filepath.Join(dir, "validate")
	cmd := exec.Command("go", "build", "-o", exe, "./spec/validate")
	cmd.Dir = repo
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("build spec/validate: %v\n%s", err, out)
	}
	return exe, nil
}

// validator runs the built spec/validate with the plugin binaries in bin.
func validator(exe, bin string) func([]string) (string, string, error) {
	return func(files []string) (string, string, error) {
		var out, errOut bytes.Buffer
		cmd := exec.Command(exe, append([]string{"-bin", bin}, files...)...)
		cmd.Stdout, cmd.Stderr = &out, &errOut
		err := cmd.Run()
		return out.String(), errOut.String(), err
	}
}
