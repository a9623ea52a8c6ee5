#!/usr/bin/env bash
# The parts by hand: a KMS, one token and three drives on loopback, driven by the t10k CLI.
# Run from anywhere with t10k on PATH (e.g. after `make demo`: . .venv/bin/activate).
# Everything goes in a fresh directory; the daemons are stopped on exit.
set -euo pipefail
WORK=${1:-$(mktemp -d -t t10k-walkthrough-XXXX)}
mkdir -p "$WORK" && cd "$WORK"
PIDS=()
trap 'kill "${PIDS[@]}" 2>/dev/null || true; wait 2>/dev/null || true' EXIT
wait_serving() { for _ in $(seq 100); do grep -q serving "$1" 2>/dev/null && return; sleep 0.05; done; cat "$1"; exit 1; }

# Addresses: NET.21 for the token, NET.101-103 for the drives, and the drive-LAN UDP port.
# Give them (NET=127.0.0 LAN_PORT=7010 are the README's), or let t10k find free ones so this
# runs beside another lab: `t10k lab addresses --shell` prints NET=127.x.y LAN_PORT=N.
if [ -z "${NET:-}" ]; then eval "$(t10k lab addresses --tokens 1 --drives 3 --shell)"; fi
LAN_PORT=${LAN_PORT:-7010}
echo "token at $NET.21, drives at $NET.101-103, drive LAN port $LAN_PORT"

# The manufacturing "CD" (CSNs and PCkeys) and the KMS store with its database key.
t10k drive manufacture --count 3 --out cd.json --first-csn 5700000000000001
t10k kms init --store kms --kms-id 0a0b0c0d --no-roles   # a quick lab: no operator logins
# The seed: set the backup key before adding any entries; a backup is taken on every token write.
python3 -c 'import os; print(os.urandom(32).hex())' > backup.key && chmod 600 backup.key
t10k kms set-backupkey --store kms --key-file backup.key
for i in 1 2 3; do
  t10k kms import-drive --store kms --manufacturing cd.json --csn 570000000000000$i --name drive-$i
done
t10k kms add-token --store kms --name tok --ip $NET.21 --secret-out tok.secret

# The token at its static IP, and the three drives at NET.101-103 in one process.
t10k token run --ip $NET.21 --state tok-state --secret-file tok.secret --announce-interval 1 \
  --drive-lan-port $LAN_PORT > token.log 2>&1 &
PIDS+=($!)
t10k drive run-many --manufacturing cd.json --first-ip $NET.101 --state drives --drive-lan-port $LAN_PORT \
  > drives.log 2>&1 &
PIDS+=($!)
wait_serving token.log; wait_serving drives.log

# Enrol (EKT, first time: wrapped under each drive's PCkey).
t10k kms write-ekt --store kms --token tok --use-pckey --drive drive-1 --drive drive-2 --drive drive-3
sleep 0.5
t10k vop status --ip $NET.101                        # LED AMBER: Encryption / Need OKT

# A key in a key set, mapped to a pool (a new timestamp), written as an OKT.
KEY=$(t10k kms create-key --store kms --description "write key 1")
t10k kms create-key-set --store kms KS1
t10k kms add-key --store kms --key-set KS1 --key "$KEY"
t10k kms create-pool --store kms P1
t10k kms add-drive --store kms --pool P1 --drive drive-1 --drive drive-2 --drive drive-3
t10k kms map --store kms --pool P1 --key-set KS1 --write-key "$KEY"
t10k kms write-okt --store kms --token tok --pool P1
sleep 0.5
t10k vop status --ip $NET.103 --json                 # "led": "RED", the OKT timestamp
t10k kms token-status --store kms --token tok         # OKT, LED3 SOLID_GREEN, 3 acknowledged
t10k kms restore list --store kms                     # a backup per token write
t10k kms audit verify --store kms                     # every action above, by operator, intact
echo "walkthrough done in $WORK"
