// An external OpenID provider for remit's end-to-end tests: `oidc-provider` (a certified
// implementation nobody here wrote) on loopback, issuing RFC 9068 JWT access tokens by client
// credentials for any resource (RFC 8707) so a test can ask for remit's audience or another.
//
//   node e2e/oidc-provider.mjs PORT KEYDIR KIDS
//
// KIDS is a comma-separated list of key ids, the signing key first. Each key is an ES256
// key kept in KEYDIR/<kid>.json (made on first use), so restarting with `k2,k1` then `k2`
// rotates keys the way a real provider does. Prints `ready <issuer>` once listening.
import { generateKeyPairSync } from 'node:crypto';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import Provider from 'oidc-provider';

const [port, keyDir, kids] = process.argv.slice(2);
const issuer = `http://127.0.0.1:${port}`;
const keys = kids.split(',').map((kid) => {
  const file = join(keyDir, `${kid}.json`);
  if (!existsSync(file)) {
    const { privateKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
    const jwk = { ...privateKey.export({ format: 'jwk' }), kid, alg: 'ES256', use: 'sig' };
    writeFileSync(file, JSON.stringify(jwk));
  }
  return JSON.parse(readFileSync(file, 'utf8'));
});

const provider = new Provider(issuer, {
  jwks: { keys },
  clients: [
    {
      client_id: 'svc-bot',
      client_secret: 'e2e-secret-for-svc-bot',
      grant_types: ['client_credentials'],
      redirect_uris: [],
      response_types: [],
      id_token_signed_response_alg: 'ES256',
    },
  ],
  features: {
    clientCredentials: { enabled: true },
    resourceIndicators: {
      enabled: true,
      defaultResource: () => undefined,
      useGrantedResource: () => true,
      getResourceServerInfo: (_ctx, resource) => ({
        scope: 'tickets.read',
        audience: resource,
        accessTokenTTL: 300,
        accessTokenFormat: 'jwt',
        jwt: { sign: { alg: 'ES256' } },
      }),
    },
  },
});
provider.listen(Number(port), '127.0.0.1', () => {
  process.stdout.write(`ready ${issuer}\n`);
});
