#!/usr/bin/env bash
# Install Debian's SLURM controller, node daemon, client tools and munge, non-interactively.
#
# Idempotent: does nothing (and needs no network) when the binaries are already there.
# Quiet: apt output goes to a log file that is printed only when the install fails.
# The package scripts try to start the services through systemd and fail in containers; that
# is harmless, because tests/slurm_cluster.py starts its own daemons from a private slurm.conf.
#
# Usage (as root): .ci/slurm-install.sh
set -euo pipefail

need=(slurmctld slurmd sinfo squeue sbatch scontrol munged)
missing=()
for bin in "${need[@]}"; do
    PATH="$PATH:/usr/sbin:/sbin" command -v "$bin" >/dev/null 2>&1 || missing+=("$bin")
done
if [ "${#missing[@]}" -eq 0 ]; then
    echo "slurm-install: slurmctld, slurmd, slurm-client and munge already installed"
    exit 0
fi

if [ "$(id -u)" -ne 0 ]; then
    echo "slurm-install: missing ${missing[*]}; run this script as root" >&2
    exit 1
fi

log="$(mktemp -t slurm-install.XXXXXX.log)"
start=$(date +%s)
export DEBIAN_FRONTEND=noninteractive
if ! { apt-get update -qq && apt-get install -y -qq --no-install-recommends \
        -o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold \
        slurmctld slurmd slurm-client munge; } >"$log" 2>&1; then
    echo "slurm-install: apt-get failed; log follows" >&2
    cat "$log" >&2
    exit 1
fi
rm -f "$log"
echo "slurm-install: installed slurmctld slurmd slurm-client munge in $(($(date +%s) - start)) s"
