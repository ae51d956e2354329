#!/usr/bin/env bash
# Create the vhost, the identities and their permissions on the national RabbitMQ cluster — the
# same rules as the mosquitto ACL in config/mosquitto/:
#   a station  publishes only its own events, status and presence; reads only its region's
#              complaints and its own cmd topic;
#   HQ         publishes complaints (any region); reads station events (receipts, acks, resync);
#   the desk   reads every station's events, status and presence; publishes commands.
# Run it on any one node (users and permissions are cluster-wide); it is idempotent: run it
# again after editing the inventory. A station removed from the inventory is NOT deleted here
# (`rabbitmqctl delete_user ID` does it, and its certificate goes on the CRL).
#
#   setup-permissions.sh INVENTORY [PASSWORD_DIR]
#
# INVENTORY: one "station_id region" a line (# comments allowed). HQ's and the desk's user names
# are HQ_USER (default hq-dispatch) and DESK_USER (default national-desk); their MQTT client ids
# must start with "hq-" / "desk-" (their session queues are named after the client id).
# PASSWORD_DIR/<user>.password, when present, sets that user's password (read from the file,
# never from the command line of this script); users without one log in only with a client
# certificate (mqtt.ssl_cert_login, common name = user name).
# RABBITMQCTL: the rabbitmqctl command (default: rabbitmqctl; e.g. "sudo rabbitmqctl").
# VHOST (default polri110) and ROOT (default polri/110, the station's topics.root).
set -euo pipefail

INVENTORY=${1:?usage: setup-permissions.sh INVENTORY [PASSWORD_DIR]}
PASSWORD_DIR=${2:-}
VHOST=${VHOST:-polri110}
ROOT=${ROOT:-polri/110}
HQ_USER=${HQ_USER:-hq-dispatch}
DESK_USER=${DESK_USER:-national-desk}
read -r -a CTL <<< "${RABBITMQCTL:-rabbitmqctl}"
ID_RE='^[a-z0-9][a-z0-9_-]{0,63}$'

ctl() { "${CTL[@]}" --quiet "$@" </dev/null >/dev/null; }

# The MQTT plugin routes topic a/b/c as routing key a.b.c on amq.topic: permissions are
# regular expressions over routing keys.
R=$(printf '%s' "$ROOT" | sed 's#/#\\.#g')
case $ROOT in (*.*|*+*|*'#'*) echo "ROOT must not hold . + #: $ROOT" >&2; exit 2;; esac

user() {  # user NAME: create if missing; password from PASSWORD_DIR or certificate-only
    local name=$1 pw
    if ! grep -qx -- "$name" <<< "$EXISTING"; then
        # A random password that is cleared below unless a password file says otherwise.
        ctl add_user "$name" "$(head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n')"
    fi
    if [ -n "$PASSWORD_DIR" ] && [ -f "$PASSWORD_DIR/$name.password" ]; then
        pw=$(head -n 1 "$PASSWORD_DIR/$name.password")
        # rabbitmqctl 3.10 takes it only as an argument: run this on the broker host itself.
        "${CTL[@]}" --quiet change_password "$name" "$pw" </dev/null >/dev/null
    else
        ctl clear_password "$name"
    fi
}

grant() {  # grant USER CONFIGURE WRITE READ TOPIC_WRITE TOPIC_READ
    ctl set_permissions -p "$VHOST" "$1" "$2" "$3" "$4"
    ctl set_topic_permissions -p "$VHOST" "$1" amq.topic "$5" "$6"
}

ctl add_vhost "$VHOST" 2>/dev/null || true
EXISTING=$("${CTL[@]}" --quiet list_users </dev/null | awk '{print $1}')

# Session queues: mqtt-subscription-<client id>qos0|qos1 (the client id names the queue, so a
# client cannot take over another's session: it may only declare queues of its own name).
stations=0
while read -r id region _ <&3; do
    case $id in (''|'#'*) continue;; esac
    [[ $id =~ $ID_RE && $region =~ $ID_RE ]] || {
        echo "inventory: bad station id or region: '$id' '$region'" >&2; exit 2; }
    user "$id"
    q="mqtt-subscription-${id}qos[01]"
    grant "$id" "^${q}\$" "^(amq\\.topic|${q})\$" "^(amq\\.topic|${q})\$" \
        "^${R}\\.station\\.${id}\\.(events|status|presence)\$" \
        "^${R}\\.(region\\.${region}\\.complaints|station\\.${id}\\.cmd)\$"
    stations=$((stations + 1))
done 3< "$INVENTORY"

q='mqtt-subscription-hq-[a-z0-9_-]*qos[01]'
user "$HQ_USER"
grant "$HQ_USER" "^${q}\$" "^(amq\\.topic|${q})\$" "^(amq\\.topic|${q})\$" \
    "^${R}\\.region\\.[a-z0-9_-]+\\.complaints\$" \
    "^${R}\\.station\\.([a-z0-9_-]+|\\*)\\.events\$"

q='mqtt-subscription-desk-[a-z0-9_-]*qos[01]'
user "$DESK_USER"
grant "$DESK_USER" "^${q}\$" "^(amq\\.topic|${q})\$" "^(amq\\.topic|${q})\$" \
    "^${R}\\.station\\.[a-z0-9_-]+\\.cmd\$" \
    "^${R}\\.station\\.([a-z0-9_-]+|\\*)\\.(events|status|presence)\$"

echo "vhost $VHOST: $stations station(s), $HQ_USER, $DESK_USER"
