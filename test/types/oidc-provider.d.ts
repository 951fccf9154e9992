/** oidc-provider ships no type declarations; the tests use a handful of its members, typed where they are used. */
declare module 'oidc-provider' {
  const Provider: new (issuer: string, configuration: Record<string, unknown>) => import('../helpers/oidc-provider.js').ProviderInstance;
  export default Provider;
}
