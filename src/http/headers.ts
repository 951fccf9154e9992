/** The name a header is compared by: lower case, `_` read as `-` (CGI/WSGI upstreams merge the two spellings). */
export function canonicalName(name: string): string {
  const lower = name.toLowerCase();
  return lower.includes('_') ? lower.replaceAll('_', '-') : lower;
}

/** A header as one string: Node gives repeated lines of most headers joined already, a few as arrays. */
export function headerValue(value: string | string[] | undefined): string | undefined {
  return Array.isArray(value) ? value.join(', ') : value;
}
