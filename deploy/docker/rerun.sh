#!/bin/sh
# Dev-only process wrapper so Tilt's live_update can restart a service that does not reload itself.
#
#   imagebatch-rerun COMMAND [ARGS...]   run COMMAND; run it again whenever a restart is asked for
#   imagebatch-rerun --restart           ask the wrapper in this container to restart its COMMAND
#
# Restarting the container instead would throw away the files live_update just synced (a restarted
# container starts from the image again), so the wrapper stays PID 1 and restarts only its child.
# SIGTERM/SIGINT go to the child and the wrapper exits with the child's status, so the services'
# graceful shutdown (the worker drains in-flight jobs, then exits 0) works as without it.
# The Tiltfile puts it in front of the container command; plain `kubectl apply -k manifests`
# and docker compose run the services directly.
set -u

state="${TMPDIR:-/tmp}"
pidfile="$state/imagebatch-rerun.pid"
restart_flag="$state/imagebatch-rerun.restart"

if [ "${1:-}" = "--restart" ]; then
    if [ ! -s "$pidfile" ]; then
        echo "imagebatch-rerun: no process to restart (no $pidfile)" >&2
        exit 1
    fi
    : >"$restart_flag"
    kill -TERM "$(cat "$pidfile")"
    exit 0
fi

if [ "$#" -eq 0 ]; then
    echo "usage: imagebatch-rerun COMMAND [ARGS...] | imagebatch-rerun --restart" >&2
    exit 2
fi

child=""
forward() {
    rm -f "$restart_flag"
    if [ -n "$child" ]; then
        kill -TERM "$child" 2>/dev/null
        wait "$child"
        exit $?
    fi
    exit 143
}
trap forward TERM INT

while :; do
    rm -f "$restart_flag"
    "$@" &
    child=$!
    echo "$child" >"$pidfile"
    wait "$child"
    status=$?
    if [ ! -e "$restart_flag" ]; then
        rm -f "$pidfile"
        exit "$status"
    fi
    echo "imagebatch-rerun: restarting $*" >&2
done
