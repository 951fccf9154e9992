/** How an upstream failed, as `authgate_upstream_errors_total{kind}` counts it. */
export type UpstreamFailure = 'refused' | 'timeout' | 'reset' | 'tls' | 'other';

/**
 * Why the gateway itself gave up on a forwarded request: no connection to the upstream came free in time, or the
 * client stalled (stopped sending its body, or stopped reading the response) past its timeout.
 */
export type Abandoned = 'queue_timeout' | 'client_body_timeout' | 'client_read_timeout';

export type ForwardFailure = UpstreamFailure | Abandoned;

export function isAbandoned(failure: ForwardFailure): failure is Abandoned {
  return failure === 'queue_timeout' || failure === 'client_body_timeout' || failure === 'client_read_timeout';
}

/** Node's and undici's error codes, folded into the few kinds an operator acts on. */
export function classifyUpstreamError(err: Error & { code?: string }): UpstreamFailure {
  switch (err.code) {
    case 'ECONNREFUSED':
    case 'ENOTFOUND':
    case 'EHOSTUNREACH':
    case 'ENETUNREACH':
    case 'EAI_AGAIN':
      return 'refused';
    case 'ECONNRESET':
    case 'EPIPE':
    case 'UND_ERR_SOCKET':
      return 'reset';
    case 'ETIMEDOUT':
    case 'UND_ERR_CONNECT_TIMEOUT':
    case 'UND_ERR_HEADERS_TIMEOUT':
    case 'UND_ERR_BODY_TIMEOUT':
      return 'timeout';
    default:
      return err.code?.startsWith('ERR_TLS') ||
        err.code?.startsWith('CERT_') ||
        err.code === 'DEPTH_ZERO_SELF_SIGNED_CERT' ||
        err.code === 'SELF_SIGNED_CERT_IN_CHAIN' ||
        err.code === 'UNABLE_TO_VERIFY_LEAF_SIGNATURE'
        ? 'tls'
        : 'other';
  }
}
