// An OpenID provider for the gateway tests: JWT access tokens for https://chroma.test.
// usage: node oidc_server.mjs PORT ISSUER JWKS_FILE [LISTEN_ADDRESS (default 127.0.0.1)]
// Client-credentials clients: admin-client (groups chroma-admins), reader-client (groups
// chroma-readers), short-client (tokens live 1 s); the secret of each: "<client_id>-secret".
// The web console's client, chroma-console: authorization code with PKCE, a login page that
// takes any password (devInteractions); users alice (chroma-admins) and bob (chroma-readers).
import fs from 'node:fs';
import Provider from 'oidc-provider';

const [port, issuer, jwksFile, host = '127.0.0.1'] = process.argv.slice(2);
const jwks = JSON.parse(fs.readFileSync(jwksFile, 'utf8'));
const groups = {
  'admin-client': ['chroma-admins'],
  'reader-client': ['chroma-readers'],
  'short-client': ['chroma-readers'],
};
// Users that sign in through the login page (the password is not checked by devInteractions).
const userGroups = {
  alice: ['chroma-admins'],
  bob: ['chroma-readers'],
};
const client = (id) => ({
  client_id: id,
  client_secret: `${id}-secret`,
  grant_types: ['client_credentials'],
  redirect_uris: [],
  response_types: [],
  token_endpoint_auth_method: 'client_secret_post',
});

const provider = new Provider(issuer, {
  clients: [
    ...Object.keys(groups).map(client),
    {
      // a public client: PKCE is required for token_endpoint_auth_method none
      client_id: 'chroma-console',
      token_endpoint_auth_method: 'none',
      grant_types: ['authorization_code'],
      response_types: ['code'],
      // CONSOLE_REDIRECT_URIS (comma-separated): the console's exact callback URLs; without
      // it a native client, whose http loopback redirect matches any port (RFC 8252 7.3).
      ...(process.env.CONSOLE_REDIRECT_URIS
        ? { application_type: 'web', redirect_uris: process.env.CONSOLE_REDIRECT_URIS.split(',') }
        : { application_type: 'native', redirect_uris: ['http://127.0.0.1/console/oidc/callback'] }),
    },
  ],
  jwks,
  findAccount: (ctx, id) => ({
    accountId: id,
    claims: () => ({ sub: id, groups: userGroups[id] ?? [] }),
  }),
  claims: { openid: ['sub', 'groups'] },
  conformIdTokenClaims: false, // put scope claims (groups) into the id_token of the code flow
  features: {
    devInteractions: { enabled: true },
    clientCredentials: { enabled: true },
    resourceIndicators: {
      enabled: true,
      defaultResource: () => 'https://chroma.test',
      useGrantedResource: () => true,
      getResourceServerInfo: (ctx, resource, c) => ({
        scope: 'chroma',
        audience: resource,
        accessTokenTTL: c.clientId === 'short-client' ? 1 : 600,
        accessTokenFormat: 'jwt',
        jwt: { sign: { alg: 'RS256' } },
      }),
    },
  },
  extraTokenClaims: (ctx, token) => ({
    groups: token.accountId ? (userGroups[token.accountId] ?? []) : (groups[token.clientId] ?? []),
  }),
});
provider.proxy = false;
provider.listen(Number(port), host, () => console.log(`listening ${issuer}`));
