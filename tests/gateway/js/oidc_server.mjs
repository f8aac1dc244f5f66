// An OpenID provider for the gateway tests: client-credentials grant, JWT access tokens.
// usage: node oidc_server.mjs PORT ISSUER JWKS_FILE [LISTEN_ADDRESS (default 127.0.0.1)]
// Clients: admin-client (groups chroma-admins), reader-client (groups chroma-readers),
// short-client (tokens live 1 s). Secret of each: "<client_id>-secret".
import fs from 'node:fs';
import Provider from 'oidc-provider';

const [port, issuer, jwksFile, host = '127.0.0.1'] = process.argv.slice(2);
const jwks = JSON.parse(fs.readFileSync(jwksFile, 'utf8'));
const groups = {
  'admin-client': ['chroma-admins'],
  'reader-client': ['chroma-readers'],
  'short-client': ['chroma-readers'],
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
  clients: Object.keys(groups).map(client),
  jwks,
  features: {
    devInteractions: { enabled: false },
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
  extraTokenClaims: (ctx, token) => ({ groups: groups[token.clientId] ?? [] }),
});
provider.proxy = false;
provider.listen(Number(port), host, () => console.log(`listening ${issuer}`));
