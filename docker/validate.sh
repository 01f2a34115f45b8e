#!/usr/bin/env bash
# Checks the Docker demo without a Docker engine (none runs on the CI and
# development machines): the compose file is valid, images are pinned, the
# build context is lean, every file the Dockerfiles copy exists and their
# build commands work, host ports and secrets are set as a Kong operator
# would, and kong.yml, kong/plugins.env and the compose services agree.
set -euo pipefail
cd "$(dirname "$0")/.."
fail() { echo "docker/validate: $*" >&2; exit 1; }
# Something another change still has to deliver: reported, not a failure.
pending() { echo "docker/validate: pending: $*" >&2; }

command -v docker-compose >/dev/null || fail "docker-compose is not installed (apt-get install docker-compose)"
# docker-compose v1 is Python: its yaml and docker modules parse what it parses.
python3 -c 'import yaml, docker.utils.build' 2>/dev/null || fail "python3 with docker-compose's modules (yaml, docker) is needed"
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT

# Compose refuses to start without the Redis password; a marker value lets the
# checks below see every place the secret reaches.
marker="validate-secret-$RANDOM$RANDOM"
export SUBGATE_REDIS_PASSWORD=$marker
docker-compose -f docker/docker-compose.yml config -q || fail "docker/docker-compose.yml is invalid"
docker-compose -f docker/docker-compose.yml config >"$tmp/compose.yml"
services=$(docker-compose -f docker/docker-compose.yml config --services)

# Every COPY source (other than --from stages) exists in the build context.
for df in docker/Dockerfile docker/Dockerfile.services; do
  grep -E '^COPY ' "$df" | grep -v -- '--from=' | while read -r _ src _; do
    [ -e "$src" ] || fail "$df copies $src, which does not exist"
  done
done

# Base images pinned to an exact version: a floating tag is another image on
# each rebuild. Kong's the most: the plugin-server code was checked against it.
grep -hE '^FROM ' docker/Dockerfile docker/Dockerfile.services | awk '{print $2}' >"$tmp/images"
python3 - "$tmp/compose.yml" >>"$tmp/images" <<'EOF'
import sys, yaml
for s in yaml.safe_load(open(sys.argv[1]))["services"].values():
    if "build" not in s:
        print(s["image"])
EOF
while read -r img; do
  [[ $img =~ @sha256:[0-9a-f]{64}$ || $img =~ :v?[0-9]+\.[0-9]+\.[0-9]+([-.][A-Za-z0-9.]+)?$ ]] ||
    fail "image $img is not pinned to an exact version (name:X.Y.Z or name:vX.Y.Z)"
done <"$tmp/images"
grep -qE '^FROM kong:3\.[0-9]+\.[0-9]+$' docker/Dockerfile || fail "docker/Dockerfile must build FROM an exact kong:3.X.Y"

# The build context is the repository root: .dockerignore keeps out what the
# images never use, and lets in everything the Dockerfiles copy.
[ -f .dockerignore ] || fail "no .dockerignore at the repository root (the build context)"
grep -hE '^COPY ' docker/Dockerfile docker/Dockerfile.services | grep -v -- '--from=' | awk '{for (i=2; i<NF; i++) print $i}' >"$tmp/copied"
python3 - "$tmp/copied" <<'EOF' || fail ".dockerignore does not fit the build (see above)"
import subprocess, sys
from docker.utils.build import PatternMatcher
pats = [l.strip() for l in open(".dockerignore") if l.strip() and not l.lstrip().startswith("#")]
m = PatternMatcher(pats)
bad = [p for p in ["bin/jwt-claims", ".git/HEAD", "spec/e2e_test.go", "pkg/x/testdata/fuzz/FuzzX/1",
                   "jwt-claims", "plugins/jwt-claims/jwt-claims.test", "cpu.prof", "c.out"] if not m.matches(p)]
for p in bad:
    print(f"docker/validate: .dockerignore lets {p} into the build context", file=sys.stderr)
tracked = subprocess.run(["git", "ls-files"], capture_output=True, text=True, check=True).stdout.split()
for src in open(sys.argv[1]).read().split():
    src = src.rstrip("/")
    for f in [f for f in tracked if f == src or f.startswith(src + "/")]:
        if m.matches(f) and f not in bad and not f.endswith("_test.go") and "/testdata/" not in f:
            print(f"docker/validate: .dockerignore excludes {f}, which the Dockerfiles copy", file=sys.stderr)
            bad.append(f)
sys.exit(1 if bad else 0)
EOF

# The build stages' commands, run with the local Go toolchain.
for p in $(ls plugins); do CGO_ENABLED=0 go build -trimpath -o "$tmp/$p" "./plugins/$p" || fail "plugin $p does not build"; done
for p in identity payment echo ownership-import subgate-pluginservers; do CGO_ENABLED=0 go build -trimpath -o "$tmp/$p" "./docker/$p" || fail "program $p does not build"; done

# kong/plugins.env: each plugin server exists, is queried by Kong and
# started by subgate-pluginservers (never by Kong: its Admin API's GET /
# answers 500 in Kong 3.9 when it does).
# An env file takes values verbatim (spaces included), so it is read, not sourced.
while IFS='=' read -r k v; do export "$k=$v"; done < <(grep -E '^[A-Z_]+=' kong/plugins.env)
# compose's environment would silently win over its env_file.
for k in $(grep -oE '^[A-Z_]+=' kong/plugins.env | tr -d =); do
  grep -qE "^[[:space:]]+$k:" docker/docker-compose.yml && fail "docker-compose.yml overrides $k, which belongs in kong/plugins.env"
done
grep -rn --exclude=validate.sh 'SUBGATE_METRICS_' docker kong && fail "SUBGATE_METRICS_* is set above: nginx clears it before a plugin server starts; use -metrics-addr in the start command"
metrics_ports=" "
: >"$tmp/metrics-targets" # "name port host" per plugin server, for the Prometheus check
for name in ${KONG_PLUGINSERVER_NAMES//,/ }; do
  [ -d "plugins/$name" ] || fail "plugins.env names $name, but plugins/$name does not exist"
  var=$(echo "$name" | tr 'a-z-' 'A-Z_')
  for v in "KONG_PLUGINSERVER_${var}_SOCKET" "KONG_PLUGINSERVER_${var}_QUERY_CMD" "SUBGATE_PLUGINSERVER_${var}_START_CMD"; do
    [ -n "${!v:-}" ] || fail "$v is not set"
  done
  v="KONG_PLUGINSERVER_${var}_START_CMD"; [ -z "${!v:-}" ] || fail "$v is set: Kong would start $name itself (subgate-pluginservers starts it)"
  v="KONG_PLUGINSERVER_${var}_SOCKET"; [ "${!v}" = "/var/run/subgate/$name.socket" ] || fail "$v is ${!v}, want /var/run/subgate/$name.socket (the image's socket directory)"
  v="KONG_PLUGINSERVER_${var}_QUERY_CMD"; [ "${!v}" = "/usr/local/lib/subgate/$name -dump" ] || fail "$v is ${!v}, want /usr/local/lib/subgate/$name -dump (where the image puts it)"
  [[ ",$KONG_PLUGINS," == *",$name,"* ]] || fail "$name is not in KONG_PLUGINS"
  # What Kong runs as the query command must print the plugin's info.
  "$tmp/$name" -dump | grep -q "\"Name\":\"$name\"" || fail "$name -dump does not describe $name"
  # Server-wide settings are start-command flags; one metrics port per server.
  start="SUBGATE_PLUGINSERVER_${var}_START_CMD"; start=${!start}
  [[ $start == "/usr/local/lib/subgate/$name -kong-prefix /var/run/subgate "* ]] ||
    fail "$name's start command does not run /usr/local/lib/subgate/$name with -kong-prefix /var/run/subgate (its socket's directory)"
  [[ $start =~ (^|[[:space:]])-metrics-addr[[:space:]]+([^[:space:]]+):(954[2-6])($|[[:space:]]) ]] ||
    fail "$name's start command has no -metrics-addr HOST:PORT with PORT in 9542..9546"
  port=${BASH_REMATCH[3]}
  echo "$name $port ${BASH_REMATCH[2]}" >>"$tmp/metrics-targets"
  [[ $metrics_ports == *" $port "* ]] && fail "$name's metrics port $port is taken by another plugin server"
  metrics_ports+="$port "
  # Every flag of the start command is one the binary defines (else it exits at once).
  "$tmp/$name" -h 2>"$tmp/usage" || true
  for flag in $(grep -oE '(^|[[:space:]])-[a-z][a-z0-9-]*' <<<"$start" | tr -d ' \t'); do
    grep -qE "^  $flag( |$)" "$tmp/usage" && continue
    [ "$flag" = -metrics-addr ] && { pending "$name does not define $flag yet: Kong could not start it"; continue; }
    fail "$name's start command passes $flag, which $name does not define"
  done
done
grep -qE '^COPY --from=build /out/lib/ /usr/local/lib/subgate/$' docker/Dockerfile || fail "docker/Dockerfile does not put the plugins in /usr/local/lib/subgate"
grep -qE '^(ENTRYPOINT|CMD) ' docker/Dockerfile && fail "docker/Dockerfile sets ENTRYPOINT or CMD: keep Kong's (Kong's Helm chart runs the image's entrypoint; the plugin servers run in a sidecar there)"
python3 - "$tmp/compose.yml" <<'EOF' || fail "the compose kong service does not start subgate-pluginservers -- /docker-entrypoint.sh kong docker-start"
import sys, yaml
k = yaml.safe_load(open(sys.argv[1]))["services"]["kong"]
ep, cmd = k.get("entrypoint") or [], k.get("command") or []
ok = ep[:1] == ["/usr/local/bin/subgate-pluginservers"] and ep[-2:] == ["--", "/docker-entrypoint.sh"] and cmd == ["kong", "docker-start"]
sys.exit(0 if ok else 1)
EOF
usage=$("$tmp/subgate-pluginservers" -h 2>&1 || true); grep -q -- "-health-addr" <<<"$usage" || fail "subgate-pluginservers has no -health-addr"
for name in $(ls plugins); do
  [[ ",$KONG_PLUGINSERVER_NAMES," == *",$name,"* ]] || fail "plugin $name is not in KONG_PLUGINSERVER_NAMES"
  [[ ",$KONG_PLUGINS," == *",$name,"* ]] || fail "plugin $name is not in KONG_PLUGINS"
done

# Prometheus scrapes every plugin server's metrics port in the kong container,
# one job per plugin, and nothing else; its UI is on the host's loopback only.
python3 - "$tmp/compose.yml" "$tmp/metrics-targets" <<'EOF' || fail "Prometheus does not fit kong/plugins.env (see above)"
import sys, yaml
svcs = yaml.safe_load(open(sys.argv[1]))["services"]
want = {}
errors = []
for line in open(sys.argv[2]):
    name, port, host = line.split()
    want[name] = [f"kong:{port}"]
    if host in ("127.0.0.1", "localhost", "[::1]"):
        errors.append(f"{name} serves metrics on {host}:{port}: Prometheus, in another container, cannot reach it")
p = svcs.get("prometheus")
if p is None:
    errors.append("no prometheus service in docker/docker-compose.yml")
else:
    def target(v):
        return v.get("target") if isinstance(v, dict) else str(v).split(":")[1]
    if not any(target(v) == "/etc/prometheus/prometheus.yml" for v in p.get("volumes", [])):
        errors.append("the prometheus service does not mount docker/prometheus/prometheus.yml at /etc/prometheus/prometheus.yml")
    for port in p.get("ports", []):
        ip = port.get("host_ip", "") if isinstance(port, dict) else (str(port).split(":")[0] if str(port).count(":") == 2 else "")
        if ip not in ("127.0.0.1", "::1"):
            errors.append(f"prometheus publishes {port} beyond the host's loopback")
cfg = yaml.safe_load(open("docker/prometheus/prometheus.yml"))
got = {}
for job in cfg.get("scrape_configs", []):
    got[job["job_name"]] = [t for sc in job.get("static_configs", []) for t in sc.get("targets", [])]
for name, targets in want.items():
    if got.get(name) != targets:
        errors.append(f"prometheus.yml job {name} scrapes {got.get(name)}, want {targets} (kong/plugins.env)")
for name in sorted(got.keys() - want.keys()):
    errors.append(f"prometheus.yml job {name} is not a plugin server in kong/plugins.env")
for e in errors:
    print("docker/validate: " + e, file=sys.stderr)
sys.exit(1 if errors else 0)
EOF

# kong.yml: every plugin it enables is served, every host it names is a service.
for name in $(grep -E '^\s*- name: ' kong/kong.yml | awk '{print $3}' | sort -u); do
  case " $(ls plugins | tr '\n' ' ') " in *" $name "*)
    [[ ",$KONG_PLUGINSERVER_NAMES," == *",$name,"* ]] || fail "kong.yml enables $name, which plugins.env does not serve";;
  esac
done
for host in $(grep -oE '(http://)?[a-z0-9-]+:[0-9]+' kong/kong.yml | sed 's|http://||; s|:.*||' | sort -u); do
  grep -qx "$host" <<<"$services" || fail "kong.yml names host $host, which is not a compose service"
done

# Host ports, and secrets as Kong operators pass them (see the python below).
python3 - "$tmp/compose.yml" "$marker" <<'EOF' || fail "ports or secrets are wrong (see above)"
import os, re, sys, yaml
compose, marker = yaml.safe_load(open(sys.argv[1])), sys.argv[2]
svcs = compose["services"]
errors = []
def err(msg): errors.append(msg)

# Ports: Kong's proxy on 8000 and Admin API on 8001; no demo service on
# Kong's ports (8000 proxy, 8001 admin, 8002 Kong Manager); none twice.
def published(s):
    for p in s.get("ports", []):
        if isinstance(p, dict):
            yield str(p.get("host_ip", "")), int(p["published"]), int(p["target"])
        else:
            parts = str(p).split("/")[0].split(":")
            yield (parts[0] if len(parts) == 3 else ""), int(parts[-2]), int(parts[-1])
seen = {}
for name, s in svcs.items():
    for ip, host, target in published(s):
        if host in seen:  # 0.0.0.0:P and 127.0.0.1:P cannot both bind
            err(f"host port {host} is published by {seen[host]} and {name}")
        seen[host] = name
        # The demo's services (its identity issues tokens to anyone) stay on
        # the host's loopback, as the README says.
        if ip not in ("127.0.0.1", "::1", "[::1]"):
            err(f"{name} publishes host port {host} on every interface ({ip or '0.0.0.0'}); bind it to 127.0.0.1")
        if name != "kong" and host in (8000, 8001, 8002):
            err(f"{name} publishes host port {host}, one of Kong's (8000 proxy, 8001 Admin API, 8002 Kong Manager)")
kenv = {k: str(v) for k, v in svcs["kong"].get("environment", {}).items()}
kports = {host: target for _, host, target in published(svcs["kong"])}
for host, var in ((8000, "KONG_PROXY_LISTEN"), (8001, "KONG_ADMIN_LISTEN")):
    listen = kenv.get(var, "")
    m = re.match(r"([0-9.]+|\[[0-9a-f:]+\]):(\d+)", listen.split(",")[0].strip())
    if host not in kports:
        err(f"kong does not publish host port {host}")
    elif not m or int(m.group(2)) != kports[host]:
        err(f"kong publishes {host} to container port {kports[host]}, but {var} is {listen!r}")
    elif m.group(1) in ("127.0.0.1", "[::1]"):
        err(f"{var} is {listen!r}: on the container's loopback, the published port reaches nothing")

# Secrets. A plugin server inherits an nginx worker's environment: TZ and the
# names in nginx_main_env only. None of those may carry a secret.
# (kong's rendered environment includes kong/plugins.env, its env_file.)
main_env = set()
main_env.update(n.strip() for n in kenv.get("KONG_NGINX_MAIN_ENV", "").replace(";", ",").split(",") if n.strip())
if os.path.exists("kong/kong.conf"):
    for line in open("kong/kong.conf"):
        m = re.match(r"\s*nginx_main_env\s*=\s*(.*)", line)
        if m:
            main_env.update(n.strip() for n in m.group(1).replace(";", ",").split(",") if n.strip())
secretish = re.compile(r"(PASS(WORD)?|SECRET|TOKEN|AUTH|KEY|CREDENTIALS?)$", re.I)
for n in main_env:
    if secretish.search(n) or marker in kenv.get(n, ""):
        err(f"nginx_main_env passes {n} to every plugin server's environment; pass secrets by vault reference or file")
for k, v in kenv.items():
    if marker in v and k != "SUBGATE_REDIS_PASSWORD":
        err(f"kong's environment holds the Redis password in {k}; only SUBGATE_REDIS_PASSWORD, the env vault's source, may")
# No secret written in the compose file: every secret-looking variable of
# every service comes from SUBGATE_REDIS_PASSWORD.
for name, s in svcs.items():
    for k, v in (s.get("environment") or {}).items():
        if secretish.search(k) and str(v) != marker:
            err(f"{name}: {k} is not taken from SUBGATE_REDIS_PASSWORD (a secret written in the compose file?)")
# Redis and Sentinels require the password, expanded from the environment.
sentinel_tpl = open("docker/redis/sentinel.conf").read()
if re.search(r"^\s*(requirepass|masterauth|sentinel\s+auth-pass)\b", sentinel_tpl, re.M):
    err("docker/redis/sentinel.conf carries a password setting; compose appends it from the environment")
for name, s in svcs.items():
    if not str(s.get("image", "")).startswith("redis:"):
        continue
    cmd = " ".join(s.get("command") or [])
    need = ["requirepass", "sentinel auth-pass subgate"] if "--sentinel" in cmd else ["--requirepass", "--masterauth"]
    for setting in need:
        if not re.search(re.escape(setting) + r' \\?"?\$+REDISCLI_AUTH', cmd):
            err(f"{name}: its command does not set {setting} from $REDISCLI_AUTH")
    if str((s.get("environment") or {}).get("REDISCLI_AUTH")) != marker:
        err(f"{name}: REDISCLI_AUTH is not SUBGATE_REDIS_PASSWORD")

# kong.yml: Redis passwords reach the plugins as vault references whose
# source Kong has (or as files); never literally, never by environment name.
def walk(node, path=""):
    if isinstance(node, dict):
        for k, v in node.items():
            yield from walk(v, f"{path}.{k}")
            yield path, k, v
    elif isinstance(node, list):
        for i, v in enumerate(node):
            yield from walk(v, f"{path}[{i}]")
kong_yml = yaml.safe_load(open("kong/kong.yml"))
redis_blocks, with_password = 0, 0
for path, k, v in walk(kong_yml):
    if k.endswith("password_env"):
        err(f"kong.yml {path}.{k}: the plugin server's environment is cleared by nginx; use a vault reference or password_file")
    elif k in ("password", "sentinel_password"):
        if not (isinstance(v, str) and re.fullmatch(r"\{vault://[^}]+\}", v)):
            err(f"kong.yml {path}.{k} is not a {{vault://...}} reference (a password in plain text?)")
        if k == "password":
            with_password += 1
    if k == "redis" and isinstance(v, dict):
        redis_blocks += 1
        with_password += 1 if "password_file" in v else 0
for ref in set(re.findall(r"\{vault://env/([^}/]+)\}", open("kong/kong.yml").read())):
    var = re.sub(r"-", "_", ref).upper()
    if var not in kenv:
        err(f"kong.yml references {{vault://env/{ref}}}, but kong's environment has no {var}")
    if var in main_env:
        err(f"{var} is in nginx_main_env: the env vault needs no such thing, and the plugin servers would see it")
if redis_blocks and with_password < redis_blocks:
    print("docker/validate: pending: kong.yml's redis settings carry no password "
          "(redis.password: \"{vault://env/SUBGATE_REDIS_PASSWORD}\"); the plugins cannot authenticate to the demo Redis",
          file=sys.stderr)

for e in errors:
    print("docker/validate: " + e, file=sys.stderr)
sys.exit(1 if errors else 0)
EOF
echo "docker/validate: compose file valid; images pinned; .dockerignore fits; Dockerfile sources present; images' Go builds pass; ports, secrets, start commands, kong.yml, plugins.env, Prometheus targets and compose agree"
