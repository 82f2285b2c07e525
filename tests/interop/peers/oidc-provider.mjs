// A real, third-party OAuth 2.1 / OpenID Connect authorization server for the interop suite:
// the npm package `oidc-provider`, configured the way an MCP deployment needs it.
//
//   node oidc-provider.mjs --port P --resource http://127.0.0.1:S/ [--access-token-ttl 5]
//
// - PKCE is required (S256 only), dynamic client registration (RFC 7591) is open;
// - resource indicators (RFC 8707) for exactly one resource, our MCP server: access tokens for it
//   are RS256 JWTs (RFC 9068) with `aud` = the resource and scope `mcp:tools`;
// - refresh tokens when `offline_access` is granted (rotated on use, as for public clients);
// - revocation (RFC 7009) for `logout`;
// - the built-in development login and consent forms, which the tests submit over HTTP.
//
// It prints one line `ready <issuer>` on stdout once it listens on 127.0.0.1.

import { generateKeyPairSync, randomUUID } from 'node:crypto';
import { parseArgs } from 'node:util';

import Provider, { errors } from 'oidc-provider';

const { values } = parseArgs({
  options: {
    port: { type: 'string' },
    resource: { type: 'string' },
    'access-token-ttl': { type: 'string', default: '300' },
  },
});
if (!values.port || !values.resource) {
  console.error('usage: oidc-provider.mjs --port P --resource URL [--access-token-ttl SECONDS]');
  process.exit(2);
}
const issuer = `http://127.0.0.1:${values.port}`;
const resource = values.resource;
const accessTokenTTL = Number(values['access-token-ttl']);

// A fresh signing key per run, with a kid, as production servers publish them.
const { privateKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
const signingKey = { ...privateKey.export({ format: 'jwk' }), kid: `interop-${randomUUID().slice(0, 8)}`, alg: 'RS256', use: 'sig' };

const provider = new Provider(issuer, {
  jwks: { keys: [signingKey] },
  scopes: ['openid', 'offline_access', 'mcp:tools'],
  clientDefaults: {
    grant_types: ['authorization_code', 'refresh_token'],
    response_types: ['code'],
    token_endpoint_auth_method: 'none',
    id_token_signed_response_alg: 'RS256',
  },
  pkce: { required: () => true },
  features: {
    devInteractions: { enabled: true },
    registration: { enabled: true },
    revocation: { enabled: true },
    resourceIndicators: {
      enabled: true,
      defaultResource: () => resource,
      useGrantedResource: () => true,
      getResourceServerInfo: (_ctx, indicator) => {
        if (indicator !== resource) {
          throw new errors.InvalidTarget(`unknown resource ${indicator}`);
        }
        return {
          scope: 'mcp:tools',
          audience: resource,
          accessTokenTTL,
          accessTokenFormat: 'jwt',
          jwt: { sign: { alg: 'RS256' } },
        };
      },
    },
  },
  ttl: {
    AccessToken: accessTokenTTL,
    AuthorizationCode: 60,
    Grant: 3600,
    Interaction: 600,
    RefreshToken: 3600,
    Session: 3600,
  },
  // Any login name is accepted by the development form; the account is that name.
  findAccount: (_ctx, sub) => ({ accountId: sub, claims: () => ({ sub }) }),
});

// INTEROP_OIDC_DEBUG=1 logs each token grant's request parameters (never a token or a code).
provider.on('grant.success', (ctx) => {
  if (process.env.INTEROP_OIDC_DEBUG) {
    const { grant_type, client_id, resource, scope } = ctx.oidc.body;
    console.error('grant.success', JSON.stringify({ grant_type, client_id, resource, scope }), Object.keys(ctx.body));
  }
});
provider.on('server_error', (_ctx, err) => console.error('oidc-provider server_error:', err));

provider.listen(Number(values.port), '127.0.0.1', () => {
  console.log(`ready ${issuer}`);
});
