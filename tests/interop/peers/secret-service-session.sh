#!/usr/bin/env bash
# A headless Secret Service for the interop suite: run under `dbus-run-session`, with HOME and
# XDG_RUNTIME_DIR pointing at a temp dir. Creates and unlocks the login keyring with a password
# read from stdin (first line), starts gnome-keyring's secrets component, prints
# `ready <bus address>`, and keeps the session alive until stdin closes.
set -euo pipefail
IFS= read -r password
# Bounded, like everything here: a hung daemon fails the case instead of the whole CI run.
printf '%s' "$password" | timeout 30 gnome-keyring-daemon --unlock --components=secrets >/dev/null
timeout 30 gnome-keyring-daemon --start --components=secrets >/dev/null
for _ in $(seq 300); do
  if dbus-send --session --print-reply --dest=org.freedesktop.DBus /org/freedesktop/DBus \
      org.freedesktop.DBus.NameHasOwner string:org.freedesktop.secrets 2>/dev/null | grep -q true; then
    echo "ready $DBUS_SESSION_BUS_ADDRESS"
    exec cat >/dev/null
  fi
  sleep 0.1
done
echo "gnome-keyring did not take org.freedesktop.secrets on the session bus" >&2
exit 1
