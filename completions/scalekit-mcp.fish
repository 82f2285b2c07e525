# Print an optspec for argparse to handle cmd's options that are independent of any subcommand.
function __fish_scalekit_mcp_global_optspecs
    string join \n h/help V/version
end

function __fish_scalekit_mcp_needs_command
    # Figure out if the current invocation already has a command.
    set -l cmd (commandline -opc)
    set -e cmd[1]
    argparse -s (__fish_scalekit_mcp_global_optspecs) -- $cmd 2>/dev/null
    or return
    if set -q argv[1]
        # Also print the command, so this can be used to figure out what it is.
        echo $argv[1]
        return 1
    end
    return 0
end

function __fish_scalekit_mcp_using_subcommand
    set -l cmd (__fish_scalekit_mcp_needs_command)
    test -z "$cmd"
    and return 1
    contains -- $cmd[1] $argv
end

complete -c scalekit-mcp -n "__fish_scalekit_mcp_needs_command" -s h -l help -d 'Print help'
complete -c scalekit-mcp -n "__fish_scalekit_mcp_needs_command" -s V -l version -d 'Print version'
complete -c scalekit-mcp -n "__fish_scalekit_mcp_needs_command" -f -a "serve" -d 'Run the MCP server; every MCP request needs a valid bearer token'
complete -c scalekit-mcp -n "__fish_scalekit_mcp_needs_command" -f -a "login" -d 'Log in to an MCP server (OAuth discovery, PKCE, registration) and store the token in the OS keyring'
complete -c scalekit-mcp -n "__fish_scalekit_mcp_needs_command" -f -a "logout" -d 'Remove (and revoke) the stored credentials of a server'
complete -c scalekit-mcp -n "__fish_scalekit_mcp_needs_command" -f -a "status" -d 'Show the stored logins: subject, scopes, expiry; never a token'
complete -c scalekit-mcp -n "__fish_scalekit_mcp_needs_command" -f -a "token" -d 'Print a valid access token for a server, refreshing it when needed'
complete -c scalekit-mcp -n "__fish_scalekit_mcp_needs_command" -f -a "call" -d 'Call a tool and print its result (key=value arguments checked against its schema)'
complete -c scalekit-mcp -n "__fish_scalekit_mcp_needs_command" -f -a "tools" -d 'List a server\'s tools with their parameters'
complete -c scalekit-mcp -n "__fish_scalekit_mcp_needs_command" -f -a "proxy" -d 'Bridge a desktop MCP client (stdio) to a protected server (HTTP) with the stored login, logging in first when needed'
complete -c scalekit-mcp -n "__fish_scalekit_mcp_needs_command" -f -a "check-token" -d 'Explain an access token offline: header, claims, and every check serve would make'
complete -c scalekit-mcp -n "__fish_scalekit_mcp_needs_command" -f -a "completions" -d 'Print a shell completion script to stdout'
complete -c scalekit-mcp -n "__fish_scalekit_mcp_needs_command" -f -a "man" -d 'Print a man page (roff) to stdout, or write every page into a directory'
complete -c scalekit-mcp -n "__fish_scalekit_mcp_needs_command" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c scalekit-mcp -n "__fish_scalekit_mcp_using_subcommand serve" -l transport -d 'Transport to serve' -r -f -a "http\t'MCP Streamable HTTP, with OAuth bearer tokens'
stdio\t'MCP over stdin/stdout for a local client; no OAuth (per the MCP spec)'"
complete -c scalekit-mcp -n "__fish_scalekit_mcp_using_subcommand serve" -l host -d 'Address to listen on (0.0.0.0: every interface)' -r
complete -c scalekit-mcp -n "__fish_scalekit_mcp_using_subcommand serve" -l port -d 'Port to listen on (0 picks a free one)' -r
complete -c scalekit-mcp -n "__fish_scalekit_mcp_using_subcommand serve" -l public-url -d 'The URL clients use to reach this server (behind a proxy)' -r
complete -c scalekit-mcp -n "__fish_scalekit_mcp_using_subcommand serve" -l mcp-path -d 'Path of the MCP endpoint' -r
complete -c scalekit-mcp -n "__fish_scalekit_mcp_using_subcommand serve" -l allowed-host -d 'More Host values to accept (repeatable; `*` turns the check off)' -r
complete -c scalekit-mcp -n "__fish_scalekit_mcp_using_subcommand serve" -l cors-origin -d 'Browser origin allowed by CORS (repeatable). None by default' -r
complete -c scalekit-mcp -n "__fish_scalekit_mcp_using_subcommand serve" -l sk-env-url -d 'Scalekit environment URL: its tokens are accepted, its JWKS read from {SK_ENV_URL}/keys' -r
complete -c scalekit-mcp -n "__fish_scalekit_mcp_using_subcommand serve" -l issuer -d 'Accepted token issuer (repeatable, or comma-separated)' -r
complete -c scalekit-mcp -n "__fish_scalekit_mcp_using_subcommand serve" -l audience -d 'Accepted token audience (repeatable, or comma-separated)' -r
complete -c scalekit-mcp -n "__fish_scalekit_mcp_using_subcommand serve" -l required-scope -d 'Scope every token must carry (repeatable, or comma-separated)' -r
complete -c scalekit-mcp -n "__fish_scalekit_mcp_using_subcommand serve" -l algorithms -d 'Allowed signature algorithms (comma-separated)' -r
complete -c scalekit-mcp -n "__fish_scalekit_mcp_using_subcommand serve" -l leeway -d 'Clock skew tolerated on exp, nbf and iat (e.g. 30s, 2m)' -r
complete -c scalekit-mcp -n "__fish_scalekit_mcp_using_subcommand serve" -l tool-scope -d 'Scopes a tool needs (repeatable): NAME=SCOPE[ SCOPE…]; NAME may use * (admin_*=admin)' -r
complete -c scalekit-mcp -n "__fish_scalekit_mcp_using_subcommand serve" -l allowed-org -d 'Organization whose tokens are accepted (repeatable, or comma-separated). Default: any' -r
complete -c scalekit-mcp -n "__fish_scalekit_mcp_using_subcommand serve" -l protected-resource-metadata -d 'Protected resource metadata JSON, served as given' -r
complete -c scalekit-mcp -n "__fish_scalekit_mcp_using_subcommand serve" -l resource -d 'The resource identifier of generated metadata' -r
complete -c scalekit-mcp -n "__fish_scalekit_mcp_using_subcommand serve" -l authorization-server -d 'Authorization server of generated metadata (repeatable, or comma-separated)' -r
complete -c scalekit-mcp -n "__fish_scalekit_mcp_using_subcommand serve" -l jwks-url -d 'JWKS URL' -r
complete -c scalekit-mcp -n "__fish_scalekit_mcp_using_subcommand serve" -l jwks-ttl -d 'JWKS refresh interval when the response has no Cache-Control max-age' -r
complete -c scalekit-mcp -n "__fish_scalekit_mcp_using_subcommand serve" -l jwks-cooldown -d 'Minimum time between JWKS refetches for tokens with an unknown kid' -r
complete -c scalekit-mcp -n "__fish_scalekit_mcp_using_subcommand serve" -l resource-metadata-url -d 'Absolute URL of the metadata, as sent in challenges' -r
complete -c scalekit-mcp -n "__fish_scalekit_mcp_using_subcommand serve" -l scopes-supported -d 'Scopes listed in generated metadata (repeatable, or comma-separated)' -r
complete -c scalekit-mcp -n "__fish_scalekit_mcp_using_subcommand serve" -l max-body-bytes -d 'Largest request body, in bytes (413 beyond)' -r
complete -c scalekit-mcp -n "__fish_scalekit_mcp_using_subcommand serve" -l max-header-bytes -d 'Largest request header section, in bytes (431 beyond)' -r
complete -c scalekit-mcp -n "__fish_scalekit_mcp_using_subcommand serve" -l request-timeout -d 'Time allowed to start answering a request (408 beyond)' -r
complete -c scalekit-mcp -n "__fish_scalekit_mcp_using_subcommand serve" -l idle-timeout -d 'Time a connection may wait for its next request head before it is closed' -r
complete -c scalekit-mcp -n "__fish_scalekit_mcp_using_subcommand serve" -l max-connections -d 'Connections held open at once (503 with Retry-After beyond)' -r
complete -c scalekit-mcp -n "__fish_scalekit_mcp_using_subcommand serve" -l shutdown-timeout -d 'Time in-flight requests get to finish after SIGINT or SIGTERM' -r
complete -c scalekit-mcp -n "__fish_scalekit_mcp_using_subcommand serve" -l max-sessions -d 'Sessions open at once, all callers together (an initialize beyond gets 503)' -r
complete -c scalekit-mcp -n "__fish_scalekit_mcp_using_subcommand serve" -l max-sessions-per-caller -d 'Sessions open at once per caller; one more closes its least recently used' -r
complete -c scalekit-mcp -n "__fish_scalekit_mcp_using_subcommand serve" -l session-idle-timeout -d 'A session without a request for this long is closed' -r
complete -c scalekit-mcp -n "__fish_scalekit_mcp_using_subcommand serve" -l session-sleep-after -d 'A session without a request or an open stream for this long sleeps' -r
complete -c scalekit-mcp -n "__fish_scalekit_mcp_using_subcommand serve" -l session-store -d 'Keep sessions in Redis, so that every replica serves every session: redis://…' -r
complete -c scalekit-mcp -n "__fish_scalekit_mcp_using_subcommand serve" -l rate-limit-store -d 'Count rate limits in Redis, so that they hold across replicas (default: the session store)' -r
complete -c scalekit-mcp -n "__fish_scalekit_mcp_using_subcommand serve" -l redis-prefix -d 'Prefix of every Redis key, so that several deployments can share one Redis' -r
complete -c scalekit-mcp -n "__fish_scalekit_mcp_using_subcommand serve" -l rate-limit -d 'Requests each caller may make: N/UNIT, UNIT s, min or h (e.g. 600/min). Default: none' -r
complete -c scalekit-mcp -n "__fish_scalekit_mcp_using_subcommand serve" -l rate-limit-burst -d 'Requests a caller may make at once after a quiet spell (default: a tenth of N, at least 1)' -r
complete -c scalekit-mcp -n "__fish_scalekit_mcp_using_subcommand serve" -l tool-rate-limit -d 'Calls of a tool each caller may make (repeatable): NAME=N/UNIT; NAME may use *' -r
complete -c scalekit-mcp -n "__fish_scalekit_mcp_using_subcommand serve" -l anonymous-rate-limit -d 'Requests each client IP may make that need a token checked: N/UNIT. Default: none' -r
complete -c scalekit-mcp -n "__fish_scalekit_mcp_using_subcommand serve" -l trusted-proxy -d 'Proxy whose X-Forwarded-For / Forwarded headers name the client (repeatable; CIDR)' -r
complete -c scalekit-mcp -n "__fish_scalekit_mcp_using_subcommand serve" -l log-level -d 'Log level: error, warn, info, debug, trace (Python names work)' -r
complete -c scalekit-mcp -n "__fish_scalekit_mcp_using_subcommand serve" -l log-format -d 'Log line format (to stderr)' -r -f -a "text\t''
json\t''"
complete -c scalekit-mcp -n "__fish_scalekit_mcp_using_subcommand serve" -l metrics-addr -d 'Serve Prometheus metrics at http://HOST:PORT/metrics (e.g. 127.0.0.1:9464). Default: off' -r
complete -c scalekit-mcp -n "__fish_scalekit_mcp_using_subcommand serve" -l dev-key -d 'PEM RSA private key kept across restarts (created when missing)' -r -F
complete -c scalekit-mcp -n "__fish_scalekit_mcp_using_subcommand serve" -l dev-user -d 'The user the development authorization server logs in (the tokens\' `sub`)' -r
complete -c scalekit-mcp -n "__fish_scalekit_mcp_using_subcommand serve" -l dev-token-ttl -d 'Lifetime of the development authorization server\'s access tokens' -r
complete -c scalekit-mcp -n "__fish_scalekit_mcp_using_subcommand serve" -l upstream -d 'The upstream MCP server\'s Streamable HTTP URL: serve its tools, resources and prompts' -r
complete -c scalekit-mcp -n "__fish_scalekit_mcp_using_subcommand serve" -l upstream-header -d 'A header for the HTTP upstream (repeatable): \'Name: value\'' -r
complete -c scalekit-mcp -n "__fish_scalekit_mcp_using_subcommand serve" -l upstream-bearer-env -d 'Send `Authorization: Bearer $VAR` to the HTTP upstream (the name of a variable, so the secret is never on the command line)' -r
complete -c scalekit-mcp -n "__fish_scalekit_mcp_using_subcommand serve" -l upstream-timeout -d 'Longest wait for an upstream answer (each progress notification restarts it)' -r
complete -c scalekit-mcp -n "__fish_scalekit_mcp_using_subcommand serve" -l stateless -d 'No sessions: plain JSON answers, for several instances behind a load balancer'
complete -c scalekit-mcp -n "__fish_scalekit_mcp_using_subcommand serve" -l dev -d 'Also run a development authorization server, offline, at {public URL}/dev-auth'
complete -c scalekit-mcp -n "__fish_scalekit_mcp_using_subcommand serve" -l dev-auto-approve -d 'Approve every authorization request without the consent page (scripts, tests)'
complete -c scalekit-mcp -n "__fish_scalekit_mcp_using_subcommand serve" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c scalekit-mcp -n "__fish_scalekit_mcp_using_subcommand serve" -s V -l version -d 'Print version'
complete -c scalekit-mcp -n "__fish_scalekit_mcp_using_subcommand login" -l scope -d 'Scope to request (repeatable). Default: the server\'s challenge, else its metadata' -r
complete -c scalekit-mcp -n "__fish_scalekit_mcp_using_subcommand login" -l client-id -d 'A client id registered in advance with the authorization server (skips registration)' -r
complete -c scalekit-mcp -n "__fish_scalekit_mcp_using_subcommand login" -l client-secret-env -d 'Environment variable holding the client secret (never pass a secret as a flag value). Default: SK_CLIENT_SECRET' -r
complete -c scalekit-mcp -n "__fish_scalekit_mcp_using_subcommand login" -l client-metadata-url -d 'HTTPS URL of this client\'s metadata document, used when the server supports Client ID Metadata Documents' -r
complete -c scalekit-mcp -n "__fish_scalekit_mcp_using_subcommand login" -l callback-port -d 'Port of the 127.0.0.1 redirect listener (0 = random; pre-registered clients need a fixed one)' -r
complete -c scalekit-mcp -n "__fish_scalekit_mcp_using_subcommand login" -l timeout -d 'How long to wait for the browser login' -r
complete -c scalekit-mcp -n "__fish_scalekit_mcp_using_subcommand login" -l client-assertion-key -d 'With --client-credentials: authenticate with a JWT signed by this private key (private_key_jwt, RFC 7523) instead of a secret. A PEM key (algorithm from the key: RSA → RS256, P-256 → ES256, P-384 → ES384, Ed25519 → EdDSA) or a private JWK (its kid and alg)' -r -F
complete -c scalekit-mcp -n "__fish_scalekit_mcp_using_subcommand login" -l no-browser -d 'Print the login URL instead of opening a browser'
complete -c scalekit-mcp -n "__fish_scalekit_mcp_using_subcommand login" -l client-credentials -d 'Machine-to-machine login with --client-id and its secret (client credentials grant), no browser'
complete -c scalekit-mcp -n "__fish_scalekit_mcp_using_subcommand login" -l with-token -d 'Read an access token from stdin and store it, for tokens obtained elsewhere'
complete -c scalekit-mcp -n "__fish_scalekit_mcp_using_subcommand login" -l insecure-storage -d 'Keep credentials in a plaintext file (mode 0600) in the config directory instead of the OS keyring. Also SCALEKIT_MCP_STORAGE=file'
complete -c scalekit-mcp -n "__fish_scalekit_mcp_using_subcommand login" -s v -l verbose -d 'Print each discovery step'
complete -c scalekit-mcp -n "__fish_scalekit_mcp_using_subcommand login" -s h -l help -d 'Print help'
complete -c scalekit-mcp -n "__fish_scalekit_mcp_using_subcommand login" -s V -l version -d 'Print version'
complete -c scalekit-mcp -n "__fish_scalekit_mcp_using_subcommand logout" -l all -d 'Log out of every server'
complete -c scalekit-mcp -n "__fish_scalekit_mcp_using_subcommand logout" -s h -l help -d 'Print help'
complete -c scalekit-mcp -n "__fish_scalekit_mcp_using_subcommand logout" -s V -l version -d 'Print version'
complete -c scalekit-mcp -n "__fish_scalekit_mcp_using_subcommand status" -l json -d 'Print one JSON document instead of text'
complete -c scalekit-mcp -n "__fish_scalekit_mcp_using_subcommand status" -s h -l help -d 'Print help'
complete -c scalekit-mcp -n "__fish_scalekit_mcp_using_subcommand status" -s V -l version -d 'Print version'
complete -c scalekit-mcp -n "__fish_scalekit_mcp_using_subcommand token" -s h -l help -d 'Print help'
complete -c scalekit-mcp -n "__fish_scalekit_mcp_using_subcommand token" -s V -l version -d 'Print version'
complete -c scalekit-mcp -n "__fish_scalekit_mcp_using_subcommand call" -l args -d 'All arguments as one JSON object: literal JSON, @file.json, or - for stdin. key=value arguments override its fields' -r
complete -c scalekit-mcp -n "__fish_scalekit_mcp_using_subcommand call" -l server -d 'The MCP server URL; default: the one logged in to last' -r
complete -c scalekit-mcp -n "__fish_scalekit_mcp_using_subcommand call" -l token -d 'Access token to send as is (never stored, never refreshed), e.g. in CI. Prefer the SCALEKIT_MCP_TOKEN variable: a flag shows in the process list. Default: the stored login' -r
complete -c scalekit-mcp -n "__fish_scalekit_mcp_using_subcommand call" -l timeout -d 'Give up after this long (connecting, refreshing and calling): 30s, 2m, 500ms' -r
complete -c scalekit-mcp -n "__fish_scalekit_mcp_using_subcommand call" -l json -d 'Machine-readable output: the whole result as JSON on stdout; errors as one JSON line {"error":{"code","message"}} on stderr'
complete -c scalekit-mcp -n "__fish_scalekit_mcp_using_subcommand call" -l login -d 'When the server asks for a login (401) or for more scopes (403 insufficient_scope), log in (step-up: the scopes held plus the ones asked for) and retry, once each. Default when stdin and stderr are a terminal'
complete -c scalekit-mcp -n "__fish_scalekit_mcp_using_subcommand call" -l no-login -d 'Never log in: exit 3 with the exact login command to run. Default without a terminal, so CI never waits for a browser'
complete -c scalekit-mcp -n "__fish_scalekit_mcp_using_subcommand call" -l no-browser -d 'When logging in, print the login URL instead of opening a browser'
complete -c scalekit-mcp -n "__fish_scalekit_mcp_using_subcommand call" -s h -l help -d 'Print help'
complete -c scalekit-mcp -n "__fish_scalekit_mcp_using_subcommand call" -s V -l version -d 'Print version'
complete -c scalekit-mcp -n "__fish_scalekit_mcp_using_subcommand tools" -l server -d 'The MCP server URL; default: the one logged in to last' -r
complete -c scalekit-mcp -n "__fish_scalekit_mcp_using_subcommand tools" -l token -d 'Access token to send as is (never stored, never refreshed), e.g. in CI. Prefer the SCALEKIT_MCP_TOKEN variable: a flag shows in the process list. Default: the stored login' -r
complete -c scalekit-mcp -n "__fish_scalekit_mcp_using_subcommand tools" -l timeout -d 'Give up after this long (connecting, refreshing and calling): 30s, 2m, 500ms' -r
complete -c scalekit-mcp -n "__fish_scalekit_mcp_using_subcommand tools" -l json -d 'Machine-readable output: the whole result as JSON on stdout; errors as one JSON line {"error":{"code","message"}} on stderr'
complete -c scalekit-mcp -n "__fish_scalekit_mcp_using_subcommand tools" -l login -d 'When the server asks for a login (401) or for more scopes (403 insufficient_scope), log in (step-up: the scopes held plus the ones asked for) and retry, once each. Default when stdin and stderr are a terminal'
complete -c scalekit-mcp -n "__fish_scalekit_mcp_using_subcommand tools" -l no-login -d 'Never log in: exit 3 with the exact login command to run. Default without a terminal, so CI never waits for a browser'
complete -c scalekit-mcp -n "__fish_scalekit_mcp_using_subcommand tools" -l no-browser -d 'When logging in, print the login URL instead of opening a browser'
complete -c scalekit-mcp -n "__fish_scalekit_mcp_using_subcommand tools" -s h -l help -d 'Print help'
complete -c scalekit-mcp -n "__fish_scalekit_mcp_using_subcommand tools" -s V -l version -d 'Print version'
complete -c scalekit-mcp -n "__fish_scalekit_mcp_using_subcommand proxy" -l print-config -d 'Print the configuration block that makes this desktop client run this proxy, say which file it goes in, and exit' -r -f -a "claude\t'Claude Desktop'
cursor\t'Cursor'
vscode\t'Visual Studio Code'"
complete -c scalekit-mcp -n "__fish_scalekit_mcp_using_subcommand proxy" -l token-env -d 'Environment variable holding an access token to send as is instead of the stored login (never stored, never refreshed), e.g. for CI or agents. Default: SCALEKIT_MCP_TOKEN when it is set' -r
complete -c scalekit-mcp -n "__fish_scalekit_mcp_using_subcommand proxy" -l header -d 'An extra header for every request to the server, e.g. --header \'X-Tenant: acme\' (repeatable). Not for tokens: see --token-env' -r
complete -c scalekit-mcp -n "__fish_scalekit_mcp_using_subcommand proxy" -l scope -d 'Scope to request when logging in (repeatable). Default: the server\'s challenge, else its metadata' -r
complete -c scalekit-mcp -n "__fish_scalekit_mcp_using_subcommand proxy" -l client-id -d 'When logging in: a client id registered in advance with the authorization server (its secret, if any, in SK_CLIENT_SECRET)' -r
complete -c scalekit-mcp -n "__fish_scalekit_mcp_using_subcommand proxy" -l callback-port -d 'When logging in: port of the 127.0.0.1 redirect listener (0 = random; pre-registered clients need a fixed one)' -r
complete -c scalekit-mcp -n "__fish_scalekit_mcp_using_subcommand proxy" -l timeout -d 'How long a login waits for the browser' -r
complete -c scalekit-mcp -n "__fish_scalekit_mcp_using_subcommand proxy" -l log-file -d 'Also write the proxy\'s log lines to this file (appended)' -r -F
complete -c scalekit-mcp -n "__fish_scalekit_mcp_using_subcommand proxy" -l no-browser -d 'When logging in, print the login URL on stderr instead of opening a browser'
complete -c scalekit-mcp -n "__fish_scalekit_mcp_using_subcommand proxy" -l no-login -d 'Never log in: without a usable stored login, exit 3 with the login command before any MCP traffic (for unattended use)'
complete -c scalekit-mcp -n "__fish_scalekit_mcp_using_subcommand proxy" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c scalekit-mcp -n "__fish_scalekit_mcp_using_subcommand proxy" -s V -l version -d 'Print version'
complete -c scalekit-mcp -n "__fish_scalekit_mcp_using_subcommand check-token" -l server -d 'Check the access token `login` stored for this server instead (read as stored: no refresh, no network)' -r
complete -c scalekit-mcp -n "__fish_scalekit_mcp_using_subcommand check-token" -l jwks -d 'Verify the signature with these keys: a JWKS (the JSON at {SK_ENV_URL}/keys), a single JWK or a PEM public key. Keys are matched by `kid` (a lone key without one, such as a PEM, matches any). Without it, the signature is not checked' -r -F
complete -c scalekit-mcp -n "__fish_scalekit_mcp_using_subcommand check-token" -l sk-env-url -d 'Scalekit environment URL: its tokens are accepted, its JWKS read from {SK_ENV_URL}/keys' -r
complete -c scalekit-mcp -n "__fish_scalekit_mcp_using_subcommand check-token" -l issuer -d 'Accepted token issuer (repeatable, or comma-separated)' -r
complete -c scalekit-mcp -n "__fish_scalekit_mcp_using_subcommand check-token" -l audience -d 'Accepted token audience (repeatable, or comma-separated)' -r
complete -c scalekit-mcp -n "__fish_scalekit_mcp_using_subcommand check-token" -l required-scope -d 'Scope every token must carry (repeatable, or comma-separated)' -r
complete -c scalekit-mcp -n "__fish_scalekit_mcp_using_subcommand check-token" -l algorithms -d 'Allowed signature algorithms (comma-separated)' -r
complete -c scalekit-mcp -n "__fish_scalekit_mcp_using_subcommand check-token" -l leeway -d 'Clock skew tolerated on exp, nbf and iat (e.g. 30s, 2m)' -r
complete -c scalekit-mcp -n "__fish_scalekit_mcp_using_subcommand check-token" -l tool-scope -d 'Scopes a tool needs (repeatable): NAME=SCOPE[ SCOPE…]; NAME may use * (admin_*=admin)' -r
complete -c scalekit-mcp -n "__fish_scalekit_mcp_using_subcommand check-token" -l allowed-org -d 'Organization whose tokens are accepted (repeatable, or comma-separated). Default: any' -r
complete -c scalekit-mcp -n "__fish_scalekit_mcp_using_subcommand check-token" -l protected-resource-metadata -d 'Protected resource metadata JSON, served as given' -r
complete -c scalekit-mcp -n "__fish_scalekit_mcp_using_subcommand check-token" -l resource -d 'The resource identifier of generated metadata' -r
complete -c scalekit-mcp -n "__fish_scalekit_mcp_using_subcommand check-token" -l authorization-server -d 'Authorization server of generated metadata (repeatable, or comma-separated)' -r
complete -c scalekit-mcp -n "__fish_scalekit_mcp_using_subcommand check-token" -l tool -d 'Also check whether the token may call this tool (repeatable), by the --tool-scope settings serve reads' -r
complete -c scalekit-mcp -n "__fish_scalekit_mcp_using_subcommand check-token" -l now -d 'The clock, in seconds since the Unix epoch. For tests: makes relative times reproducible' -r
complete -c scalekit-mcp -n "__fish_scalekit_mcp_using_subcommand check-token" -l json -d 'Print one JSON object {header, claims, checks: [{name, status, detail}], valid} instead'
complete -c scalekit-mcp -n "__fish_scalekit_mcp_using_subcommand check-token" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c scalekit-mcp -n "__fish_scalekit_mcp_using_subcommand check-token" -s V -l version -d 'Print version'
complete -c scalekit-mcp -n "__fish_scalekit_mcp_using_subcommand completions" -s h -l help -d 'Print help'
complete -c scalekit-mcp -n "__fish_scalekit_mcp_using_subcommand completions" -s V -l version -d 'Print version'
complete -c scalekit-mcp -n "__fish_scalekit_mcp_using_subcommand man" -l out-dir -d 'Write every page into this directory instead (created if missing)' -r -F
complete -c scalekit-mcp -n "__fish_scalekit_mcp_using_subcommand man" -s h -l help -d 'Print help'
complete -c scalekit-mcp -n "__fish_scalekit_mcp_using_subcommand man" -s V -l version -d 'Print version'
complete -c scalekit-mcp -n "__fish_scalekit_mcp_using_subcommand help; and not __fish_seen_subcommand_from serve login logout status token call tools proxy check-token completions man help" -f -a "serve" -d 'Run the MCP server; every MCP request needs a valid bearer token'
complete -c scalekit-mcp -n "__fish_scalekit_mcp_using_subcommand help; and not __fish_seen_subcommand_from serve login logout status token call tools proxy check-token completions man help" -f -a "login" -d 'Log in to an MCP server (OAuth discovery, PKCE, registration) and store the token in the OS keyring'
complete -c scalekit-mcp -n "__fish_scalekit_mcp_using_subcommand help; and not __fish_seen_subcommand_from serve login logout status token call tools proxy check-token completions man help" -f -a "logout" -d 'Remove (and revoke) the stored credentials of a server'
complete -c scalekit-mcp -n "__fish_scalekit_mcp_using_subcommand help; and not __fish_seen_subcommand_from serve login logout status token call tools proxy check-token completions man help" -f -a "status" -d 'Show the stored logins: subject, scopes, expiry; never a token'
complete -c scalekit-mcp -n "__fish_scalekit_mcp_using_subcommand help; and not __fish_seen_subcommand_from serve login logout status token call tools proxy check-token completions man help" -f -a "token" -d 'Print a valid access token for a server, refreshing it when needed'
complete -c scalekit-mcp -n "__fish_scalekit_mcp_using_subcommand help; and not __fish_seen_subcommand_from serve login logout status token call tools proxy check-token completions man help" -f -a "call" -d 'Call a tool and print its result (key=value arguments checked against its schema)'
complete -c scalekit-mcp -n "__fish_scalekit_mcp_using_subcommand help; and not __fish_seen_subcommand_from serve login logout status token call tools proxy check-token completions man help" -f -a "tools" -d 'List a server\'s tools with their parameters'
complete -c scalekit-mcp -n "__fish_scalekit_mcp_using_subcommand help; and not __fish_seen_subcommand_from serve login logout status token call tools proxy check-token completions man help" -f -a "proxy" -d 'Bridge a desktop MCP client (stdio) to a protected server (HTTP) with the stored login, logging in first when needed'
complete -c scalekit-mcp -n "__fish_scalekit_mcp_using_subcommand help; and not __fish_seen_subcommand_from serve login logout status token call tools proxy check-token completions man help" -f -a "check-token" -d 'Explain an access token offline: header, claims, and every check serve would make'
complete -c scalekit-mcp -n "__fish_scalekit_mcp_using_subcommand help; and not __fish_seen_subcommand_from serve login logout status token call tools proxy check-token completions man help" -f -a "completions" -d 'Print a shell completion script to stdout'
complete -c scalekit-mcp -n "__fish_scalekit_mcp_using_subcommand help; and not __fish_seen_subcommand_from serve login logout status token call tools proxy check-token completions man help" -f -a "man" -d 'Print a man page (roff) to stdout, or write every page into a directory'
complete -c scalekit-mcp -n "__fish_scalekit_mcp_using_subcommand help; and not __fish_seen_subcommand_from serve login logout status token call tools proxy check-token completions man help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
