# Shared steps of the two ways to install the station, sourced (POSIX sh) by
#   - the Debian package's maintainer scripts, from /usr/lib/polres-station/station-setup.sh;
#   - systemd/install.sh (a source checkout), from this directory.
# Each function does one step on the running system. PS_ROOT (default empty) puts the files
# under a scratch root instead, and then skips what needs the real system (users, systemctl,
# ownership), saying so. Functions return non-zero on failure; callers run with `set -e`.

PS_NAME=polres-station
PS_ROOT=${PS_ROOT:-}
PS_OPT=/opt/$PS_NAME
PS_VENV=$PS_OPT/venv
PS_ETC=/etc/$PS_NAME
PS_CONF=$PS_ETC/station.yaml
PS_STATE=/var/lib/$PS_NAME
PS_UNIT=$PS_NAME.service
PS_TIMESYNCD=/etc/systemd/timesyncd.conf.d/$PS_NAME.conf
PS_BOOT_LINES=$PS_ETC/boot-config.txt
PS_AGAIN=${PS_AGAIN:-"sudo dpkg-reconfigure $PS_NAME"}  # what enables the service once ready

ps_note() { echo "    $*"; }
ps_warn() { echo "$PS_NAME: $*" >&2; }

# With PS_ROOT: only say what would run.
ps_system() {
    if [ -n "$PS_ROOT" ]; then ps_note "skipped (--root): $*"; else "$@"; fi
}

# True when systemd runs this machine (not in a chroot, an image build or a container).
ps_systemd_running() { [ -z "$PS_ROOT" ] && [ -d /run/systemd/system ]; }

# The group gpio (created when missing: plain Debian has none) and the system user, member of it.
ps_ensure_user() {
    if [ -n "$PS_ROOT" ]; then
        ps_note "skipped (--root): groupadd --system gpio (if missing); useradd --system $PS_NAME"
        return 0
    fi
    if ! getent group gpio >/dev/null; then
        groupadd --system gpio
        ps_note "created group gpio"
    fi
    if ! getent passwd "$PS_NAME" >/dev/null; then
        useradd --system --user-group --groups gpio --home-dir "$PS_STATE" --no-create-home \
            --shell /usr/sbin/nologin --comment "Polres 110 station controller" "$PS_NAME"
        ps_note "created user $PS_NAME (groups $PS_NAME, gpio)"
    elif ! id -nG "$PS_NAME" | tr ' ' '\n' | grep -qx gpio; then
        usermod -a -G gpio "$PS_NAME"
        ps_note "added user $PS_NAME to group gpio"
    fi
}

# Configuration readable by the service only, state directory owned by it.
ps_ensure_dirs() {
    install -d -m 0750 "$PS_ROOT$PS_ETC"
    ps_system chown root:"$PS_NAME" "$PS_ETC"
    if [ -e "$PS_ROOT$PS_CONF" ]; then
        chmod 0640 "$PS_ROOT$PS_CONF"
        ps_system chown root:"$PS_NAME" "$PS_CONF"
    fi
    install -d -m 0750 "$PS_ROOT$PS_STATE"
    ps_system chown "$PS_NAME:$PS_NAME" "$PS_STATE"
}

# cp311-aarch64: the wheelhouse lock for this machine. The architecture comes from dpkg, not
# uname: a 32-bit Raspberry Pi OS often runs a 64-bit kernel (uname -m says aarch64).
ps_target() {
    python=$1
    case "$(dpkg --print-architecture 2>/dev/null || uname -m)" in
        arm64|aarch64) machine=aarch64 ;;
        armhf|armv7l|armv6l) machine=armv7l ;;
        amd64|x86_64) machine=x86_64 ;;
        *) machine=unknown ;;
    esac
    echo "$("$python" -c 'import sys; print("cp%d%d" % sys.version_info[:2])')-$machine"
}

# ps_build_venv PYTHON LABEL PIP-INSTALL-ARGS...
# A fresh venv (--system-site-packages: the GPIO libraries and anything the wheelhouse lacks come
# from the operating system) at /opt/polres-station/venv-LABEL, then /opt/polres-station/venv
# switched to it in one rename. A running service keeps its own venv until it restarts.
ps_build_venv() {
    python=$1 label=$2
    shift 2
    dir=$PS_OPT/venv-$label
    install -d -m 0755 "$PS_ROOT$PS_OPT"
    # The same label again (dpkg-reconfigure, a reinstall): the running service uses that venv;
    # keep it when it is complete rather than delete it under the service.
    if [ "$(readlink "$PS_ROOT$PS_VENV" 2>/dev/null)" = "venv-$label" ] \
        && ps_check_requirements "$PS_ROOT$dir/bin/python" 2>/dev/null; then
        ps_note "application in $PS_VENV -> venv-$label: kept" \
            "($("$PS_ROOT$PS_VENV/bin/$PS_NAME" --version))"
        return 0
    fi
    rm -rf "$PS_ROOT$dir"
    "$python" -m venv --system-site-packages "$PS_ROOT$dir"
    "$PS_ROOT$dir/bin/python" -m pip install --quiet --disable-pip-version-check \
        --no-warn-script-location "$@"
    ps_check_requirements "$PS_ROOT$dir/bin/python"
    if [ -d "$PS_ROOT$PS_VENV" ] && [ ! -L "$PS_ROOT$PS_VENV" ]; then
        rm -rf "$PS_ROOT$PS_VENV"  # a venv from an older installer, not a link
    fi
    ln -sfn "venv-$label" "$PS_ROOT$PS_VENV.new"
    mv -Tf "$PS_ROOT$PS_VENV.new" "$PS_ROOT$PS_VENV"
    ps_note "application in $PS_VENV -> venv-$label: $("$PS_ROOT$PS_VENV/bin/$PS_NAME" --version)"
}

# Every requirement of polres-station met in the venv, transitively, including those the
# operating system provides (python3-yaml). Not `pip check`: that also judges every unrelated
# python3-* package of the system, which a venv with system site-packages sees.
ps_check_requirements() {
    "$1" - <<'EOF'
import importlib.metadata as md
import sys
from pip._vendor.packaging.requirements import Requirement

unmet, todo = [], ["polres-station"]
for name in todo:  # grows while walked: each distribution once
    for text in md.requires(name) or []:
        req = Requirement(text)
        if req.marker and not req.marker.evaluate({"extra": ""}):
            continue
        try:
            version = md.version(req.name)
        except md.PackageNotFoundError:
            unmet.append(f"{req}: not installed")
            continue
        if not req.specifier.contains(version, prereleases=True):
            unmet.append(f"{req}: found {version}")
        if req.name not in todo:
            todo.append(req.name)
if unmet:
    sys.exit("polres-station: requirements not met in the venv:\n  " + "\n  ".join(unmet))
EOF
}

# Remove every venv-* but the current one (after the service restarted on it).
ps_prune_venvs() {
    current=$(readlink "$PS_ROOT$PS_VENV" 2>/dev/null || true)
    for old in "$PS_ROOT$PS_OPT"/venv-*; do
        [ -e "$old" ] || continue
        [ "$(basename "$old")" = "$current" ] || rm -rf "$old"
    done
}

# The installed command; without a venv (install.sh --skip-venv), the checkout PS_SOURCE run by
# PS_PYTHON when set; else it fails.
ps_cli() {
    if [ -x "$PS_ROOT$PS_VENV/bin/$PS_NAME" ]; then
        "$PS_ROOT$PS_VENV/bin/$PS_NAME" "$@"
    elif [ -n "${PS_SOURCE:-}" ] && [ -n "${PS_PYTHON:-}" ]; then
        PYTHONPATH="$PS_SOURCE" "$PS_PYTHON" -m station.cli "$@"
    else
        return 127
    fi
}

# True when check-config accepts the configuration; otherwise say what to edit.
ps_config_ready() {
    if out=$(ps_cli check-config -c "$PS_ROOT$PS_CONF" 2>&1); then
        ps_note "$PS_CONF: check-config OK"
        return 0
    fi
    cat >&2 <<EOF
$PS_NAME: $PS_CONF is not ready, so the service is not enabled or started:
$(echo "$out" | sed 's/^/    /')
  Edit $PS_CONF (station id and region, broker, TLS files, pins), then:
    sudo $PS_NAME check-config -c $PS_CONF
    $PS_AGAIN
EOF
    return 1
}

# Boot-config lines rendered from the configuration into $PS_BOOT_LINES; fails (file left as
# it was) when the configuration cannot be rendered.
ps_render_boot_lines() {
    tmp=$(mktemp "$PS_ROOT$PS_ETC/.boot-config.XXXXXX")
    if ps_cli firmware-config -c "$PS_ROOT$PS_CONF" >"$tmp" 2>/dev/null; then
        chmod 0644 "$tmp"
        mv -f "$tmp" "$PS_ROOT$PS_BOOT_LINES"
        ps_note "boot lines in $PS_BOOT_LINES (append them to /boot/firmware/config.txt)"
    else
        rm -f "$tmp"
        return 1
    fi
}

# The systemd-timesyncd drop-in from time.ntp_servers (a closed network cannot reach the
# public pool); timesyncd restarted when it changed.
ps_render_timesyncd() {
    if ! ps_cli timesync-config --help >/dev/null 2>&1; then
        ps_note "this version has no timesync-config: NTP servers left to the system"
        return 0
    fi
    install -d -m 0755 "$PS_ROOT$(dirname "$PS_TIMESYNCD")"
    tmp=$(mktemp "$PS_ROOT$PS_TIMESYNCD.XXXXXX")
    ps_cli timesync-config -c "$PS_ROOT$PS_CONF" >"$tmp" || { rm -f "$tmp"; return 1; }
    chmod 0644 "$tmp"
    if cmp -s "$tmp" "$PS_ROOT$PS_TIMESYNCD"; then
        rm -f "$tmp"
    else
        mv -f "$tmp" "$PS_ROOT$PS_TIMESYNCD"
        ps_note "NTP servers (time.ntp_servers) in $PS_TIMESYNCD"
        if ps_systemd_running; then
            deb-systemd-invoke try-restart systemd-timesyncd.service || true
        fi
    fi
}

# Outputs forced off whatever the service did (also without systemd: a chroot, a stuck unit).
ps_outputs_off() {
    if ps_cli outputs-off -c "$PS_ROOT$PS_CONF" >/dev/null 2>&1; then
        ps_note "siren and beacon outputs forced off"
    else
        ps_warn "could not force the outputs off (no venv or an invalid $PS_CONF)"
    fi
}

# Configuration, state, generated files and the user; the gpio group stays (others use it).
ps_purge() {
    rm -rf "$PS_ROOT$PS_ETC" "$PS_ROOT$PS_STATE" "$PS_ROOT$PS_TIMESYNCD" "$PS_ROOT$PS_OPT"
    if [ -n "$PS_ROOT" ]; then
        ps_note "skipped (--root): userdel $PS_NAME"
    elif getent passwd "$PS_NAME" >/dev/null; then
        userdel "$PS_NAME"
        ! getent group "$PS_NAME" >/dev/null || groupdel "$PS_NAME"
        ps_note "removed user $PS_NAME"
    fi
}
