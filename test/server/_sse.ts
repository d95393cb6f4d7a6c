/** An EventSource-like reader of GET /stock/events on fetch, for the server tests. */

export interface SseEvent {
  event: string;
  id?: string;
  data: any;
}

/** An EventSource-like reader on fetch: each event as it arrives, and whether the stream ended. */
export class SseStream {
  private buffered = '';
  private events: SseEvent[] = [];
  private done = false;
  private constructor(
    readonly status: number,
    readonly headers: Headers,
    private readonly reader: ReadableStreamDefaultReader<string> | undefined,
    private readonly abort: AbortController,
    readonly body?: any,
  ) {}

  static async open(target: { url: string }, path: string, opts: { token: string; lastEventId?: string }): Promise<SseStream> {
    const abort = new AbortController();
    const headers: Record<string, string> = { authorization: `Bearer ${opts.token}` };
    if (opts.lastEventId) headers['last-event-id'] = opts.lastEventId;
    const res = await fetch(`${target.url}${path}`, { headers, signal: abort.signal });
    if (res.status !== 200) return new SseStream(res.status, res.headers, undefined, abort, await res.json());
    return new SseStream(res.status, res.headers, res.body!.pipeThrough(new TextDecoderStream()).getReader(), abort);
  }

  /** The next event, or undefined once the server ended the stream. */
  async next(): Promise<SseEvent | undefined> {
    for (;;) {
      const queued = this.events.shift();
      if (queued) return queued;
      if (this.done) return undefined;
      const { value, done } = await this.reader!.read().catch(() => ({ value: undefined, done: true }));
      if (done) this.done = true;
      else this.parse(value!);
    }
  }

  /** Events up to and including the first `ready`. */
  async untilReady(): Promise<SseEvent[]> {
    const seen: SseEvent[] = [];
    for (;;) {
      const event = await this.next();
      if (!event) throw new Error(`the stream ended before its ready event: ${JSON.stringify(seen)}`);
      seen.push(event);
      if (event.event === 'ready') return seen;
    }
  }

  /** Every event until the server ends the stream. */
  async rest(): Promise<SseEvent[]> {
    const seen: SseEvent[] = [];
    for (let event = await this.next(); event; event = await this.next()) seen.push(event);
    return seen;
  }

  close(): void {
    this.abort.abort();
    void this.reader?.cancel().catch(() => {});
  }

  private parse(chunk: string) {
    this.buffered += chunk;
    for (let end = this.buffered.indexOf('\n\n'); end >= 0; end = this.buffered.indexOf('\n\n')) {
      const block = this.buffered.slice(0, end);
      this.buffered = this.buffered.slice(end + 2);
      const fields = new Map<string, string>();
      for (const line of block.split('\n')) {
        if (line.startsWith(':')) continue;
        const colon = line.indexOf(':');
        fields.set(line.slice(0, colon), line.slice(colon + 1).replace(/^ /, ''));
      }
      if (!fields.has('data')) continue; // retry: and comments dispatch nothing
      this.events.push({ event: fields.get('event') ?? 'message', id: fields.get('id'), data: JSON.parse(fields.get('data')!) });
    }
  }
}
