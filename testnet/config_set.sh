# Sourced by testnet/up.sh and testnet/wan.sh.
#
# config_set HOME KEY=VALUE…: set each KEY's line (`KEY = …`) in HOME/config.toml to VALUE (as
# TOML: quote strings yourself). A KEY with no such line is an error, so a misspelt setting never
# goes unnoticed. Keys are unique across config.toml's sections (e.g. timeout_base_ms,
# retain_heights).
config_set() {
  local home="$1" kv
  shift
  for kv in "$@"; do
    [[ "$kv" =~ ^[a-z_]+=[0-9a-z_.\"]+$ ]] || { echo "config_set: KEY=VALUE, got '$kv'" >&2; return 2; }
    grep -q "^${kv%%=*} = " "$home/config.toml" \
      || { echo "config_set: no line '${kv%%=*} = …' in $home/config.toml" >&2; return 2; }
    sed -i "s/^${kv%%=*} = .*/${kv%%=*} = ${kv#*=}/" "$home/config.toml"
  done
}
