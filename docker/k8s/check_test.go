package main

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
)

// The tests run Check on a copy of this directory, of a kong/plugins.env in
// the subgate-pluginservers layout and of docker/Dockerfile, each test
// breaking one thing and expecting the check to say so.

const repo = "../.."

var (
	validateOnce sync.Once
	validateFn   func([]string) (string, string, error)
	validateErr  error
)

// validateCmd builds spec/validate once, and the plugin binaries unless
// SUBGATE_BIN names them (make k8s-validate does, after make build).
func validateCmd(t *testing.T) func([]string) (string, string, error) {
	t.Helper()
	validateOnce.Do(func() {
		dir, err := os.MkdirTemp("", "k8s-validate-test-")
		if err != nil {
			validateErr = err
			return
		}
		exe, err := buildValidate(repo, dir)
		if err != nil {
			validateErr = err
			return
		}
		bin := os.Getenv("SUBGATE_BIN")
		if bin == "" {
			bin = filepath.Join(dir, "bin")
			plugins, _ := filepath.Glob(filepath.Join(repo, "plugins", "*"))
			for _, p := range plugins {
				cmd := exec.Command("go", "build", "-o", filepath.Join(bin, filepath.Base(p)), "./plugins/"+filepath.Base(p))
				cmd.Dir = repo
				if out, err := cmd.CombinedOutput(); err != nil {
					validateErr = fmt.Errorf("build %s: %v\n%s", p, err, out)
					return
				}
			}
		}
		validateFn = validator(exe, bin)
	})
	if validateErr != nil {
		t.Fatal(validateErr)
	}
	return validateFn
}

// pluginsEnvFixture is kong/plugins.env as subgate-pluginservers reads it:
// Kong gets sockets and query commands, the supervisor the start commands.
func pluginsEnvFixture() string {
	names := []string{"jwt-claims", "subscription-owner", "payment-token", "user-context", "subgate"}
	var b strings.Builder
	b.WriteString("# plugin-server settings\n")
	b.WriteString("KONG_PLUGINS=bundled," + strings.Join(names, ",") + "\n")
	b.WriteString("KONG_PLUGINSERVER_NAMES=" + strings.Join(names, ",") + "\n")
	for i, n := range names {
		v := serverVar(n)
		fmt.Fprintf(&b, "\nKONG_PLUGINSERVER_%s_SOCKET=/var/run/subgate/%s.socket\n", v, n)
		fmt.Fprintf(&b, "KONG_PLUGINSERVER_%s_QUERY_CMD=/usr/local/lib/subgate/%s -dump\n", v, n)
		fmt.Fprintf(&b, "SUBGATE_PLUGINSERVER_%s_START_CMD=/usr/local/lib/subgate/%s -kong-prefix /var/run/subgate -metrics-addr 0.0.0.0:%d\n", v, n, 9542+i)
	}
	return b.String()
}

// fixture copies the deployment into a temporary directory and returns the
// Config that checks the copy.
func fixture(t *testing.T) Config {
	t.Helper()
	dir := t.TempDir()
	k8s := filepath.Join(dir, "k8s")
	for _, f := range []string{"values.yaml", "values-dbless.yaml", "manifests/plugins.yaml", "manifests/ingress.yaml"} {
		copyFile(t, f, filepath.Join(k8s, f))
	}
	copyFile(t, filepath.Join(repo, "docker", "Dockerfile"), filepath.Join(dir, "Dockerfile"))
	if err := os.WriteFile(filepath.Join(dir, "plugins.env"), []byte(pluginsEnvFixture()), 0o644); err != nil {
		t.Fatal(err)
	}
	return Config{
		Dir:        k8s,
		Chart:      findChart(repo),
		PluginsEnv: filepath.Join(dir, "plugins.env"),
		Dockerfile: filepath.Join(dir, "Dockerfile"),
		Release:    "gw",
		Namespace:  "kong",
		Validate:   validateCmd(t),
	}
}

func copyFile(t *testing.T, from, to string) {
	t.Helper()
	b, err := os.ReadFile(from)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Dir(to), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(to, b, 0o644); err != nil {
		t.Fatal(err)
	}
}

// edit replaces old with new in a file of the fixture, once; old must be
// there exactly once, so that a test cannot silently edit nothing. An empty
// old appends new.
func edit(t *testing.T, file, old, new string) {
	t.Helper()
	b, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	if old == "" {
		b = append(b, "\n"+new...)
		if err := os.WriteFile(file, b, 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	if n := strings.Count(string(b), old); n != 1 {
		t.Fatalf("%s: %q occurs %d times, want once", file, old, n)
	}
	if err := os.WriteFile(file, []byte(strings.Replace(string(b), old, new, 1)), 0o644); err != nil {
		t.Fatal(err)
	}
}

func TestDeploymentPasses(t *testing.T) {
	r := Check(fixture(t))
	if len(r.Problems) > 0 {
		t.Fatalf("problems:\n%s", strings.Join(r.Problems, "\n"))
	}
	notes := strings.Join(r.Notes, "\n")
	for _, want := range []string{
		"helm template -f values.yaml: ", "helm template -f values.yaml -f values-dbless.yaml: ",
		"plugin configs ok: kic.kong.yml (7 plugin configs)", "plugin configs ok: dbless.kong.yml (7 plugin configs)",
	} {
		if !strings.Contains(notes, want) {
			t.Errorf("notes lack %q:\n%s", want, notes)
		}
	}
}

// TestOldPluginsEnvIsPending: kong/plugins.env from before
// subgate-pluginservers is reported, not compared.
func TestOldPluginsEnvIsPending(t *testing.T) {
	c := fixture(t)
	old := "KONG_PLUGINS=bundled,subgate\nKONG_PLUGINSERVER_NAMES=subgate\nKONG_PLUGINSERVER_SUBGATE_START_CMD=/usr/local/bin/subgate\nKONG_PLUGINSERVER_SUBGATE_QUERY_CMD=/usr/local/bin/subgate -dump\n"
	if err := os.WriteFile(c.PluginsEnv, []byte(old), 0o644); err != nil {
		t.Fatal(err)
	}
	r := Check(c)
	if len(r.Problems) > 0 {
		t.Fatalf("problems:\n%s", strings.Join(r.Problems, "\n"))
	}
	if !strings.Contains(strings.Join(r.Notes, "\n"), "pending: ") {
		t.Fatalf("no pending note: %q", r.Notes)
	}
}

// A broken fixture: which file, what to replace, and what the check must say.
type breakage struct {
	name, file, old, new string
	want                 []string
}

func TestBrokenFixturesFail(t *testing.T) {
	for _, b := range []breakage{
		// helm template itself.
		{"chart refuses the values", "values-dbless.yaml", "dblessConfig:\n", "dblessConfig:\n  configMap: other\n",
			[]string{"helm template -f values.yaml -f values-dbless.yaml: helm template: ", "Ambiguous configuration"}},
		{"values are not YAML", "values.yaml", "customEnv:\n", "customEnv: [\n",
			[]string{"helm: values "}},

		// Kubernetes' types, strictly.
		{"unknown field in a rendered container", "values.yaml", "      imagePullPolicy: IfNotPresent\n", "      imagePullPolicy: IfNotPresent\n      readinessprobe: {}\n",
			[]string{`Deployment gw-kong: strict decoding error: unknown field "spec.template.spec.initContainers[1].readinessprobe"`}},
		{"port number as a string", "manifests/ingress.yaml", "          - path: /subscriptions\n            pathType: Prefix\n            backend:\n              service:\n                name: echo\n                port:\n                  number: 8080\n",
			"          - path: /subscriptions\n            pathType: Prefix\n            backend:\n              service:\n                name: echo\n                port:\n                  number: \"8080\"\n",
			[]string{"manifests/ingress.yaml:4: Ingress subgate-subscriptions: ", "number"}},
		{"wrong type in metadata", "manifests/ingress.yaml", "  name: subgate-coaching\n", "  name: subgate-coaching\n  generation: many\n",
			[]string{"Ingress subgate-coaching: ", "generation"}},
		{"invalid object name", "manifests/ingress.yaml", "  name: subgate-sg-coaching\n", "  name: Subgate_SG\n",
			[]string{"Ingress Subgate_SG: metadata.name: Invalid value"}},
		{"kind without a schema", "manifests/plugins.yaml", "kind: KongClusterPlugin\n", "kind: KongClusterPlugins\n",
			[]string{"manifests/plugins.yaml:12: configuration.konghq.com/v1 KongClusterPlugins: no schema"}},

		// The CRDs' schemas and CEL rules.
		{"unknown field in a KongPlugin", "manifests/plugins.yaml", "  name: subgate-subscriptions-owner\nplugin: subscription-owner\n", "  name: subgate-subscriptions-owner\nplugin: subscription-owner\ndisable: true\n",
			[]string{`KongPlugin subgate-subscriptions-owner: unknown field "disable"`}},
		{"config and configFrom (CEL)", "manifests/plugins.yaml", "plugin: subgate\nconfigFrom:\n", "plugin: subgate\nconfig: {}\nconfigFrom:\n",
			[]string{"KongPlugin subgate-coaching: <nil>: Invalid value: ", "Using both config and configFrom fields is not allowed."}},
		{"protocol outside the enum", "manifests/plugins.yaml", "plugin: subgate\n", "plugin: subgate\nprotocols: [http, ws]\n",
			[]string{"KongPlugin subgate-coaching: protocols[1]: Unsupported value: \"ws\""}},
		{"KongPlugin without plugin", "manifests/plugins.yaml", "plugin: user-context\n", "",
			[]string{"KongPlugin subgate-coaching-identity: plugin: Required value"}},

		// Pod rules beyond the types.
		{"mount of a missing volume", "values.yaml", "    - name: subgate-sockets\n      emptyDir: {}\n", "    - name: sockets\n      emptyDir: {}\n",
			[]string{`init container "subgate-pluginservers": volumeMount "subgate-sockets": no volume of that name in the pod`}},
		{"named probe port missing", "values.yaml", "        - name: sg-health\n", "        - name: sg-hea1th\n",
			[]string{`init container "subgate-pluginservers": startupProbe: port "sg-health": the container has no port of that name`}},
		{"Secret that nobody creates", "values.yaml", "        name: subgate-redis\n", "        name: redis\n",
			[]string{`container "proxy": env SUBGATE_REDIS_PASSWORD: Secret redis is neither rendered`}},

		// The subgate wiring of the Kong pod.
		{"sidecar without restartPolicy", "values.yaml", "      restartPolicy: Always\n", "",
			[]string{"an init container that never exits holds the pod back", "may not be set for init containers without restartPolicy Always"}},
		{"sidecar from another image", "values.yaml", "      image: subgate-kong:0.1.0\n", "      image: subgate-kong:0.0.9\n",
			[]string{"image subgate-kong:0.0.9 differs from Kong's subgate-kong:0.1.0"}},
		{"sidecar runs Kong too", "values.yaml", "        - 0.0.0.0:9550\n", "        - 0.0.0.0:9550\n        - --\n        - kong\n",
			[]string{"runs a command after the plugin servers (a second Kong)"}},
		{"no health address", "values.yaml", "        - -health-addr\n        - 0.0.0.0:9550\n", "",
			[]string{"no -health-addr HOST:PORT"}},
		{"readiness path", "values.yaml", "          path: /ready\n          port: sg-health\n        periodSeconds: 5\n", "          path: /healthz\n          port: sg-health\n        periodSeconds: 5\n",
			[]string{`readinessProbe: path "/healthz": the supervisor answers /ready there`}},
		{"liveness on a metrics port", "values.yaml", "          path: /live\n          port: sg-health\n", "          path: /live\n          port: m-subgate\n",
			[]string{"livenessProbe: port m-subgate is not the -health-addr port 9550"}},
		{"no startup probe", "values.yaml", "      startupProbe:\n        httpGet:\n          path: /ready\n          port: sg-health\n        periodSeconds: 1\n        failureThreshold: 30\n", "",
			[]string{"startupProbe: required", "Kubernetes starts Kong before the plugin servers accept connections"}},
		{"sockets mounted elsewhere in the sidecar", "values.yaml", "      volumeMounts:\n        - name: subgate-sockets\n          mountPath: /var/run/subgate\n", "      volumeMounts:\n        - name: subgate-sockets\n          mountPath: /run/subgate\n",
			[]string{"nothing mounted at /var/run/subgate, where the plugin servers create their sockets"}},
		{"sockets on a ConfigMap volume", "values.yaml", "      emptyDir: {}\n", "      configMap:\n        name: subgate-pluginservers\n",
			[]string{`volume "subgate-sockets" (the socket directory /var/run/subgate): want an emptyDir`}},
		{"secret handed to the plugin servers", "values.yaml", "      envFrom:\n        - configMapRef:\n            name: subgate-pluginservers\n      ports:", "      envFrom:\n        - configMapRef:\n            name: subgate-pluginservers\n        - secretRef:\n            name: subgate-redis\n      ports:",
			[]string{`container "subgate-pluginservers": env password comes from Secret subgate-redis: the plugin servers need no secret`}},
		{"vault variable missing in Kong", "values.yaml", "customEnv:\n  subgate_redis_password:\n", "customEnv:\n  subgate_redis_passwd:\n",
			[]string{`container "proxy": no env SUBGATE_REDIS_PASSWORD, which KongPlugin subgate-subscriptions-owner (manifests/plugins.yaml:26) references`,
				`no env SUBGATE_REDIS_PASSWORD, which dblessConfig.config references`}},
		{"vault variable as a literal", "values.yaml", "  subgate_redis_password:\n    valueFrom:\n      secretKeyRef:\n        name: subgate-redis\n        key: password\n", "  subgate_redis_password: hunter2\n",
			[]string{"env SUBGATE_REDIS_PASSWORD, which", "is a literal value: keep a secret in a Secret"}},
		{"metrics port not declared", "values.yaml", "        - name: m-subgate\n          containerPort: 9546\n", "",
			[]string{"ports: subgate's metrics port 9546 (-metrics-addr in"}},
		{"values override a plugins.env setting", "values.yaml", "customEnv:\n", "env:\n  pluginserver_subgate_socket: /tmp/subgate.socket\ncustomEnv:\n",
			[]string{`container "proxy": env KONG_PLUGINSERVER_SUBGATE_SOCKET is "/tmp/subgate.socket", `}},
		{"plugins.env lets Kong start a server", "../plugins.env", "SUBGATE_PLUGINSERVER_SUBGATE_START_CMD=", "KONG_PLUGINSERVER_SUBGATE_START_CMD=/usr/local/lib/subgate/subgate\nSUBGATE_PLUGINSERVER_SUBGATE_START_CMD=",
			[]string{"KONG_PLUGINSERVER_SUBGATE_START_CMD is set: Kong would start subgate itself"}},
		{"chart told another Kong version", "values.yaml", "  effectiveSemver: \"3.9.3\"\n", "  effectiveSemver: \"3.4.2\"\n",
			[]string{`image.effectiveSemver is "3.4.2", but`, "builds the image from kong:3.9.3"}},
		{"no sidecar", "values.yaml", "        - /usr/local/bin/subgate-pluginservers\n", "        - /usr/local/bin/sleep\n",
			[]string{"no container runs subgate-pluginservers: Kong would dial plugin-server sockets nobody serves"}},
		{"two volumes at the socket directory", "values.yaml", "  userDefinedVolumeMounts:\n    - name: subgate-sockets\n", "  userDefinedVolumeMounts:\n    - name: gw-kong-tmp\n",
			[]string{`the socket directory /var/run/subgate is volume "gw-kong-tmp" in Kong's container and "subgate-sockets" in the sidecar`}},
		{"sockets read-only in the sidecar", "values.yaml", "        - name: subgate-sockets\n          mountPath: /var/run/subgate\n", "        - name: subgate-sockets\n          mountPath: /var/run/subgate\n          readOnly: true\n",
			[]string{"the socket directory /var/run/subgate is mounted read-only"}},
		{"container without image", "values.yaml", "      image: subgate-kong:0.1.0\n", "",
			[]string{`init container "subgate-pluginservers": image: Required value`}},
		{"port out of range", "values.yaml", "          containerPort: 9546\n", "          containerPort: 95460\n",
			[]string{"port 95460: must be between 1 and 65535"}},
		{"object declared twice", "manifests/ingress.yaml", "  name: subgate-coaching\n", "  name: subgate-subscriptions\n",
			[]string{"Ingress subgate-subscriptions is also manifests/ingress.yaml:4: one would overwrite the other"}},
		{"configPatches", "manifests/plugins.yaml", "plugin: subgate\n", "plugin: subgate\nconfigPatches:\n  - path: /jwt/leeway_seconds\n    valueFrom:\n      secretKeyRef: {name: subgate-coaching, key: leeway}\n",
			[]string{"Using both configFrom and configPatches fields is not allowed.", "configPatches: not checked by this validator"}},
		{"two containers of one name", "values.yaml", "    - name: subgate-pluginservers\n      # The same image", "    - name: clear-stale-pid\n      # The same image",
			[]string{`init container "clear-stale-pid": name: Duplicate value`}},
		{"ConfigMap that nobody creates", "values.yaml", "  - configMapRef:\n      name: subgate-pluginservers\n", "  - configMapRef:\n      name: subgate-settings\n",
			[]string{`container "proxy": envFrom: ConfigMap subgate-settings is neither rendered`}},
		{"no liveness probe", "values.yaml", "      livenessProbe:\n        httpGet:\n          path: /live\n          port: sg-health\n        periodSeconds: 10\n        failureThreshold: 3\n", "",
			[]string{"livenessProbe: required (GET /live on the -health-addr port 9550)"}},
		{"readiness by exec", "values.yaml", "      readinessProbe:\n        httpGet:\n          path: /ready\n          port: sg-health\n", "      readinessProbe:\n        exec:\n          command: [\"true\"]\n",
			[]string{"readinessProbe: want httpGet /ready on port 9550"}},
		{"configFrom Secret missing", "manifests/plugins.yaml", "    name: subgate-coaching\n    key: config\n", "    name: subgate-coach\n    key: config\n",
			[]string{"KongPlugin subgate-coaching (manifests/plugins.yaml:94): configFrom: Secret subgate-coach: not in the manifests"}},
		{"image entrypoint starts the supervisor", "../Dockerfile", "", "ENTRYPOINT [\"/usr/local/bin/subgate-pluginservers\", \"--\", \"/docker-entrypoint.sh\"]\n",
			[]string{"the Helm chart's Kong container runs the image's entrypoint and cannot change it"}},

		// The Kong Ingress Controller's reading of the manifests.
		{"annotation typo", "manifests/ingress.yaml", "    konghq.com/plugins: subgate-coaching\n", "    konghq.com/plugin: subgate-coaching\n",
			[]string{"annotation konghq.com/plugin: not one the Kong Ingress Controller reads", "Ingress subgate-sg-coaching (manifests/ingress.yaml:44): no konghq.com/plugins annotation"}},
		{"plugin that does not exist", "manifests/ingress.yaml", "subgate-jwt, subgate-subscriptions-owner", "subgate-jwt, subgate-subscription-owner",
			[]string{"konghq.com/plugins: subgate-subscription-owner is neither a KongPlugin of namespace kong nor a KongClusterPlugin",
				"KongPlugin subgate-subscriptions-owner (manifests/plugins.yaml:26): no Ingress names it"}},
		{"KongClusterPlugin without ingress class", "manifests/plugins.yaml", "  annotations:\n    kubernetes.io/ingress.class: kong\n", "",
			[]string{"KongClusterPlugin subgate-jwt (manifests/plugins.yaml:12): annotation kubernetes.io/ingress.class: want \"kong\""}},
		{"Ingress of another class", "manifests/ingress.yaml", "    konghq.com/plugins: subgate-coaching\n    konghq.com/strip-path: \"false\"\nspec:\n  ingressClassName: kong\n", "    konghq.com/plugins: subgate-coaching\n    konghq.com/strip-path: \"false\"\nspec:\n  ingressClassName: nginx\n",
			[]string{`Ingress subgate-sg-coaching (manifests/ingress.yaml:44): ingress class "nginx": the controller serves "kong"`}},
		{"configFrom key missing", "manifests/plugins.yaml", "    name: subgate-coaching\n    key: config\n", "    name: subgate-coaching\n    key: conf\n",
			[]string{`KongPlugin subgate-coaching (manifests/plugins.yaml:94): configFrom: Secret subgate-coaching: no key "conf"`}},

		// Each plugin config against the plugins' schemas (spec/validate).
		{"KongPlugin config typo", "manifests/plugins.yaml", "  path_patterns:\n    - /subscriptions/{subscription_id}\n", "  path_pattern:\n    - /subscriptions/{subscription_id}\n",
			[]string{"KongPlugin subgate-subscriptions-owner (manifests/plugins.yaml:26) on Ingress subgate-subscriptions: route kong/subgate-subscriptions rules[0].paths[0] /subscriptions: plugin subscription-owner: config.path_pattern: unknown field"}},
		{"config in the configFrom Secret", "manifests/plugins.yaml", "      leeway_seconds: 30\n    ownership:", "      leeway_seconds: thirty\n    ownership:",
			[]string{"KongPlugin subgate-coaching (manifests/plugins.yaml:94) on Ingress subgate-sg-coaching: ", "plugin subgate: config.jwt.leeway_seconds: expected an integer"}},
		{"chain without jwt-claims", "manifests/ingress.yaml", "subgate-jwt, subgate-subscriptions-owner", "subgate-subscriptions-owner",
			[]string{"plugin subscription-owner: needs jwt-claims on the same route"}},
		{"DB-less config error, with its line", "values-dbless.yaml", "                  verified_header: X-Subscription-Verified\n", "                  verified_headers: X-Subscription-Verified\n",
			[]string{"values-dbless.yaml:39: route subscriptions: plugin subscription-owner: config.verified_headers: unknown field"}},
		{"DB-less vault variable nobody sets", "values-dbless.yaml", "                    password: \"{vault://env/SUBGATE_REDIS_PASSWORD}\"\n", "                    password: \"{vault://env/redis-pw}\"\n",
			[]string{`container "proxy": no env REDIS_PW, which dblessConfig.config references`}},
	} {
		t.Run(b.name, func(t *testing.T) {
			t.Parallel()
			c := fixture(t)
			edit(t, filepath.Join(c.Dir, b.file), b.old, b.new)
			r := Check(c)
			all := strings.Join(r.Problems, "\n")
			t.Logf("problems:\n%s", all)
			if len(r.Problems) == 0 {
				t.Fatalf("no problem found; notes:\n%s", strings.Join(r.Notes, "\n"))
			}
			for _, w := range b.want {
				if !strings.Contains(all, w) {
					t.Errorf("want %q among the problems:\n%s", w, all)
				}
			}
		})
	}
}
