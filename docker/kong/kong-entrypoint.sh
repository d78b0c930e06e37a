#!/bin/sh
# The kong service's entrypoint: renders docker/kong/kong.yml (mounted at
# $KONG_CONFIG_TEMPLATE) into $KONG_DECLARATIVE_CONFIG with the keys filled in, then runs its
# arguments (the image's `/docker-entrypoint.sh kong docker-start`).
#
# Both kinds of Supabase API keys are accepted as `apikey`: the legacy JWTs
# (SUPABASE_ANON_KEY, SUPABASE_SERVICE_KEY) and the opaque keys (SUPABASE_PUBLISHABLE_KEY,
# SUPABASE_SECRET_KEY). An opaque key is not a JWT, so the request-transformer writes the
# `Authorization` that PostgREST and Storage see, as self-hosted Supabase's gateway does
# (supabase/supabase PR #43554, docker/volumes/api/kong-entrypoint.sh `LUA_AUTH_EXPR`):
#   1. an Authorization that is not `Bearer sb_...` (a user's JWT, a legacy key): unchanged
#   2. apikey = the secret key: `Bearer <the service_role JWT>`
#   3. apikey = the publishable key: `Bearer <the anon JWT>`
#   4. otherwise `Bearer <apikey>` (a legacy JWT); nothing without an apikey
# Self-hosted Supabase swaps in ES256 JWTs (SERVICE_ROLE_KEY_ASYMMETRIC, ANON_KEY_ASYMMETRIC)
# that its services check against JWT_JWKS. PostgREST and Storage here check HS256 JWTs with
# JWT_SECRET, so this swaps in the legacy JWTs, as `supabase start` does (supabase/cli
# internal/start/start.go, the `BearerToken` of its kong.yml template).
set -eu

template=${KONG_CONFIG_TEMPLATE:-/home/kong/temp.yml}

# Supabase's public demo values (docker-compose.yml's defaults): the opaque keys are the ones
# `supabase start` hard-codes (supabase/cli pkg/config/apikeys.go); the JWTs are named by
# their signatures. The demo opaque keys are swapped for the demo JWTs only: with your own
# JWTs, they would open your stack to anyone who has read this file.
DEMO_PUBLISHABLE_KEY=sb_publishable_ACJWlzQHlZjBrEguHvfOxg_3BJgxAaH
DEMO_SECRET_KEY=sb_secret_N7UND0UgjKTVK-Uodkm0Hg_xSvEMPvz
DEMO_ANON_SIGNATURE=SsmxWJp79nAXUPD44aD70Ygwhsd0vWppbHpkPRE2_a0
DEMO_SERVICE_SIGNATURE=Ko8Mfw0QCqUc7FECg_M2r7m46lMGbb_Guv7AXU2ElgY

refuse() {
    echo "kong-entrypoint: $*" >&2
    exit 1
}

# the keys end up inside Lua and YAML string literals: only base64url characters and dots
for name in SUPABASE_ANON_KEY SUPABASE_SERVICE_KEY SUPABASE_PUBLISHABLE_KEY SUPABASE_SECRET_KEY; do
    eval "value=\${$name:-}"
    case $value in
        *[!A-Za-z0-9._-]*) refuse "$name has a character other than A-Z, a-z, 0-9, '.', '_', '-'" ;;
    esac
done
[ -n "${SUPABASE_ANON_KEY:-}" ] || refuse "SUPABASE_ANON_KEY (ANON_KEY) is not set"
[ -n "${SUPABASE_SERVICE_KEY:-}" ] || refuse "SUPABASE_SERVICE_KEY (SERVICE_ROLE_KEY) is not set"
publishable=${SUPABASE_PUBLISHABLE_KEY:-}
secret=${SUPABASE_SECRET_KEY:-}
export SUPABASE_PUBLISHABLE_KEY="$publishable" SUPABASE_SECRET_KEY="$secret"

pass_through="(headers.authorization ~= nil and headers.authorization:sub(1, 10) ~= 'Bearer sb_' and headers.authorization)"
legacy="(headers.apikey and 'Bearer ' .. headers.apikey)"
if [ -n "$secret$publishable" ]; then
    [ -n "$secret" ] && [ -n "$publishable" ] ||
        refuse "set SUPABASE_SECRET_KEY and SUPABASE_PUBLISHABLE_KEY together (or neither)"
    case $secret in sb_secret_?*) ;; *) refuse "SUPABASE_SECRET_KEY does not start with sb_secret_" ;; esac
    case $publishable in
        sb_publishable_?*) ;;
        *) refuse "SUPABASE_PUBLISHABLE_KEY does not start with sb_publishable_" ;;
    esac
    if [ "$secret" = "$DEMO_SECRET_KEY" ] || [ "$publishable" = "$DEMO_PUBLISHABLE_KEY" ]; then
        if [ "${SUPABASE_SERVICE_KEY##*.}" != "$DEMO_SERVICE_SIGNATURE" ] ||
            [ "${SUPABASE_ANON_KEY##*.}" != "$DEMO_ANON_SIGNATURE" ]; then
            refuse "SUPABASE_SECRET_KEY / SUPABASE_PUBLISHABLE_KEY are Supabase's public demo" \
                "keys but ANON_KEY / SERVICE_ROLE_KEY are your own: set your own" \
                "SUPABASE_SECRET_KEY and SUPABASE_PUBLISHABLE_KEY too (see .env.example)"
        fi
    fi
    to_service_role="(headers.apikey == '$secret' and 'Bearer $SUPABASE_SERVICE_KEY')"
    to_anon="(headers.apikey == '$publishable' and 'Bearer $SUPABASE_ANON_KEY')"
    LUA_AUTH_EXPR="\$($pass_through or $to_service_role or $to_anon or $legacy)"
else
    LUA_AUTH_EXPR="\$($pass_through or $legacy)"
fi
export LUA_AUTH_EXPR

# $NAME -> the variable's value (awk, not `eval echo`, so that the YAML's quotes survive); a
# name that is not set stops it (left as it is, `$NAME` would be a key anyone can send). A
# `- key:` left empty (no opaque keys) is dropped, as upstream does.
awk '{
  out = ""
  rest = $0
  while (match(rest, /\$[A-Za-z_][A-Za-z_0-9]*/)) {
    name = substr(rest, RSTART + 1, RLENGTH - 1)
    if (!(name in ENVIRON)) {
      print "kong-entrypoint: " FILENAME " names $" name ", which is not set" > "/dev/stderr"
      failed = 1
    }
    out = out substr(rest, 1, RSTART - 1) ENVIRON[name]
    rest = substr(rest, RSTART + RLENGTH)
  }
  out = out rest
  if (out !~ /^[ \t]*- key:[ \t]*$/) print out
}
END { exit failed }' "$template" >"$KONG_DECLARATIVE_CONFIG"

[ $# -gt 0 ] || set -- /docker-entrypoint.sh kong docker-start
exec "$@"
