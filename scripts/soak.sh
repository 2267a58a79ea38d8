#!/usr/bin/env bash
# The broker's multi-process fault soak, as long as you like (issue 16).
#
#   scripts/soak.sh          300 s
#   scripts/soak.sh SECS     SECS seconds
#
# 8 client processes (3 leases each, a new process for every one killed) take and
# give back host PASIDs at random against one broker; the test kills clients with
# SIGKILL about twice a second and kills and restarts the broker once per 10 s (at
# least twice). A checker reading only the clients' logs proves no host PASID was ever
# held by two live leases and none was granted before its quarantine ended; at the end
# every PASID is free. Its last lines give the counts. The CI-sized run (20 s) is part
# of `cargo test -p pasid-broker`.
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${1:-300}
PASID_SOAK_SECS=$secs cargo test --release -p pasid-broker --test soak -- --nocapture
