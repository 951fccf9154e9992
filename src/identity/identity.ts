/**
 * Which issuer vouched for an identity. `name` is the `issuers:` key (the identity field `issuer_name`), `issuer`
 * the exact `iss` it stated (the field `issuer`). An issuer's config is one, so no copy is made per identity.
 */
export interface IssuerRef {
  readonly name: string;
  readonly issuer: string;
  /** How far the issuer's clock may be off: a credential counts until its `exp` plus this. */
  readonly clockSkewMs: number;
}

/**
 * What a verified credential says about its bearer, whatever the credential was. Built only from verified data and
 * frozen: a cached identity is shared by every request that presents the same credential.
 */
export interface Identity {
  readonly issuer: IssuerRef;
  readonly subject: string | undefined;
  readonly email: string | undefined;
  readonly roles: readonly string[];
  readonly permissions: readonly string[];
  readonly scopes: readonly string[];
  readonly clientId: string | undefined;
  /** Revocation key: issuer + jti, else issuer + subject + iat. */
  readonly jti: string | undefined;
  /** Seconds since the epoch. */
  readonly iat: number | undefined;
  /** Seconds since the epoch, always finite: when the credential stops counting. */
  readonly exp: number;
  /** The verified claims (frozen); read with `identity/claim-path`. */
  readonly claims: Readonly<Record<string, unknown>>;
}
