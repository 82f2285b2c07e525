
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
            cand completions 'Print a shell completion script to stdout'
            cand help 'Print this message or the help of the given subcommand(s)'
        }
        &'scalekit-mcp;serve'= {
            cand --transport 'Transport to serve'
            cand --host 'Address to listen on. Use 0.0.0.0 to accept connections from other machines'
            cand --port 'Port to listen on (0 picks a free one)'
            cand --public-url 'The URL clients use to reach this server, when it differs from the listen address (behind a proxy). Defaults to the origin of the metadata''s `resource`, else http://localhost:PORT'
            cand --mcp-path 'Path of the MCP endpoint'
            cand --sk-env-url 'Scalekit environment URL. Tokens issued by it (and by the metadata''s authorization servers) are accepted, and its JWKS is read from {SK_ENV_URL}/keys'
            cand --issuer 'Accepted token issuer (repeatable, or comma-separated). Replaces SK_ENV_URL and the metadata''s authorization servers as the accepted issuers'
            cand --audience 'Accepted token audience (repeatable, or comma-separated). Defaults to the metadata''s `resource`. Compared exactly, trailing slash included'
            cand --jwks-url 'JWKS URL. Defaults to {SK_ENV_URL}/keys, else the `jwks_uri` in the issuer''s RFC 8414 or OpenID Connect metadata'
            cand --protected-resource-metadata 'OAuth protected resource metadata (RFC 9728), as JSON, served as given. Must name `resource` and `authorization_servers`. Without it, the metadata is generated from --resource, --authorization-server and --scopes-supported'
            cand --resource-metadata-url 'Absolute URL of the protected resource metadata, as sent in challenges. Defaults to the public URL''s /.well-known/oauth-protected-resource'
            cand --resource 'The resource identifier for generated metadata. Defaults to the public URL of the MCP path'
            cand --authorization-server 'Authorization server for generated metadata (repeatable, or comma-separated). Defaults to the accepted issuers'
            cand --scopes-supported 'Scopes listed in generated metadata (repeatable, or comma-separated)'
            cand --required-scope 'Scope every request''s token must carry (repeatable, or comma-separated). A token without it gets 403 insufficient_scope'
            cand --algorithms 'Allowed signature algorithms (comma-separated): RS256, RS384, RS512, PS256, PS384, PS512, ES256, ES384, EdDSA. HMAC and `none` are never allowed'
            cand --leeway 'Clock skew tolerated on exp, nbf and iat (e.g. 30s, 2m)'
            cand --jwks-ttl 'JWKS refresh interval when the response has no Cache-Control max-age'
            cand --jwks-cooldown 'Minimum time between JWKS refetches caused by tokens with an unknown kid'
            cand --allowed-host 'More Host values to accept (repeatable, `host` or `host:port`; `*` accepts any, which disables DNS-rebinding protection). Loopback names and the public URL''s host are always accepted'
            cand --cors-origin 'Browser origin allowed by CORS (repeatable, e.g. https://app.example.com). None by default'
            cand --max-body-bytes 'Largest accepted request body, in bytes'
            cand --shutdown-timeout 'How long in-flight requests get to finish after SIGINT / SIGTERM'
            cand --log-level 'Log level (error, warn, info, debug, trace; Python names work). RUST_LOG overrides it'
            cand --log-format 'Log line format'
            cand --stateless 'Serve without in-memory sessions, answering with plain JSON: for several instances behind a load balancer'
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
            cand completions 'Print a shell completion script to stdout'
            cand help 'Print this message or the help of the given subcommand(s)'
        }
        &'scalekit-mcp;help;serve'= {
        }
        &'scalekit-mcp;help;completions'= {
        }
        &'scalekit-mcp;help;help'= {
        }
    ]
    $completions[$command]
}
