
using namespace System.Management.Automation
using namespace System.Management.Automation.Language

Register-ArgumentCompleter -Native -CommandName 'scalekit-mcp' -ScriptBlock {
    param($wordToComplete, $commandAst, $cursorPosition)

    $commandElements = $commandAst.CommandElements
    $command = @(
        'scalekit-mcp'
        for ($i = 1; $i -lt $commandElements.Count; $i++) {
            $element = $commandElements[$i]
            if ($element -isnot [StringConstantExpressionAst] -or
                $element.StringConstantType -ne [StringConstantType]::BareWord -or
                $element.Value.StartsWith('-') -or
                $element.Value -eq $wordToComplete) {
                break
        }
        $element.Value
    }) -join ';'

    $completions = @(switch ($command) {
        'scalekit-mcp' {
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('-V', '-V ', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('--version', '--version', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('serve', 'serve', [CompletionResultType]::ParameterValue, 'Run the MCP server; every MCP request needs a valid bearer token')
            [CompletionResult]::new('login', 'login', [CompletionResultType]::ParameterValue, 'Log in to an MCP server (OAuth discovery, PKCE, registration) and store the token in the OS keyring')
            [CompletionResult]::new('logout', 'logout', [CompletionResultType]::ParameterValue, 'Remove (and revoke) the stored credentials of a server')
            [CompletionResult]::new('status', 'status', [CompletionResultType]::ParameterValue, 'Show the stored logins: subject, scopes, expiry; never a token')
            [CompletionResult]::new('token', 'token', [CompletionResultType]::ParameterValue, 'Print a valid access token for a server, refreshing it when needed')
            [CompletionResult]::new('call', 'call', [CompletionResultType]::ParameterValue, 'Call a tool and print its result (key=value arguments checked against its schema)')
            [CompletionResult]::new('tools', 'tools', [CompletionResultType]::ParameterValue, 'List a server''s tools with their parameters')
            [CompletionResult]::new('proxy', 'proxy', [CompletionResultType]::ParameterValue, 'Bridge a desktop MCP client (stdio) to a protected server (HTTP) with the stored login, logging in first when needed')
            [CompletionResult]::new('check-token', 'check-token', [CompletionResultType]::ParameterValue, 'Explain an access token offline: header, claims, and every check serve would make')
            [CompletionResult]::new('completions', 'completions', [CompletionResultType]::ParameterValue, 'Print a shell completion script to stdout')
            [CompletionResult]::new('man', 'man', [CompletionResultType]::ParameterValue, 'Print a man page (roff) to stdout, or write every page into a directory')
            [CompletionResult]::new('help', 'help', [CompletionResultType]::ParameterValue, 'Print this message or the help of the given subcommand(s)')
            break
        }
        'scalekit-mcp;serve' {
            [CompletionResult]::new('--transport', '--transport', [CompletionResultType]::ParameterName, 'Transport to serve')
            [CompletionResult]::new('--host', '--host', [CompletionResultType]::ParameterName, 'Address to listen on (0.0.0.0: every interface)')
            [CompletionResult]::new('--port', '--port', [CompletionResultType]::ParameterName, 'Port to listen on (0 picks a free one)')
            [CompletionResult]::new('--public-url', '--public-url', [CompletionResultType]::ParameterName, 'The URL clients use to reach this server (behind a proxy)')
            [CompletionResult]::new('--mcp-path', '--mcp-path', [CompletionResultType]::ParameterName, 'Path of the MCP endpoint')
            [CompletionResult]::new('--allowed-host', '--allowed-host', [CompletionResultType]::ParameterName, 'More Host values to accept (repeatable; `*` turns the check off)')
            [CompletionResult]::new('--cors-origin', '--cors-origin', [CompletionResultType]::ParameterName, 'Browser origin allowed by CORS (repeatable). None by default')
            [CompletionResult]::new('--sk-env-url', '--sk-env-url', [CompletionResultType]::ParameterName, 'Scalekit environment URL: its tokens are accepted, its JWKS read from {SK_ENV_URL}/keys')
            [CompletionResult]::new('--issuer', '--issuer', [CompletionResultType]::ParameterName, 'Accepted token issuer (repeatable, or comma-separated)')
            [CompletionResult]::new('--audience', '--audience', [CompletionResultType]::ParameterName, 'Accepted token audience (repeatable, or comma-separated)')
            [CompletionResult]::new('--required-scope', '--required-scope', [CompletionResultType]::ParameterName, 'Scope every token must carry (repeatable, or comma-separated)')
            [CompletionResult]::new('--algorithms', '--algorithms', [CompletionResultType]::ParameterName, 'Allowed signature algorithms (comma-separated)')
            [CompletionResult]::new('--leeway', '--leeway', [CompletionResultType]::ParameterName, 'Clock skew tolerated on exp, nbf and iat (e.g. 30s, 2m)')
            [CompletionResult]::new('--tool-scope', '--tool-scope', [CompletionResultType]::ParameterName, 'Scopes a tool needs (repeatable): NAME=SCOPE[ SCOPE…]; NAME may use * (admin_*=admin)')
            [CompletionResult]::new('--allowed-org', '--allowed-org', [CompletionResultType]::ParameterName, 'Organization whose tokens are accepted (repeatable, or comma-separated). Default: any')
            [CompletionResult]::new('--protected-resource-metadata', '--protected-resource-metadata', [CompletionResultType]::ParameterName, 'Protected resource metadata JSON, served as given')
            [CompletionResult]::new('--resource', '--resource', [CompletionResultType]::ParameterName, 'The resource identifier of generated metadata')
            [CompletionResult]::new('--authorization-server', '--authorization-server', [CompletionResultType]::ParameterName, 'Authorization server of generated metadata (repeatable, or comma-separated)')
            [CompletionResult]::new('--jwks-url', '--jwks-url', [CompletionResultType]::ParameterName, 'JWKS URL')
            [CompletionResult]::new('--jwks-ttl', '--jwks-ttl', [CompletionResultType]::ParameterName, 'JWKS refresh interval when the response has no Cache-Control max-age')
            [CompletionResult]::new('--jwks-cooldown', '--jwks-cooldown', [CompletionResultType]::ParameterName, 'Minimum time between JWKS refetches for tokens with an unknown kid')
            [CompletionResult]::new('--resource-metadata-url', '--resource-metadata-url', [CompletionResultType]::ParameterName, 'Absolute URL of the metadata, as sent in challenges')
            [CompletionResult]::new('--scopes-supported', '--scopes-supported', [CompletionResultType]::ParameterName, 'Scopes listed in generated metadata (repeatable, or comma-separated)')
            [CompletionResult]::new('--max-body-bytes', '--max-body-bytes', [CompletionResultType]::ParameterName, 'Largest request body, in bytes (413 beyond)')
            [CompletionResult]::new('--max-header-bytes', '--max-header-bytes', [CompletionResultType]::ParameterName, 'Largest request header section, in bytes (431 beyond)')
            [CompletionResult]::new('--request-timeout', '--request-timeout', [CompletionResultType]::ParameterName, 'Time allowed to start answering a request (408 beyond)')
            [CompletionResult]::new('--idle-timeout', '--idle-timeout', [CompletionResultType]::ParameterName, 'Time a connection may wait for its next request head before it is closed')
            [CompletionResult]::new('--max-connections', '--max-connections', [CompletionResultType]::ParameterName, 'Connections held open at once (503 with Retry-After beyond)')
            [CompletionResult]::new('--shutdown-timeout', '--shutdown-timeout', [CompletionResultType]::ParameterName, 'Time in-flight requests get to finish after SIGINT or SIGTERM')
            [CompletionResult]::new('--max-sessions', '--max-sessions', [CompletionResultType]::ParameterName, 'Sessions open at once, all callers together (an initialize beyond gets 503)')
            [CompletionResult]::new('--max-sessions-per-caller', '--max-sessions-per-caller', [CompletionResultType]::ParameterName, 'Sessions open at once per caller; one more closes its least recently used')
            [CompletionResult]::new('--session-idle-timeout', '--session-idle-timeout', [CompletionResultType]::ParameterName, 'A session without a request for this long is closed')
            [CompletionResult]::new('--session-sleep-after', '--session-sleep-after', [CompletionResultType]::ParameterName, 'A session without a request or an open stream for this long sleeps')
            [CompletionResult]::new('--session-store', '--session-store', [CompletionResultType]::ParameterName, 'Keep sessions in Redis, so that every replica serves every session: redis://…')
            [CompletionResult]::new('--rate-limit-store', '--rate-limit-store', [CompletionResultType]::ParameterName, 'Count rate limits in Redis, so that they hold across replicas (default: the session store)')
            [CompletionResult]::new('--redis-prefix', '--redis-prefix', [CompletionResultType]::ParameterName, 'Prefix of every Redis key, so that several deployments can share one Redis')
            [CompletionResult]::new('--rate-limit', '--rate-limit', [CompletionResultType]::ParameterName, 'Requests each caller may make: N/UNIT, UNIT s, min or h (e.g. 600/min). Default: none')
            [CompletionResult]::new('--rate-limit-burst', '--rate-limit-burst', [CompletionResultType]::ParameterName, 'Requests a caller may make at once after a quiet spell (default: a tenth of N, at least 1)')
            [CompletionResult]::new('--tool-rate-limit', '--tool-rate-limit', [CompletionResultType]::ParameterName, 'Calls of a tool each caller may make (repeatable): NAME=N/UNIT; NAME may use *')
            [CompletionResult]::new('--anonymous-rate-limit', '--anonymous-rate-limit', [CompletionResultType]::ParameterName, 'Requests each client IP may make that need a token checked: N/UNIT. Default: none')
            [CompletionResult]::new('--trusted-proxy', '--trusted-proxy', [CompletionResultType]::ParameterName, 'Proxy whose X-Forwarded-For / Forwarded headers name the client (repeatable; CIDR)')
            [CompletionResult]::new('--log-level', '--log-level', [CompletionResultType]::ParameterName, 'Log level: error, warn, info, debug, trace (Python names work)')
            [CompletionResult]::new('--log-format', '--log-format', [CompletionResultType]::ParameterName, 'Log line format (to stderr)')
            [CompletionResult]::new('--metrics-addr', '--metrics-addr', [CompletionResultType]::ParameterName, 'Serve Prometheus metrics at http://HOST:PORT/metrics (e.g. 127.0.0.1:9464). Default: off')
            [CompletionResult]::new('--dev-key', '--dev-key', [CompletionResultType]::ParameterName, 'PEM RSA private key kept across restarts (created when missing)')
            [CompletionResult]::new('--dev-user', '--dev-user', [CompletionResultType]::ParameterName, 'The user the development authorization server logs in (the tokens'' `sub`)')
            [CompletionResult]::new('--dev-token-ttl', '--dev-token-ttl', [CompletionResultType]::ParameterName, 'Lifetime of the development authorization server''s access tokens')
            [CompletionResult]::new('--upstream', '--upstream', [CompletionResultType]::ParameterName, 'The upstream MCP server''s Streamable HTTP URL: serve its tools, resources and prompts')
            [CompletionResult]::new('--upstream-header', '--upstream-header', [CompletionResultType]::ParameterName, 'A header for the HTTP upstream (repeatable): ''Name: value''')
            [CompletionResult]::new('--upstream-bearer-env', '--upstream-bearer-env', [CompletionResultType]::ParameterName, 'Send `Authorization: Bearer $VAR` to the HTTP upstream (the name of a variable, so the secret is never on the command line)')
            [CompletionResult]::new('--upstream-timeout', '--upstream-timeout', [CompletionResultType]::ParameterName, 'Longest wait for an upstream answer (each progress notification restarts it)')
            [CompletionResult]::new('--stateless', '--stateless', [CompletionResultType]::ParameterName, 'No sessions: plain JSON answers, for several instances behind a load balancer')
            [CompletionResult]::new('--dev', '--dev', [CompletionResultType]::ParameterName, 'Also run a development authorization server, offline, at {public URL}/dev-auth')
            [CompletionResult]::new('--dev-auto-approve', '--dev-auto-approve', [CompletionResultType]::ParameterName, 'Approve every authorization request without the consent page (scripts, tests)')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help (see more with ''--help'')')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help (see more with ''--help'')')
            [CompletionResult]::new('-V', '-V ', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('--version', '--version', [CompletionResultType]::ParameterName, 'Print version')
            break
        }
        'scalekit-mcp;login' {
            [CompletionResult]::new('--scope', '--scope', [CompletionResultType]::ParameterName, 'Scope to request (repeatable). Default: the server''s challenge, else its metadata')
            [CompletionResult]::new('--client-id', '--client-id', [CompletionResultType]::ParameterName, 'A client id registered in advance with the authorization server (skips registration)')
            [CompletionResult]::new('--client-secret-env', '--client-secret-env', [CompletionResultType]::ParameterName, 'Environment variable holding the client secret (never pass a secret as a flag value). Default: SK_CLIENT_SECRET')
            [CompletionResult]::new('--client-metadata-url', '--client-metadata-url', [CompletionResultType]::ParameterName, 'HTTPS URL of this client''s metadata document, used when the server supports Client ID Metadata Documents')
            [CompletionResult]::new('--callback-port', '--callback-port', [CompletionResultType]::ParameterName, 'Port of the 127.0.0.1 redirect listener (0 = random; pre-registered clients need a fixed one)')
            [CompletionResult]::new('--timeout', '--timeout', [CompletionResultType]::ParameterName, 'How long to wait for the browser login')
            [CompletionResult]::new('--client-assertion-key', '--client-assertion-key', [CompletionResultType]::ParameterName, 'With --client-credentials: authenticate with a JWT signed by this private key (private_key_jwt, RFC 7523) instead of a secret. A PEM key (algorithm from the key: RSA → RS256, P-256 → ES256, P-384 → ES384, Ed25519 → EdDSA) or a private JWK (its kid and alg)')
            [CompletionResult]::new('--no-browser', '--no-browser', [CompletionResultType]::ParameterName, 'Print the login URL instead of opening a browser')
            [CompletionResult]::new('--client-credentials', '--client-credentials', [CompletionResultType]::ParameterName, 'Machine-to-machine login with --client-id and its secret (client credentials grant), no browser')
            [CompletionResult]::new('--with-token', '--with-token', [CompletionResultType]::ParameterName, 'Read an access token from stdin and store it, for tokens obtained elsewhere')
            [CompletionResult]::new('--insecure-storage', '--insecure-storage', [CompletionResultType]::ParameterName, 'Keep credentials in a plaintext file (mode 0600) in the config directory instead of the OS keyring. Also SCALEKIT_MCP_STORAGE=file')
            [CompletionResult]::new('-v', '-v', [CompletionResultType]::ParameterName, 'Print each discovery step')
            [CompletionResult]::new('--verbose', '--verbose', [CompletionResultType]::ParameterName, 'Print each discovery step')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('-V', '-V ', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('--version', '--version', [CompletionResultType]::ParameterName, 'Print version')
            break
        }
        'scalekit-mcp;logout' {
            [CompletionResult]::new('--all', '--all', [CompletionResultType]::ParameterName, 'Log out of every server')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('-V', '-V ', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('--version', '--version', [CompletionResultType]::ParameterName, 'Print version')
            break
        }
        'scalekit-mcp;status' {
            [CompletionResult]::new('--json', '--json', [CompletionResultType]::ParameterName, 'Print one JSON document instead of text')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('-V', '-V ', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('--version', '--version', [CompletionResultType]::ParameterName, 'Print version')
            break
        }
        'scalekit-mcp;token' {
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('-V', '-V ', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('--version', '--version', [CompletionResultType]::ParameterName, 'Print version')
            break
        }
        'scalekit-mcp;call' {
            [CompletionResult]::new('--args', '--args', [CompletionResultType]::ParameterName, 'All arguments as one JSON object: literal JSON, @file.json, or - for stdin. key=value arguments override its fields')
            [CompletionResult]::new('--server', '--server', [CompletionResultType]::ParameterName, 'The MCP server URL; default: the one logged in to last')
            [CompletionResult]::new('--token', '--token', [CompletionResultType]::ParameterName, 'Access token to send as is (never stored, never refreshed), e.g. in CI. Prefer the SCALEKIT_MCP_TOKEN variable: a flag shows in the process list. Default: the stored login')
            [CompletionResult]::new('--timeout', '--timeout', [CompletionResultType]::ParameterName, 'Give up after this long (connecting, refreshing and calling): 30s, 2m, 500ms')
            [CompletionResult]::new('--json', '--json', [CompletionResultType]::ParameterName, 'Machine-readable output: the whole result as JSON on stdout; errors as one JSON line {"error":{"code","message"}} on stderr')
            [CompletionResult]::new('--login', '--login', [CompletionResultType]::ParameterName, 'When the server asks for a login (401) or for more scopes (403 insufficient_scope), log in (step-up: the scopes held plus the ones asked for) and retry, once each. Default when stdin and stderr are a terminal')
            [CompletionResult]::new('--no-login', '--no-login', [CompletionResultType]::ParameterName, 'Never log in: exit 3 with the exact login command to run. Default without a terminal, so CI never waits for a browser')
            [CompletionResult]::new('--no-browser', '--no-browser', [CompletionResultType]::ParameterName, 'When logging in, print the login URL instead of opening a browser')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('-V', '-V ', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('--version', '--version', [CompletionResultType]::ParameterName, 'Print version')
            break
        }
        'scalekit-mcp;tools' {
            [CompletionResult]::new('--server', '--server', [CompletionResultType]::ParameterName, 'The MCP server URL; default: the one logged in to last')
            [CompletionResult]::new('--token', '--token', [CompletionResultType]::ParameterName, 'Access token to send as is (never stored, never refreshed), e.g. in CI. Prefer the SCALEKIT_MCP_TOKEN variable: a flag shows in the process list. Default: the stored login')
            [CompletionResult]::new('--timeout', '--timeout', [CompletionResultType]::ParameterName, 'Give up after this long (connecting, refreshing and calling): 30s, 2m, 500ms')
            [CompletionResult]::new('--json', '--json', [CompletionResultType]::ParameterName, 'Machine-readable output: the whole result as JSON on stdout; errors as one JSON line {"error":{"code","message"}} on stderr')
            [CompletionResult]::new('--login', '--login', [CompletionResultType]::ParameterName, 'When the server asks for a login (401) or for more scopes (403 insufficient_scope), log in (step-up: the scopes held plus the ones asked for) and retry, once each. Default when stdin and stderr are a terminal')
            [CompletionResult]::new('--no-login', '--no-login', [CompletionResultType]::ParameterName, 'Never log in: exit 3 with the exact login command to run. Default without a terminal, so CI never waits for a browser')
            [CompletionResult]::new('--no-browser', '--no-browser', [CompletionResultType]::ParameterName, 'When logging in, print the login URL instead of opening a browser')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('-V', '-V ', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('--version', '--version', [CompletionResultType]::ParameterName, 'Print version')
            break
        }
        'scalekit-mcp;proxy' {
            [CompletionResult]::new('--print-config', '--print-config', [CompletionResultType]::ParameterName, 'Print the configuration block that makes this desktop client run this proxy, say which file it goes in, and exit')
            [CompletionResult]::new('--token-env', '--token-env', [CompletionResultType]::ParameterName, 'Environment variable holding an access token to send as is instead of the stored login (never stored, never refreshed), e.g. for CI or agents. Default: SCALEKIT_MCP_TOKEN when it is set')
            [CompletionResult]::new('--header', '--header', [CompletionResultType]::ParameterName, 'An extra header for every request to the server, e.g. --header ''X-Tenant: acme'' (repeatable). Not for tokens: see --token-env')
            [CompletionResult]::new('--scope', '--scope', [CompletionResultType]::ParameterName, 'Scope to request when logging in (repeatable). Default: the server''s challenge, else its metadata')
            [CompletionResult]::new('--client-id', '--client-id', [CompletionResultType]::ParameterName, 'When logging in: a client id registered in advance with the authorization server (its secret, if any, in SK_CLIENT_SECRET)')
            [CompletionResult]::new('--callback-port', '--callback-port', [CompletionResultType]::ParameterName, 'When logging in: port of the 127.0.0.1 redirect listener (0 = random; pre-registered clients need a fixed one)')
            [CompletionResult]::new('--timeout', '--timeout', [CompletionResultType]::ParameterName, 'How long a login waits for the browser')
            [CompletionResult]::new('--log-file', '--log-file', [CompletionResultType]::ParameterName, 'Also write the proxy''s log lines to this file (appended)')
            [CompletionResult]::new('--no-browser', '--no-browser', [CompletionResultType]::ParameterName, 'When logging in, print the login URL on stderr instead of opening a browser')
            [CompletionResult]::new('--no-login', '--no-login', [CompletionResultType]::ParameterName, 'Never log in: without a usable stored login, exit 3 with the login command before any MCP traffic (for unattended use)')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help (see more with ''--help'')')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help (see more with ''--help'')')
            [CompletionResult]::new('-V', '-V ', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('--version', '--version', [CompletionResultType]::ParameterName, 'Print version')
            break
        }
        'scalekit-mcp;check-token' {
            [CompletionResult]::new('--server', '--server', [CompletionResultType]::ParameterName, 'Check the access token `login` stored for this server instead (read as stored: no refresh, no network)')
            [CompletionResult]::new('--jwks', '--jwks', [CompletionResultType]::ParameterName, 'Verify the signature with these keys: a JWKS (the JSON at {SK_ENV_URL}/keys), a single JWK or a PEM public key. Keys are matched by `kid` (a lone key without one, such as a PEM, matches any). Without it, the signature is not checked')
            [CompletionResult]::new('--sk-env-url', '--sk-env-url', [CompletionResultType]::ParameterName, 'Scalekit environment URL: its tokens are accepted, its JWKS read from {SK_ENV_URL}/keys')
            [CompletionResult]::new('--issuer', '--issuer', [CompletionResultType]::ParameterName, 'Accepted token issuer (repeatable, or comma-separated)')
            [CompletionResult]::new('--audience', '--audience', [CompletionResultType]::ParameterName, 'Accepted token audience (repeatable, or comma-separated)')
            [CompletionResult]::new('--required-scope', '--required-scope', [CompletionResultType]::ParameterName, 'Scope every token must carry (repeatable, or comma-separated)')
            [CompletionResult]::new('--algorithms', '--algorithms', [CompletionResultType]::ParameterName, 'Allowed signature algorithms (comma-separated)')
            [CompletionResult]::new('--leeway', '--leeway', [CompletionResultType]::ParameterName, 'Clock skew tolerated on exp, nbf and iat (e.g. 30s, 2m)')
            [CompletionResult]::new('--tool-scope', '--tool-scope', [CompletionResultType]::ParameterName, 'Scopes a tool needs (repeatable): NAME=SCOPE[ SCOPE…]; NAME may use * (admin_*=admin)')
            [CompletionResult]::new('--allowed-org', '--allowed-org', [CompletionResultType]::ParameterName, 'Organization whose tokens are accepted (repeatable, or comma-separated). Default: any')
            [CompletionResult]::new('--protected-resource-metadata', '--protected-resource-metadata', [CompletionResultType]::ParameterName, 'Protected resource metadata JSON, served as given')
            [CompletionResult]::new('--resource', '--resource', [CompletionResultType]::ParameterName, 'The resource identifier of generated metadata')
            [CompletionResult]::new('--authorization-server', '--authorization-server', [CompletionResultType]::ParameterName, 'Authorization server of generated metadata (repeatable, or comma-separated)')
            [CompletionResult]::new('--tool', '--tool', [CompletionResultType]::ParameterName, 'Also check whether the token may call this tool (repeatable), by the --tool-scope settings serve reads')
            [CompletionResult]::new('--now', '--now', [CompletionResultType]::ParameterName, 'The clock, in seconds since the Unix epoch. For tests: makes relative times reproducible')
            [CompletionResult]::new('--json', '--json', [CompletionResultType]::ParameterName, 'Print one JSON object {header, claims, checks: [{name, status, detail}], valid} instead')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help (see more with ''--help'')')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help (see more with ''--help'')')
            [CompletionResult]::new('-V', '-V ', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('--version', '--version', [CompletionResultType]::ParameterName, 'Print version')
            break
        }
        'scalekit-mcp;completions' {
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('-V', '-V ', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('--version', '--version', [CompletionResultType]::ParameterName, 'Print version')
            break
        }
        'scalekit-mcp;man' {
            [CompletionResult]::new('--out-dir', '--out-dir', [CompletionResultType]::ParameterName, 'Write every page into this directory instead (created if missing)')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('-V', '-V ', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('--version', '--version', [CompletionResultType]::ParameterName, 'Print version')
            break
        }
        'scalekit-mcp;help' {
            [CompletionResult]::new('serve', 'serve', [CompletionResultType]::ParameterValue, 'Run the MCP server; every MCP request needs a valid bearer token')
            [CompletionResult]::new('login', 'login', [CompletionResultType]::ParameterValue, 'Log in to an MCP server (OAuth discovery, PKCE, registration) and store the token in the OS keyring')
            [CompletionResult]::new('logout', 'logout', [CompletionResultType]::ParameterValue, 'Remove (and revoke) the stored credentials of a server')
            [CompletionResult]::new('status', 'status', [CompletionResultType]::ParameterValue, 'Show the stored logins: subject, scopes, expiry; never a token')
            [CompletionResult]::new('token', 'token', [CompletionResultType]::ParameterValue, 'Print a valid access token for a server, refreshing it when needed')
            [CompletionResult]::new('call', 'call', [CompletionResultType]::ParameterValue, 'Call a tool and print its result (key=value arguments checked against its schema)')
            [CompletionResult]::new('tools', 'tools', [CompletionResultType]::ParameterValue, 'List a server''s tools with their parameters')
            [CompletionResult]::new('proxy', 'proxy', [CompletionResultType]::ParameterValue, 'Bridge a desktop MCP client (stdio) to a protected server (HTTP) with the stored login, logging in first when needed')
            [CompletionResult]::new('check-token', 'check-token', [CompletionResultType]::ParameterValue, 'Explain an access token offline: header, claims, and every check serve would make')
            [CompletionResult]::new('completions', 'completions', [CompletionResultType]::ParameterValue, 'Print a shell completion script to stdout')
            [CompletionResult]::new('man', 'man', [CompletionResultType]::ParameterValue, 'Print a man page (roff) to stdout, or write every page into a directory')
            [CompletionResult]::new('help', 'help', [CompletionResultType]::ParameterValue, 'Print this message or the help of the given subcommand(s)')
            break
        }
        'scalekit-mcp;help;serve' {
            break
        }
        'scalekit-mcp;help;login' {
            break
        }
        'scalekit-mcp;help;logout' {
            break
        }
        'scalekit-mcp;help;status' {
            break
        }
        'scalekit-mcp;help;token' {
            break
        }
        'scalekit-mcp;help;call' {
            break
        }
        'scalekit-mcp;help;tools' {
            break
        }
        'scalekit-mcp;help;proxy' {
            break
        }
        'scalekit-mcp;help;check-token' {
            break
        }
        'scalekit-mcp;help;completions' {
            break
        }
        'scalekit-mcp;help;man' {
            break
        }
        'scalekit-mcp;help;help' {
            break
        }
    })

    $completions.Where{ $_.CompletionText -like "$wordToComplete*" } |
        Sort-Object -Property ListItemText
}
