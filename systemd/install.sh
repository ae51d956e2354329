#!/usr/bin/env bash
# Install, upgrade or remove the Polres 110 station service on a Raspberry Pi (docs/BEHAVIOUR.md §6).
# Idempotent: run it again after `git pull` to upgrade; an existing station.yaml is never touched.
#
#   sudo systemd/install.sh                  install or upgrade
#   sudo systemd/install.sh --uninstall      remove; keeps /etc/polres-station and state
#   sudo systemd/install.sh --uninstall --purge   also config, state and the user
#   systemd/install.sh --root DIR --skip-venv     into a scratch root (tests): no user, no
#                                                 systemctl, no network; prints what it skips
#
# It never edits /boot/firmware/config.txt: it renders the lines into
# /etc/polres-station/boot-config.txt and tells you how to add them (see firmware/README.md).
set -euo pipefail

NAME=polres-station
SOURCE="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
ROOT=""
SKIP_VENV=0
UNINSTALL=0
PURGE=0
PYTHON="${PYTHON:-python3}"   # makes the venv; with --skip-venv, renders the boot config

usage() {
    cat <<EOF
usage: $0 [--root DIR] [--source DIR] [--skip-venv] [--uninstall [--purge]]

  --root DIR     install under DIR instead of / (tests): skips useradd, chown and systemctl
  --source DIR   the project checkout to install (default: $SOURCE)
  --skip-venv    do not create /opt/$NAME/venv or pip install (no network)
  --uninstall    stop, disable and remove the service; keep config and state
  --purge        with --uninstall: also remove /etc/$NAME, /var/lib/$NAME and the user
  environment:   PYTHON=python3.11 to choose the interpreter (>= 3.11)
EOF
}

die() { echo "install.sh: $*" >&2; exit 1; }
step() { echo "==> $*"; }
note() { echo "    $*"; }

while [ $# -gt 0 ]; do
    case "$1" in
        --root) [ $# -ge 2 ] || die "--root needs a directory"; ROOT="$2"; shift 2 ;;
        --root=*) ROOT="${1#*=}"; shift ;;
        --source) [ $# -ge 2 ] || die "--source needs a directory"; SOURCE="$2"; shift 2 ;;
        --source=*) SOURCE="${1#*=}"; shift ;;
        --skip-venv) SKIP_VENV=1; shift ;;
        --uninstall) UNINSTALL=1; shift ;;
        --purge) PURGE=1; shift ;;
        -h|--help) usage; exit 0 ;;
        *) usage >&2; exit 2 ;;
    esac
done
[ "$PURGE" = 0 ] || [ "$UNINSTALL" = 1 ] || die "--purge only goes with --uninstall"

if [ -n "$ROOT" ]; then
    mkdir -p "$ROOT"
    ROOT="$(cd "$ROOT" && pwd)"
    [ "$ROOT" != / ] || ROOT=""
fi
SOURCE="$(cd "$SOURCE" && pwd)" || die "no such source directory"

# Paths as the running system sees them, and where this run writes them.
OPT=/opt/$NAME
VENV=$OPT/venv
ETC=/etc/$NAME
STATE=/var/lib/$NAME
UNIT=/etc/systemd/system/$NAME.service
DROPIN=/etc/systemd/system.conf.d/$NAME-watchdog.conf
LINK=/usr/local/bin/$NAME
BOOT_CONFIG=/boot/firmware/config.txt

DOC=/usr/share/doc/$NAME

# The steps shared with the Debian package's maintainer scripts.
PS_ROOT=$ROOT PS_SOURCE=$SOURCE PS_PYTHON=$PYTHON PS_AGAIN="sudo $0"
. "$(dirname "${BASH_SOURCE[0]}")/station-setup.sh"

if [ -z "$ROOT" ] && [ "$(id -u)" != 0 ]; then
    die "run as root (sudo $0 $*), or use --root DIR for a scratch install"
fi

# A command that needs the real system: run it, or with --root only say what it would do.
system() {
    if [ -n "$ROOT" ]; then
        note "skipped (--root): $*"
    else
        "$@"
    fi
}

# ------------------------------------------------------------------------------- uninstall
if [ "$UNINSTALL" = 1 ]; then
    step "stopping and disabling $NAME (ExecStopPost switches the relays off)"
    if [ -z "$ROOT" ]; then
        systemctl disable --now "$NAME.service" 2>/dev/null || true
    elif command -v systemctl >/dev/null && [ -e "$ROOT$UNIT" ]; then
        systemctl --root="$ROOT" --quiet disable "$NAME.service"
        note "disabled in $ROOT (offline); nothing to stop"
    fi
    [ -n "$ROOT" ] || ps_outputs_off
    step "removing the unit, watchdog drop-in, command link and $OPT"
    rm -f "$ROOT$UNIT" "$ROOT$DROPIN" "$ROOT$LINK"
    rm -rf "$ROOT$OPT" "$ROOT$DOC"
    system systemctl daemon-reload
    if [ "$PURGE" = 1 ]; then
        step "purging configuration, state and the $NAME user"
        ps_purge
    else
        note "kept $ETC (configuration) and $STATE (alarm history, outbox); --purge removes them"
    fi
    note "the $NAME lines in $BOOT_CONFIG stay (they keep the relay pins off); remove them by hand if the relays go"
    exit 0
fi

# --------------------------------------------------------------------------------- install
for f in setup.py systemd/$NAME.service systemd/$NAME-watchdog.conf \
         config/station.example.yaml firmware/config.txt.example; do
    [ -f "$SOURCE/$f" ] || die "$SOURCE is not a polres-station checkout (missing $f)"
done

step "system user $NAME (group $NAME, member of gpio)"
ps_ensure_user

step "application in $VENV"
if [ "$SKIP_VENV" = 1 ]; then
    note "skipped (--skip-venv): $PYTHON -m venv --system-site-packages $OPT/venv-<time>" \
        "&& pip install $SOURCE"
else
    "$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 11))' \
        || die "$PYTHON is older than 3.11 (set PYTHON=...)"
    # From the package index (a checkout implies a network); the Debian package installs the
    # same way from its wheelhouse, offline. GPIO libraries come from the OS (python3-lgpio).
    ps_build_venv "$PYTHON" "$(date -u +%Y%m%d%H%M%S)" "$SOURCE"
fi
install -d -m 0755 "$ROOT$OPT" "$ROOT$(dirname "$LINK")" "$ROOT$DOC"
# The documents at their repository paths, so that their relative links resolve (as in the
# Debian package's /usr/share/doc/polres-station).
(cd "$SOURCE" && for doc in README.md docs/* firmware/README.md firmware/config.txt.example \
        config/station.example.yaml config/mosquitto/* config/rabbitmq/* systemd/* \
        packaging/README.md; do
    [ -f "$doc" ] && install -D -m 0644 "$doc" "$ROOT$DOC/$doc"
done)
ln -sfn "$VENV/bin/$NAME" "$ROOT$LINK"
note "command: $LINK -> $VENV/bin/$NAME; documents in $DOC"

step "configuration in $ETC"
install -d -m 0750 "$ROOT$ETC"
install -m 0644 "$SOURCE/config/station.example.yaml" "$ROOT$ETC/station.example.yaml"
CREATED_CONFIG=0
if [ -e "$ROOT$ETC/station.yaml" ]; then
    note "kept the existing $ETC/station.yaml"
else
    install -m 0640 "$SOURCE/config/station.example.yaml" "$ROOT$ETC/station.yaml"
    CREATED_CONFIG=1
    note "created $ETC/station.yaml from the example: edit it"
fi
ps_ensure_dirs

step "systemd unit $UNIT and hardware-watchdog drop-in $DROPIN"
install -d -m 0755 "$ROOT$(dirname "$UNIT")" "$ROOT$(dirname "$DROPIN")"
install -m 0644 "$SOURCE/systemd/$NAME.service" "$ROOT$UNIT"
install -m 0644 "$SOURCE/systemd/$NAME-watchdog.conf" "$ROOT$DROPIN"

step "boot configuration lines in $ETC/boot-config.txt"
if ps_render_boot_lines; then
    note "rendered from $ETC/station.yaml"
else
    install -m 0644 "$SOURCE/firmware/config.txt.example" "$ROOT$ETC/boot-config.txt"
    note "could not render (no $NAME installed here): copied firmware/config.txt.example,"
    note "which matches only the example config. After editing station.yaml run:"
    note "  $NAME firmware-config -c $ETC/station.yaml > $ETC/boot-config.txt"
fi

step "checking $ETC/station.yaml; enabling $NAME.service only when it passes"
READY=0
if ps_config_ready; then
    READY=1
    ps_render_timesyncd
    if [ -n "$ROOT" ] && command -v systemctl >/dev/null; then
        systemctl --root="$ROOT" --quiet enable "$NAME.service"   # offline: just the symlink
        note "enabled in $ROOT (offline)"
    else
        system systemctl daemon-reload
        system systemctl enable "$NAME.service"
    fi
    if [ -z "$ROOT" ]; then
        systemctl restart "$NAME.service"
        note "(re)started on the new version (unacknowledged alarms resume)"
    fi
fi
[ "$SKIP_VENV" = 1 ] || ps_prune_venvs

cat <<EOF

Installed. Next steps (docs: $DOC/README.md, $DOC/firmware/README.md):
EOF
n=1
if [ "$CREATED_CONFIG" = 1 ] || [ "$READY" = 0 ]; then
    echo "  $n. Edit $ETC/station.yaml (station id, region, broker, pins, polarity)."; n=$((n + 1))
fi
cat <<EOF
  $n. Check it:            sudo $NAME check-config -c $ETC/station.yaml
     and run this installer again: it enables and starts the service once the check passes.
  $((n + 1)). Render boot lines (again after every pin change):
       sudo $NAME firmware-config -c $ETC/station.yaml | sudo tee $ETC/boot-config.txt
  $((n + 2)). Append them to $BOOT_CONFIG yourself (this script never edits it):
       sudo cp $BOOT_CONFIG $BOOT_CONFIG.bak
       sudo sh -c 'cat $ETC/boot-config.txt >> $BOOT_CONFIG'
  $((n + 3)). Reboot (boot lines and the hardware watchdog take effect): sudo reboot
  $((n + 4)). Check: systemctl status $NAME; journalctl -u $NAME -f
  $((n + 5)). Self-test (the running service holds the GPIO lines: stop it, test, start it):
       sudo systemctl stop $NAME; sudo $NAME selftest -c $ETC/station.yaml; sudo systemctl start $NAME
EOF
