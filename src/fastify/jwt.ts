import { createPublicKey } from 'node:crypto';
import fs from 'node:fs';
import { createLocalJWKSet, errors as joseErrors, importSPKI, jwtVerify, type JSONWebKeySet, type JWTVerifyGetKey } from 'jose';
import { TenantwallError } from '../errors.ts';
import { TenantId } from '../tenant/tenant-id.ts';
import type { ResolvedFastifyOptions } from './options.ts';

/** Verifies a JWT against the configured key, issuer and audience and returns its tenant id. */
export interface JwtVerifier {
  /** The tenant named by a valid token; `unauthenticated` (with details.reason) otherwise. */
  verify(token: string): Promise<{ tenantId: TenantId; subject: string | undefined }>;
}

type JwtOptions = NonNullable<ResolvedFastifyOptions['jwt']>;

/**
 * Builds the verifier for the one configured key source. The accepted algorithms are pinned by key type, never
 * read from the token: an HMAC secret accepts only HS256, a public key only its own algorithm, a JWKS only
 * RS256/ES256. That refuses `alg: none` and the RS256->HS256 confusion (public key used as HMAC secret).
 */
export async function createJwtVerifier(o: JwtOptions): Promise<JwtVerifier> {
  let key: Uint8Array | Awaited<ReturnType<typeof importSPKI>> | JWTVerifyGetKey;
  let algorithms: string[];
  if (o.secret !== undefined) {
    key = new TextEncoder().encode(o.secret);
    algorithms = ['HS256'];
  } else if (o.publicKey !== undefined) {
    let type: string | undefined;
    try {
      type = createPublicKey(o.publicKey).asymmetricKeyType;
    } catch (cause) {
      throw new TenantwallError('config_invalid', 'Option jwtPublicKey is not a PEM public key.', { cause, details: { field: 'jwtPublicKey' } });
    }
    const alg = type === 'rsa' ? 'RS256' : type === 'ec' ? 'ES256' : undefined;
    if (!alg) throw new TenantwallError('config_invalid', `Option jwtPublicKey is a ${type} key; use an RSA (RS256) or P-256 EC (ES256) key.`, { details: { field: 'jwtPublicKey' } });
    key = await importSPKI(o.publicKey, alg);
    algorithms = [alg];
  } else {
    let jwks: JSONWebKeySet;
    try {
      jwks = JSON.parse(fs.readFileSync(o.jwksFile as string, 'utf8')) as JSONWebKeySet;
      key = createLocalJWKSet(jwks);
    } catch (cause) {
      throw new TenantwallError('config_invalid', `Option jwtJwksFile (${o.jwksFile}) is not a readable JSON Web Key Set.`, { cause, details: { field: 'jwtJwksFile' } });
    }
    algorithms = ['RS256', 'ES256'];
  }
  const verifyOptions = {
    algorithms,
    issuer: o.issuer,
    audience: o.audience,
    clockTolerance: o.clockToleranceSec,
    requiredClaims: ['exp', o.tenantClaim],
  };
  return {
    async verify(token) {
      let payload;
      try {
        // jose's overloads differ only in the key type; both are accepted at run time.
        ({ payload } = await jwtVerify(token, key as Uint8Array, verifyOptions));
      } catch (err) {
        throw new TenantwallError('unauthenticated', 'The bearer token is not a valid JWT for this service.', {
          cause: err,
          details: { reason: jwtReason(err) },
        });
      }
      const claim = payload[o.tenantClaim];
      if (!TenantId.is(claim)) {
        throw new TenantwallError('unauthenticated', `The JWT claim ${o.tenantClaim} is not a tenant id.`, { details: { reason: 'invalid_tenant_claim' } });
      }
      return { tenantId: claim, subject: payload.sub };
    },
  };
}

function jwtReason(err: unknown): string {
  if (err instanceof joseErrors.JWTExpired) return 'token_expired';
  if (err instanceof joseErrors.JWTClaimValidationFailed) return `claim_${err.claim}_invalid`;
  if (err instanceof joseErrors.JWSSignatureVerificationFailed) return 'signature_invalid';
  if (err instanceof joseErrors.JOSEAlgNotAllowed) return 'algorithm_not_allowed';
  if (err instanceof joseErrors.JWSInvalid || err instanceof joseErrors.JWTInvalid) return 'malformed_token';
  if (err instanceof joseErrors.JWKSNoMatchingKey) return 'no_matching_key';
  return 'token_invalid';
}
