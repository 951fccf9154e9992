/** The origin of an absolute URL (a Referer header), or `null` when it is none, as browsers write an opaque origin. */
export function originOfUrl(url: string): string {
  return URL.canParse(url) ? new URL(url).origin : 'null';
}

/** The `host[:port]` of an absolute URL (an Origin header); undefined when it is none. */
export function hostOfUrl(url: string | undefined): string | undefined {
  return url !== undefined && URL.canParse(url) ? new URL(url).host : undefined;
}
