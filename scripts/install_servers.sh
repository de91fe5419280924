# Sourced by scripts/test: install the servers the tests start, from Debian's packages, if missing.
install_servers() {
    local missing=()
    command -v redis-server >/dev/null || missing+=(redis-server)
    command -v etcd >/dev/null || missing+=(etcd-server)
    command -v etcdctl >/dev/null || missing+=(etcd-client)
    [ -e /usr/share/java/zookeeper.jar ] || missing+=(zookeeper)
    command -v mariadbd >/dev/null || missing+=(mariadb-server)
    command -v pg_config >/dev/null && [ -x "$(pg_config --bindir)/initdb" ] || missing+=(postgresql)
    command -v pgbouncer >/dev/null || missing+=(pgbouncer)
    ls /usr/lib/*/faketime/libfaketime.so.1 >/dev/null 2>&1 || missing+=(faketime)  # skewed clocks (rate limits)
    command -v tmux >/dev/null || missing+=(tmux)  # a real terminal for tenure inspect --watch
    [ ${#missing[@]} -eq 0 ] && return 0
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
        echo "installing ${missing[*]} ..." >&2
        apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
    else
        echo "error: the tests need ${missing[*]}; install them (apt-get install -y ${missing[*]})" >&2
        return 1
    fi
}
