
use builtin;
use str;

set edit:completion:arg-completer[scalekit-mcp] = {|@words|
    fn spaces {|n|
        builtin:repeat $n ' ' | str:join ''
    }
    fn cand {|text desc|
        edit:complex-candidate $text &display=$text' '(spaces (- 14 (wcswidth $text)))$desc
    }
    var command = 'scalekit-mcp'
    for word $words[1..-1] {
        if (str:has-prefix $word '-') {
            break
        }
        set command = $command';'$word
    }
    var completions = [
        &'scalekit-mcp'= {
            cand -h 'Print help'
            cand --help 'Print help'
            cand -V 'Print version'
            cand --version 'Print version'
            cand serve 'Run the MCP server; every MCP request needs a valid bearer token'
            cand login 'Log in to an MCP server (OAuth discovery, PKCE, registration) and store the token in the OS keyring'
            cand logout 'Remove (and revoke) the stored credentials of a server'
            cand status 'Show the stored logins: subject, scopes, expiry; never a token'
            cand token 'Print a valid access token for a server, refreshing it when needed'
            cand call 'Call a tool and print its result (key=value arguments checked against its schema)'
            cand tools 'List a server''s tools with their parameters'
            cand proxy 'Bridge a desktop MCP client (stdio) to a protected server (HTTP) with the stored login, logging in first when needed'
            cand check-token 'Explain an access token offline: header, claims, and every check serve would make'
            cand completions 'Print a shell completion script to stdout'
            cand man 'Print a man page (roff) to stdout, or write every page into a directory'
            cand help 'Print this message or the help of the given subcommand(s)'
        }
        &'scalekit-mcp;serve'= {
            cand --transport 'Transport to serve'
            cand --host 'Address to listen on (0.0.0.0: every interface)'
            cand --port 'Port to listen on (0 picks a free one)'
            cand --public-url 'The URL clients use to reach this server (behind a proxy)'
            cand --mcp-path 'Path of the MCP endpoint'
            cand --allowed-host 'More Host values to accept (repeatable; `*` turns the check off)'
            cand --cors-origin 'Browser origin allowed by CORS (repeatable). None by default'
            cand --sk-env-url 'Scalekit environment URL: its tokens are accepted, its JWKS read from {SK_ENV_URL}/keys'
            cand --issuer 'Accepted token issuer (repeatable, or comma-separated)'
            cand --audience 'Accepted token audience (repeatable, or comma-separated)'
            cand --required-scope 'Scope every token must carry (repeatable, or comma-separated)'
            cand --algorithms 'Allowed signature algorithms (comma-separated)'
            cand --leeway 'Clock skew tolerated on exp, nbf and iat (e.g. 30s, 2m)'
            cand --tool-scope 'Scopes a tool needs (repeatable): NAME=SCOPE[ SCOPE…]; NAME may use * (admin_*=admin)'
            cand --allowed-org 'Organization whose tokens are accepted (repeatable, or comma-separated). Default: any'
            cand --protected-resource-metadata 'Protected resource metadata JSON, served as given'
            cand --resource 'The resource identifier of generated metadata'
            cand --authorization-server 'Authorization server of generated metadata (repeatable, or comma-separated)'
            cand --jwks-url 'JWKS URL'
            cand --jwks-ttl 'JWKS refresh interval when the response has no Cache-Control max-age'
            cand --jwks-cooldown 'Minimum time between JWKS refetches for tokens with an unknown kid'
            cand --resource-metadata-url 'Absolute URL of the metadata, as sent in challenges'
            cand --scopes-supported 'Scopes listed in generated metadata (repeatable, or comma-separated)'
            cand --max-body-bytes 'Largest request body, in bytes (413 beyond)'
            cand --max-header-bytes 'Largest request header section, in bytes (431 beyond)'
            cand --request-timeout 'Time allowed to start answering a request (408 beyond)'
            cand --idle-timeout 'Time a connection may wait for its next request head before it is closed'
            cand --max-connections 'Connections held open at once (503 with Retry-After beyond)'
            cand --shutdown-timeout 'Time in-flight requests get to finish after SIGINT or SIGTERM'
            cand --max-sessions 'Sessions open at once, all callers together (an initialize beyond gets 503)'
            cand --max-sessions-per-caller 'Sessions open at once per caller; one more closes its least recently used'
            cand --session-idle-timeout 'A session without a request for this long is closed'
            cand --session-sleep-after 'A session without a request or an open stream for this long sleeps'
            cand --session-store 'Keep sessions in Redis, so that every replica serves every session: redis://…'
            cand --rate-limit-store 'Count rate limits in Redis, so that they hold across replicas (default: the session store)'
            cand --redis-prefix 'Prefix of every Redis key, so that several deployments can share one Redis'
            cand --rate-limit 'Requests each caller may make: N/UNIT, UNIT s, min or h (e.g. 600/min). Default: none'
            cand --rate-limit-burst 'Requests a caller may make at once after a quiet spell (default: a tenth of N, at least 1)'
            cand --tool-rate-limit 'Calls of a tool each caller may make (repeatable): NAME=N/UNIT; NAME may use *'
            cand --anonymous-rate-limit 'Requests each client IP may make that need a token checked: N/UNIT. Default: none'
            cand --trusted-proxy 'Proxy whose X-Forwarded-For / Forwarded headers name the client (repeatable; CIDR)'
            cand --log-level 'Log level: error, warn, info, debug, trace (Python names work)'
            cand --log-format 'Log line format (to stderr)'
            cand --metrics-addr 'Serve Prometheus metrics at http://HOST:PORT/metrics (e.g. 127.0.0.1:9464). Default: off'
            cand --dev-key 'PEM RSA private key kept across restarts (created when missing)'
            cand --dev-user 'The user the development authorization server logs in (the tokens'' `sub`)'
            cand --dev-token-ttl 'Lifetime of the development authorization server''s access tokens'
            cand --upstream 'The upstream MCP server''s Streamable HTTP URL: serve its tools, resources and prompts'
            cand --upstream-header 'A header for the HTTP upstream (repeatable): ''Name: value'''
            cand --upstream-bearer-env 'Send `Authorization: Bearer $VAR` to the HTTP upstream (the name of a variable, so the secret is never on the command line)'
            cand --upstream-timeout 'Longest wait for an upstream answer (each progress notification restarts it)'
            cand --stateless 'No sessions: plain JSON answers, for several instances behind a load balancer'
            cand --dev 'Also run a development authorization server, offline, at {public URL}/dev-auth'
            cand --dev-auto-approve 'Approve every authorization request without the consent page (scripts, tests)'
            cand -h 'Print help (see more with ''--help'')'
            cand --help 'Print help (see more with ''--help'')'
            cand -V 'Print version'
            cand --version 'Print version'
        }
        &'scalekit-mcp;login'= {
            cand --scope 'Scope to request (repeatable). Default: the server''s challenge, else its metadata'
            cand --client-id 'A client id registered in advance with the authorization server (skips registration)'
            cand --client-secret-env 'Environment variable holding the client secret (never pass a secret as a flag value). Default: SK_CLIENT_SECRET'
            cand --client-metadata-url 'HTTPS URL of this client''s metadata document, used when the server supports Client ID Metadata Documents'
            cand --callback-port 'Port of the 127.0.0.1 redirect listener (0 = random; pre-registered clients need a fixed one)'
            cand --timeout 'How long to wait for the browser login'
            cand --client-assertion-key 'With --client-credentials: authenticate with a JWT signed by this private key (private_key_jwt, RFC 7523) instead of a secret. A PEM key (algorithm from the key: RSA → RS256, P-256 → ES256, P-384 → ES384, Ed25519 → EdDSA) or a private JWK (its kid and alg)'
            cand --no-browser 'Print the login URL instead of opening a browser'
            cand --client-credentials 'Machine-to-machine login with --client-id and its secret (client credentials grant), no browser'
            cand --with-token 'Read an access token from stdin and store it, for tokens obtained elsewhere'
            cand --insecure-storage 'Keep credentials in a plaintext file (mode 0600) in the config directory instead of the OS keyring. Also SCALEKIT_MCP_STORAGE=file'
            cand -v 'Print each discovery step'
            cand --verbose 'Print each discovery step'
            cand -h 'Print help'
            cand --help 'Print help'
            cand -V 'Print version'
            cand --version 'Print version'
        }
        &'scalekit-mcp;logout'= {
            cand --all 'Log out of every server'
            cand -h 'Print help'
            cand --help 'Print help'
            cand -V 'Print version'
            cand --version 'Print version'
        }
        &'scalekit-mcp;status'= {
            cand --json 'Print one JSON document instead of text'
            cand -h 'Print help'
            cand --help 'Print help'
            cand -V 'Print version'
            cand --version 'Print version'
        }
        &'scalekit-mcp;token'= {
            cand -h 'Print help'
            cand --help 'Print help'
            cand -V 'Print version'
            cand --version 'Print version'
        }
        &'scalekit-mcp;call'= {
            cand --args 'All arguments as one JSON object: literal JSON, @file.json, or - for stdin. key=value arguments override its fields'
            cand --server 'The MCP server URL; default: the one logged in to last'
            cand --token 'Access token to send as is (never stored, never refreshed), e.g. in CI. Prefer the SCALEKIT_MCP_TOKEN variable: a flag shows in the process list. Default: the stored login'
            cand --timeout 'Give up after this long (connecting, refreshing and calling): 30s, 2m, 500ms'
            cand --json 'Machine-readable output: the whole result as JSON on stdout; errors as one JSON line {"error":{"code","message"}} on stderr'
            cand --login 'When the server asks for a login (401) or for more scopes (403 insufficient_scope), log in (step-up: the scopes held plus the ones asked for) and retry, once each. Default when stdin and stderr are a terminal'
            cand --no-login 'Never log in: exit 3 with the exact login command to run. Default without a terminal, so CI never waits for a browser'
            cand --no-browser 'When logging in, print the login URL instead of opening a browser'
            cand -h 'Print help'
            cand --help 'Print help'
            cand -V 'Print version'
            cand --version 'Print version'
        }
        &'scalekit-mcp;tools'= {
            cand --server 'The MCP server URL; default: the one logged in to last'
            cand --token 'Access token to send as is (never stored, never refreshed), e.g. in CI. Prefer the SCALEKIT_MCP_TOKEN variable: a flag shows in the process list. Default: the stored login'
            cand --timeout 'Give up after this long (connecting, refreshing and calling): 30s, 2m, 500ms'
            cand --json 'Machine-readable output: the whole result as JSON on stdout; errors as one JSON line {"error":{"code","message"}} on stderr'
            cand --login 'When the server asks for a login (401) or for more scopes (403 insufficient_scope), log in (step-up: the scopes held plus the ones asked for) and retry, once each. Default when stdin and stderr are a terminal'
            cand --no-login 'Never log in: exit 3 with the exact login command to run. Default without a terminal, so CI never waits for a browser'
            cand --no-browser 'When logging in, print the login URL instead of opening a browser'
            cand -h 'Print help'
            cand --help 'Print help'
            cand -V 'Print version'
            cand --version 'Print version'
        }
        &'scalekit-mcp;proxy'= {
            cand --print-config 'Print the configuration block that makes this desktop client run this proxy, say which file it goes in, and exit'
            cand --token-env 'Environment variable holding an access token to send as is instead of the stored login (never stored, never refreshed), e.g. for CI or agents. Default: SCALEKIT_MCP_TOKEN when it is set'
            cand --header 'An extra header for every request to the server, e.g. --header ''X-Tenant: acme'' (repeatable). Not for tokens: see --token-env'
            cand --scope 'Scope to request when logging in (repeatable). Default: the server''s challenge, else its metadata'
            cand --client-id 'When logging in: a client id registered in advance with the authorization server (its secret, if any, in SK_CLIENT_SECRET)'
            cand --callback-port 'When logging in: port of the 127.0.0.1 redirect listener (0 = random; pre-registered clients need a fixed one)'
            cand --timeout 'How long a login waits for the browser'
            cand --log-file 'Also write the proxy''s log lines to this file (appended)'
            cand --no-browser 'When logging in, print the login URL on stderr instead of opening a browser'
            cand --no-login 'Never log in: without a usable stored login, exit 3 with the login command before any MCP traffic (for unattended use)'
            cand -h 'Print help (see more with ''--help'')'
            cand --help 'Print help (see more with ''--help'')'
            cand -V 'Print version'
            cand --version 'Print version'
        }
        &'scalekit-mcp;check-token'= {
            cand --server 'Check the access token `login` stored for this server instead (read as stored: no refresh, no network)'
            cand --jwks 'Verify the signature with these keys: a JWKS (the JSON at {SK_ENV_URL}/keys), a single JWK or a PEM public key. Keys are matched by `kid` (a lone key without one, such as a PEM, matches any). Without it, the signature is not checked'
            cand --sk-env-url 'Scalekit environment URL: its tokens are accepted, its JWKS read from {SK_ENV_URL}/keys'
            cand --issuer 'Accepted token issuer (repeatable, or comma-separated)'
            cand --audience 'Accepted token audience (repeatable, or comma-separated)'
            cand --required-scope 'Scope every token must carry (repeatable, or comma-separated)'
            cand --algorithms 'Allowed signature algorithms (comma-separated)'
            cand --leeway 'Clock skew tolerated on exp, nbf and iat (e.g. 30s, 2m)'
            cand --tool-scope 'Scopes a tool needs (repeatable): NAME=SCOPE[ SCOPE…]; NAME may use * (admin_*=admin)'
            cand --allowed-org 'Organization whose tokens are accepted (repeatable, or comma-separated). Default: any'
            cand --protected-resource-metadata 'Protected resource metadata JSON, served as given'
            cand --resource 'The resource identifier of generated metadata'
            cand --authorization-server 'Authorization server of generated metadata (repeatable, or comma-separated)'
            cand --tool 'Also check whether the token may call this tool (repeatable), by the --tool-scope settings serve reads'
            cand --now 'The clock, in seconds since the Unix epoch. For tests: makes relative times reproducible'
            cand --json 'Print one JSON object {header, claims, checks: [{name, status, detail}], valid} instead'
            cand -h 'Print help (see more with ''--help'')'
            cand --help 'Print help (see more with ''--help'')'
            cand -V 'Print version'
            cand --version 'Print version'
        }
        &'scalekit-mcp;completions'= {
            cand -h 'Print help'
            cand --help 'Print help'
            cand -V 'Print version'
            cand --version 'Print version'
        }
        &'scalekit-mcp;man'= {
            cand --out-dir 'Write every page into this directory instead (created if missing)'
            cand -h 'Print help'
            cand --help 'Print help'
            cand -V 'Print version'
            cand --version 'Print version'
        }
        &'scalekit-mcp;help'= {
            cand serve 'Run the MCP server; every MCP request needs a valid bearer token'
            cand login 'Log in to an MCP server (OAuth discovery, PKCE, registration) and store the token in the OS keyring'
            cand logout 'Remove (and revoke) the stored credentials of a server'
            cand status 'Show the stored logins: subject, scopes, expiry; never a token'
            cand token 'Print a valid access token for a server, refreshing it when needed'
            cand call 'Call a tool and print its result (key=value arguments checked against its schema)'
            cand tools 'List a server''s tools with their parameters'
            cand proxy 'Bridge a desktop MCP client (stdio) to a protected server (HTTP) with the stored login, logging in first when needed'
            cand check-token 'Explain an access token offline: header, claims, and every check serve would make'
            cand completions 'Print a shell completion script to stdout'
            cand man 'Print a man page (roff) to stdout, or write every page into a directory'
            cand help 'Print this message or the help of the given subcommand(s)'
        }
        &'scalekit-mcp;help;serve'= {
        }
        &'scalekit-mcp;help;login'= {
        }
        &'scalekit-mcp;help;logout'= {
        }
        &'scalekit-mcp;help;status'= {
        }
        &'scalekit-mcp;help;token'= {
        }
        &'scalekit-mcp;help;call'= {
        }
        &'scalekit-mcp;help;tools'= {
        }
        &'scalekit-mcp;help;proxy'= {
        }
        &'scalekit-mcp;help;check-token'= {
        }
        &'scalekit-mcp;help;completions'= {
        }
        &'scalekit-mcp;help;man'= {
        }
        &'scalekit-mcp;help;help'= {
        }
    ]
    $completions[$command]
}
