#!/usr/bin/env bash
# Checks the Docker demo without a Docker engine (none runs on the CI and
# development machines): the compose file is valid, every file the
# Dockerfiles copy exists, their build commands work, and kong.yml,
# kong/plugins.env and the compose services agree with each other.
set -euo pipefail
cd "$(dirname "$0")/.."
fail() { echo "docker/validate: $*" >&2; exit 1; }

command -v docker-compose >/dev/null || fail "docker-compose is not installed (apt-get install docker-compose)"
docker-compose -f docker/docker-compose.yml config -q || fail "docker/docker-compose.yml is invalid"
services=$(docker-compose -f docker/docker-compose.yml config --services)

# Every COPY source (other than --from stages) exists in the build context.
for df in docker/Dockerfile docker/Dockerfile.services; do
  grep -E '^COPY ' "$df" | grep -v -- '--from=' | while read -r _ src _; do
    [ -e "$src" ] || fail "$df copies $src, which does not exist"
  done
done

# The build stages' commands, run with the local Go toolchain.
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
for p in $(ls plugins); do CGO_ENABLED=0 go build -trimpath -o "$tmp/$p" "./plugins/$p" || fail "plugin $p does not build"; done
for p in identity payment echo ownership-import; do CGO_ENABLED=0 go build -trimpath -o "$tmp/$p" "./docker/$p" || fail "demo program $p does not build"; done

# kong/plugins.env: each plugin server exists, is queried and started.
# An env file takes values verbatim (spaces included), so it is read, not sourced.
while IFS='=' read -r k v; do export "$k=$v"; done < <(grep -E '^[A-Z_]+=' kong/plugins.env)
for name in ${KONG_PLUGINSERVER_NAMES//,/ }; do
  [ -d "plugins/$name" ] || fail "plugins.env names $name, but plugins/$name does not exist"
  var=$(echo "$name" | tr 'a-z-' 'A-Z_')
  for kind in START_CMD QUERY_CMD; do
    v="KONG_PLUGINSERVER_${var}_${kind}"; [ -n "${!v:-}" ] || fail "$v is not set"
  done
  [[ ",$KONG_PLUGINS," == *",$name,"* ]] || fail "$name is not in KONG_PLUGINS"
  # What Kong runs as the query command must print the plugin's info.
  "$tmp/$name" -dump | grep -q "\"Name\":\"$name\"" || fail "$name -dump does not describe $name"
done

# kong.yml: every plugin it enables is served, every host it names is a service.
for name in $(grep -E '^\s*- name: ' kong/kong.yml | awk '{print $3}' | sort -u); do
  case " $(ls plugins | tr '\n' ' ') " in *" $name "*)
    [[ ",$KONG_PLUGINSERVER_NAMES," == *",$name,"* ]] || fail "kong.yml enables $name, which plugins.env does not serve";;
  esac
done
for host in $(grep -oE '(http://)?[a-z0-9-]+:[0-9]+' kong/kong.yml | sed 's|http://||; s|:.*||' | sort -u); do
  grep -qx "$host" <<<"$services" || fail "kong.yml names host $host, which is not a compose service"
done
echo "docker/validate: compose file valid; Dockerfile sources present; images' Go builds pass; kong.yml, plugins.env and compose agree"
