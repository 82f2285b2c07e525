
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
            cand check-token 'Explain an access token offline: header, claims, and every check serve would make'
            cand completions 'Print a shell completion script to stdout'
            cand help 'Print this message or the help of the given subcommand(s)'
        }
        &'scalekit-mcp;serve'= {
            cand --transport 'Transport to serve'
            cand --host 'Address to listen on. Use 0.0.0.0 to accept connections from other machines'
            cand --port 'Port to listen on (0 picks a free one)'
            cand --public-url 'The URL clients use to reach this server, when it differs from the listen address (behind a proxy). Defaults to the origin of the resource (the metadata''s, or --resource), else http://localhost:PORT'
            cand --mcp-path 'Path of the MCP endpoint'
            cand --sk-env-url 'Scalekit environment URL. Tokens issued by it (and by the metadata''s authorization servers) are accepted, and its JWKS is read from {SK_ENV_URL}/keys'
            cand --issuer 'Accepted token issuer (repeatable, or comma-separated). Replaces SK_ENV_URL and the metadata''s authorization servers as the accepted issuers'
            cand --audience 'Accepted token audience (repeatable, or comma-separated). Defaults to the metadata''s `resource`. Compared exactly, trailing slash included'
            cand --jwks-url 'JWKS URL. Defaults to {SK_ENV_URL}/keys, else the `jwks_uri` in the issuer''s RFC 8414 or OpenID Connect metadata'
            cand --protected-resource-metadata 'OAuth protected resource metadata (RFC 9728), as JSON, served as given. Must name `resource` and `authorization_servers`. Without it, the metadata is generated from --resource, --authorization-server and --scopes-supported'
            cand --resource-metadata-url 'Absolute URL of the protected resource metadata, as sent in challenges. Defaults to the public URL''s /.well-known/oauth-protected-resource'
            cand --resource 'The resource identifier for generated metadata. Defaults to the public URL of the MCP path'
            cand --authorization-server 'Authorization server for generated metadata (repeatable, or comma-separated). Defaults to the accepted issuers'
            cand --scopes-supported 'Scopes listed in generated metadata (repeatable, or comma-separated). With --dev, the scopes its authorization server grants (default: mcp:tools)'
            cand --required-scope 'Scope every request''s token must carry (repeatable, or comma-separated). A token without it gets 403 insufficient_scope'
            cand --algorithms 'Allowed signature algorithms (comma-separated): RS256, RS384, RS512, PS256, PS384, PS512, ES256, ES384, EdDSA. HMAC and `none` are never allowed'
            cand --leeway 'Clock skew tolerated on exp, nbf and iat (e.g. 30s, 2m)'
            cand --jwks-ttl 'JWKS refresh interval when the response has no Cache-Control max-age'
            cand --jwks-cooldown 'Minimum time between JWKS refetches caused by tokens with an unknown kid'
            cand --allowed-host 'More Host values to accept (repeatable, `host` or `host:port`; `*` accepts any, which disables DNS-rebinding protection). Loopback names and the public URL''s host are always accepted'
            cand --cors-origin 'Browser origin allowed by CORS (repeatable, e.g. https://app.example.com). None by default'
            cand --max-body-bytes 'Largest accepted request body, in bytes'
            cand --max-header-bytes 'Largest accepted request header section, in bytes (431 beyond). Access tokens are refused beyond 16 KiB anyway'
            cand --request-timeout 'Time allowed to answer a request (408 beyond). Counts until the response starts, so Server-Sent Events streams are never cut'
            cand --idle-timeout 'Time a connection may wait for its next request head (from the moment it opened or its last response ended) before it is closed: idle and slow connections free their slot'
            cand --max-connections 'Connections held open at once; beyond it a new connection gets 503 with Retry-After'
            cand --shutdown-timeout 'How long in-flight requests get to finish after SIGINT / SIGTERM'
            cand --dev-key 'PEM RSA private key the development authorization server signs with, kept across restarts so tokens stay valid (created on first use). Default: a fresh key at each start'
            cand --dev-user 'The user the development authorization server logs in (the tokens'' `sub`)'
            cand --dev-token-ttl 'Lifetime of the development authorization server''s access tokens'
            cand --log-level 'Log level (error, warn, info, debug, trace; Python names work). RUST_LOG overrides it'
            cand --log-format 'Log line format'
            cand --stateless 'Serve without in-memory sessions, answering with plain JSON: for several instances behind a load balancer'
            cand --dev 'Development mode: also serve an OAuth 2.1 authorization server at {public URL}/dev-auth, on the same port, that issues tokens this server accepts. No account, no network. For development only: it logs anyone in as --dev-user and listens on loopback only'
            cand --dev-auto-approve 'Approve every authorization request without showing the consent page (scripts, tests)'
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
            cand -h 'Print help'
            cand --help 'Print help'
            cand -V 'Print version'
            cand --version 'Print version'
        }
        &'scalekit-mcp;check-token'= {
            cand --server 'Check the access token `login` stored for this server instead (read as stored: no refresh, no network)'
            cand --jwks 'Verify the signature with these keys: a JWKS (the JSON at {SK_ENV_URL}/keys), a single JWK or a PEM public key. Keys are matched by `kid` (a lone key without one, such as a PEM, matches any). Without it, the signature is not checked'
            cand --issuer 'Expected issuer (repeatable, or comma-separated). Replaces the issuers taken from SK_ENV_URL and the metadata''s authorization servers'
            cand --audience 'Expected audience (repeatable, or comma-separated). Defaults to the metadata''s `resource`'
            cand --required-scope 'Scope the token must carry (repeatable, or comma-separated), read from the `scope`, `scp` or `scopes` claim'
            cand --algorithms 'Allowed signature algorithms (comma-separated), as in serve: RS256, RS384, RS512, PS256, PS384, PS512, ES256, ES384, EdDSA. HMAC and `none` are never allowed'
            cand --leeway 'Clock skew tolerated on exp, nbf and iat (e.g. 30s, 2m), as in serve'
            cand --sk-env-url 'Scalekit environment URL: tokens it issues are expected (both `{SK_ENV_URL}` and the metadata''s `{SK_ENV_URL}/resources/{res_id}`)'
            cand --protected-resource-metadata 'The server''s protected resource metadata (RFC 9728) JSON: its `authorization_servers` are expected issuers and its `resource` the expected audience'
            cand --authorization-server 'Authorization server of serve''s generated metadata (repeatable): expected as an issuer'
            cand --resource 'Resource of serve''s generated metadata: the expected audience when --audience is absent'
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
        &'scalekit-mcp;help'= {
            cand serve 'Run the MCP server; every MCP request needs a valid bearer token'
            cand login 'Log in to an MCP server (OAuth discovery, PKCE, registration) and store the token in the OS keyring'
            cand logout 'Remove (and revoke) the stored credentials of a server'
            cand status 'Show the stored logins: subject, scopes, expiry; never a token'
            cand token 'Print a valid access token for a server, refreshing it when needed'
            cand call 'Call a tool and print its result (key=value arguments checked against its schema)'
            cand tools 'List a server''s tools with their parameters'
            cand check-token 'Explain an access token offline: header, claims, and every check serve would make'
            cand completions 'Print a shell completion script to stdout'
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
        &'scalekit-mcp;help;check-token'= {
        }
        &'scalekit-mcp;help;completions'= {
        }
        &'scalekit-mcp;help;help'= {
        }
    ]
    $completions[$command]
}
