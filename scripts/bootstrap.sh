# Sourced by scripts/demo and scripts/test: make .venv with tenure and the given extras installed.
# Usage: bootstrap EXTRAS   (e.g. "dev" or "" for none)
bootstrap() {
    local extras="$1" root venv
    root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
    venv="$root/.venv"
    if [ ! -x "$venv/bin/python" ]; then
        if ! python3 -m venv "$venv" 2>/dev/null; then
            # Debian's python3 ships venv separately.
            if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
                apt-get update -qq && apt-get install -y -qq python3-venv >/dev/null
                python3 -m venv "$venv"
            else
                echo "error: python3 -m venv failed; install python3-venv" >&2
                return 1
            fi
        fi
        "$venv/bin/python" -m pip install -q --upgrade pip
    fi
    local target="$root"
    [ -n "$extras" ] && target="$root[$extras]"
    # Editable install: fast when already up to date, and tests see the working tree.
    "$venv/bin/python" -m pip install -q --disable-pip-version-check -e "$target"
    export PATH="$venv/bin:$PATH"
}
