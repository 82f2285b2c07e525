#!/usr/bin/env bash
# Row (gn) of bench/harness.py: nginx as a plain reverse proxy in front of row (c), the most any
# HTTP proxy keeps of its upstream's throughput on this machine (no token check, no JSON: bytes
# in, bytes out, on kept-alive upstream connections, one worker per core).
#
# Environment: PORT (to listen on, loopback), UPSTREAM (http://127.0.0.1:PORT/). Runs in the
# foreground until killed; its files live in a temporary directory removed on exit.
set -euo pipefail
: "${PORT:?}" "${UPSTREAM:?}"
upstream="${UPSTREAM#http://}"
upstream="${upstream%/}"
dir="$(mktemp -d -t bench-nginx-XXXXXX)"
trap 'rm -rf "$dir"' EXIT
cat > "$dir/nginx.conf" <<CONF
worker_processes auto;
daemon off;
pid $dir/nginx.pid;
error_log $dir/error.log warn;
events { worker_connections 1024; }
http {
    access_log off;
    client_body_temp_path $dir/body;
    proxy_temp_path $dir/proxy;
    fastcgi_temp_path $dir/fastcgi;
    uwsgi_temp_path $dir/uwsgi;
    scgi_temp_path $dir/scgi;
    upstream mcp { server $upstream; keepalive 128; }
    server {
        listen 127.0.0.1:$PORT;
        location / {
            proxy_pass http://mcp;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            # (c) checks the Host header against its own address.
            proxy_set_header Host $upstream;
            # Event streams pass as they come.
            proxy_buffering off;
        }
    }
}
CONF
nginx="$(command -v nginx || echo /usr/sbin/nginx)"
"$nginx" -c "$dir/nginx.conf" -p "$dir" &
nginx_pid=$!
trap 'kill "$nginx_pid" 2> /dev/null; wait "$nginx_pid" 2> /dev/null; rm -rf "$dir"' EXIT TERM INT
wait "$nginx_pid"
