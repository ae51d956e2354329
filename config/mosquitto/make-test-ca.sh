#!/bin/sh
# Make a TEST certificate authority for the reference broker config (config/mosquitto/):
# a dedicated station CA, the broker's server certificate, one client certificate per station
# (CN = station id = MQTT user name), HQ dispatch and monitoring desk certificates, and the
# bad ones the security tests need: an expired station certificate, a revoked one (with the
# CA's CRL) and one from another CA. Keys are unencrypted: for tests and lab brokers only.
#
#   config/mosquitto/make-test-ca.sh DIR [STATION...]      (default station: prabumulih-1)
#
# Writes into DIR (created; existing files are overwritten):
#   ca.crt ca.key ca.crl            the station CA (cafile / crlfile of the broker listener)
#   broker.crt broker.key           server certificate, CN/SAN localhost and 127.0.0.1
#   <station>.crt <station>.key     one per STATION (CN = station id)
#   hq.dispatch.crt/.key            HQ dispatch (CN hq.dispatch: a '.' can never be a station id)
#   desk.monitoring.crt/.key        the national monitoring desk
#   expired.crt/.key                CN = first STATION, valid 2020-01-01 .. 2020-01-02
#   revoked.crt/.key                CN = first STATION, listed in ca.crl
#   other-ca.crt/.key               another CA; rogue.crt/.key: CN = first STATION, signed by it
#
# Keys are ECDSA P-256. Needs only openssl (1.1.1 or 3.x). Production: keep the CA key
# offline, issue one certificate per station with CN = its station id, publish the CRL,
# enable `crlfile`.
set -eu

[ $# -ge 1 ] || { echo "usage: $0 DIR [STATION...]" >&2; exit 64; }
DIR=$1; shift
[ $# -ge 1 ] || set -- prabumulih-1
FIRST=$1
for id in "$@"; do
  printf '%s\n' "$id" | grep -Eq '^[a-z0-9][a-z0-9_-]{0,63}$' \
    || { echo "$0: '$id' is not a station id (^[a-z0-9][a-z0-9_-]{0,63}\$)" >&2; exit 65; }
done

mkdir -p "$DIR"
DIR=$(cd "$DIR" && pwd)
DB="$DIR/.ca"
rm -rf "$DB"; mkdir -p "$DB/new"
: > "$DB/index.txt"
echo 1000 > "$DB/serial"
echo 1000 > "$DB/crlnumber"
umask 077

cat > "$DB/ca.cnf" <<EOF
[ ca ]
default_ca = station_ca
[ station_ca ]
dir = $DB
database = \$dir/index.txt
new_certs_dir = \$dir/new
serial = \$dir/serial
crlnumber = \$dir/crlnumber
certificate = $DIR/ca.crt
private_key = $DIR/ca.key
default_md = sha256
default_days = 825
default_crl_days = 30
policy = any
unique_subject = no
copy_extensions = none
[ any ]
commonName = supplied
[ client ]
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature
extendedKeyUsage = clientAuth
[ server ]
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature
extendedKeyUsage = serverAuth
subjectAltName = DNS:localhost, IP:127.0.0.1
[ req ]
distinguished_name = dn
prompt = no
[ dn ]
CN = unused
[ v3_ca ]
basicConstraints = critical, CA:TRUE
keyUsage = critical, keyCertSign, cRLSign
subjectKeyIdentifier = hash
EOF

ossl() { openssl "$@" 2>"$DB/last.err" || { cat "$DB/last.err" >&2; exit 1; }; }

new_ca() {  # name subject
  ossl req -x509 -new -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 3650 \
    -config "$DB/ca.cnf" -extensions v3_ca \
    -keyout "$DIR/$1.key" -out "$DIR/$1.crt" -subj "$2"
}

issue() {  # name CN extensions [openssl-ca date options...]
  name=$1 cn=$2 ext=$3; shift 3
  ossl req -new -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -config "$DB/ca.cnf" \
    -keyout "$DIR/$name.key" -out "$DB/$name.csr" -subj "/CN=$cn"
  ossl ca -batch -config "$DB/ca.cnf" -extensions "$ext" -notext \
    -in "$DB/$name.csr" -out "$DIR/$name.crt" "$@"
}

new_ca ca "/O=Polri Call Center 110/CN=Polres 110 station CA (TEST)"
issue broker localhost server
for id in "$@"; do issue "$id" "$id" client; done
issue hq.dispatch hq.dispatch client
issue desk.monitoring desk.monitoring client
issue expired "$FIRST" client -startdate 20200101000000Z -enddate 20200102000000Z
issue revoked "$FIRST" client
ossl ca -batch -config "$DB/ca.cnf" -revoke "$DIR/revoked.crt" -crl_reason keyCompromise
ossl ca -batch -config "$DB/ca.cnf" -gencrl -out "$DIR/ca.crl"

# Another CA altogether, with a certificate that claims to be the first station.
new_ca other-ca "/O=Not Polri/CN=Some other CA (TEST)"
ossl req -new -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -config "$DB/ca.cnf" \
  -keyout "$DIR/rogue.key" -out "$DB/rogue.csr" -subj "/CN=$FIRST"
ossl x509 -req -in "$DB/rogue.csr" -CA "$DIR/other-ca.crt" -CAkey "$DIR/other-ca.key" \
  -CAcreateserial -CAserial "$DB/other.srl" -days 825 -sha256 \
  -extfile "$DB/ca.cnf" -extensions client -out "$DIR/rogue.crt"

chmod 644 "$DIR"/*.crt "$DIR/ca.crl"
chmod 600 "$DIR"/*.key
echo "test CA in $DIR: stations $*; hq.dispatch, desk.monitoring; expired, revoked, rogue"
