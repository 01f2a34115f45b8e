package main

import (
	"context"
	"fmt"
	"os"
	"path"
	"sort"
	"strings"

	ci "helm.sh/helm/v4/pkg/chart"
	"helm.sh/helm/v4/pkg/chart/common"
	"helm.sh/helm/v4/pkg/chart/common/util"
	"helm.sh/helm/v4/pkg/chart/loader"
	chart "helm.sh/helm/v4/pkg/chart/v2"
	chartutil "helm.sh/helm/v4/pkg/chart/v2/util"
	"helm.sh/helm/v4/pkg/engine"
	"sigs.k8s.io/yaml"
)

// render is `helm template RELEASE CHART -n NAMESPACE -f FILE...` with Helm's
// own packages, in the order pkg/action's Install takes for a client-only
// dry run: load the chart, merge the values files (a later file wins, as -f
// does), process dependencies, coalesce with the chart's values and check
// them against its values.schema.json, render with the default (offline)
// capabilities. The result: template path -> rendered text, NOTES.txt and
// empty files dropped.
func render(chartDir string, valueFiles []string, release, namespace string) (map[string]string, error) {
	charter, err := loader.Load(chartDir)
	if err != nil {
		return nil, fmt.Errorf("helm: load chart %s: %w", chartDir, err)
	}
	vals := map[string]any{}
	for _, f := range valueFiles {
		text, err := os.ReadFile(f)
		if err != nil {
			return nil, err
		}
		var m map[string]any
		if err := yaml.Unmarshal(text, &m); err != nil {
			return nil, fmt.Errorf("helm: values %s: %w", f, err)
		}
		vals = mergeValues(vals, m)
	}
	if ch, ok := charter.(*chart.Chart); ok {
		if err := chartutil.ProcessDependencies(ch, vals); err != nil {
			return nil, fmt.Errorf("helm: dependencies: %w", err)
		}
	}
	opts := common.ReleaseOptions{Name: release, Namespace: namespace, Revision: 1, IsInstall: true}
	top, err := util.ToRenderValuesWithSchemaValidation(charter, vals, opts, common.DefaultCapabilities.Copy(), false)
	if err != nil {
		return nil, fmt.Errorf("helm: values: %w", err)
	}
	var e engine.Engine
	files, err := e.RenderWithContext(context.Background(), ci.Charter(charter), top)
	if err != nil {
		return nil, fmt.Errorf("helm template: %w", err)
	}
	for name, text := range files {
		if path.Base(name) == "NOTES.txt" || strings.TrimSpace(text) == "" {
			delete(files, name)
		}
	}
	return files, nil
}

// mergeValues merges src into dst as Helm merges -f files
// (pkg/cli/values: mergeMaps): maps merge key by key, anything else in src
// replaces what dst had.
func mergeValues(dst, src map[string]any) map[string]any {
	out := make(map[string]any, len(dst))
	for k, v := range dst {
		out[k] = v
	}
	for k, v := range src {
		if m, ok := v.(map[string]any); ok {
			if d, ok := out[k].(map[string]any); ok {
				out[k] = mergeValues(d, m)
				continue
			}
		}
		out[k] = v
	}
	return out
}

// sortedKeys returns a map's keys in order, for a stable report.
func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}
