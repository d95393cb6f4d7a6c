/** The Link header of a paged list (RFC 8288): the same query, with the next page's cursor. */

/** `</orders?limit=20&cursor=…>; rel="next"`: relative to the request, as RFC 8288 allows. */
export function nextLink(path: string, query: Record<string, unknown>, cursor: string): string {
  const params = new URLSearchParams();
  for (const [name, value] of Object.entries(query)) {
    if (name === 'cursor' || value === undefined) continue;
    for (const one of [value].flat()) params.append(name, String(one));
  }
  params.set('cursor', cursor);
  return `<${path}?${params.toString()}>; rel="next"`;
}
